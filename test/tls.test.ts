// TLS certificates and server options: the local CA, the SNI store, files mode,
// atomic writes, and real handshakes against tls.createServer on 127.0.0.1.

import t, { type Test } from 'tap';
import { execFile } from 'node:child_process';
import { X509Certificate, createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { generate } from 'selfsigned';
import { writeFileAtomic } from '../src/tls/atomic-write.js';
import { bundleFromPem, type CertBundle } from '../src/tls/cert-bundle.js';
import { CertStore } from '../src/tls/cert-store.js';
import { children, oid, read, seq, smallInt, time, tlv, uint } from '../src/tls/der.js';
import { loadCertsDir } from '../src/tls/files-mode.js';
import { LocalCA } from '../src/tls/local-ca.js';
import { newTicketKeys, refreshDefaultContext, tlsServerOptions } from '../src/tls/server-options.js';

const UC = 'uc-1b4e8f0a-0000-4000-8000-000000000001.org-7f3a0000-0000-4000-8000-000000000002.localhost';

const dataDir = await mkdtemp(join(tmpdir(), 'edgeway-tls-'));
t.teardown(() => rm(dataDir, { recursive: true, force: true }));

const ca = await LocalCA.open(dataDir, { leafDays: 7 });
const fallback = await ca.leafForNames(['localhost', '*.localhost']);
const keys = newTicketKeys();

const fp = (pem: string): string => new X509Certificate(pem).fingerprint256;
const serial = (b: CertBundle): string => new X509Certificate(b.certPem).serialNumber;

interface Started {
  readonly port: number;
  readonly server: tls.Server;
  /** SNI of the last accepted connection (false when the client sent none). */
  lastServername: string | false | undefined;
  readonly clientErrors: (Error & { code?: string })[];
}

/** A TLS echo server built from tlsServerOptions, closed (with its sockets) at teardown. */
async function startServer(store: CertStore, ticketKeys: Buffer): Promise<Started> {
  const sockets = new Set<Socket>();
  const server = tls.createServer(tlsServerOptions(store, ticketKeys), (s) => {
    started.lastServername = (s as tls.TLSSocket & { servername?: string | false }).servername;
    s.on('error', () => undefined);
    s.pipe(s);
  });
  const started: Started = { port: 0, server, lastServername: undefined, clientErrors: [] };
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('tlsClientError', (e) => started.clientErrors.push(e));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return Object.assign(started, { port: (server.address() as AddressInfo).port });
}

interface Connected {
  readonly socket: tls.TLSSocket;
  readonly peer: string;
}

function connect(port: number, opts: tls.ConnectionOptions): Promise<Connected> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ca: [ca.certPem], ...opts }, () => {
      resolve({ socket, peer: socket.getPeerCertificate().fingerprint256 });
    });
    t.teardown(() => void socket.destroy());
    socket.once('error', reject);
  });
}

function echo(socket: tls.TLSSocket, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    socket.once('data', (d: Buffer) => resolve(d.toString()));
    socket.once('error', reject);
    socket.write(text);
  });
}

t.test('local CA: files, modes, re-open', async (t) => {
  const caStat = await stat(ca.keyPath);
  t.equal(caStat.mode & 0o777, 0o600, 'CA key is 0600');
  t.equal((await stat(join(dataDir, 'ca'))).mode & 0o777, 0o700, 'CA dir is 0700');
  t.equal(ca.certPath, join(dataDir, 'ca', 'edgeway-local-ca.crt'));
  const x = new X509Certificate(ca.certPem);
  t.ok(x.ca, 'basicConstraints cA');
  t.equal(x.publicKey.asymmetricKeyType, 'ec');
  t.equal(x.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  const again = await LocalCA.open(dataDir, { leafDays: 7 });
  t.equal(again.fingerprint, ca.fingerprint, 're-open loads the same CA');
  t.equal(fp(again.certPem), fp(ca.certPem));
  t.match(ca.trustCommand(), ca.certPath);
  t.match(ca.trustCommand(), /update-ca-certificates/);
});

t.test('local CA: a certificate without its key is refused, not replaced', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'edgeway-tls-lone-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await mkdir(join(dir, 'ca'));
  await writeFile(join(dir, 'ca', 'edgeway-local-ca.crt'), ca.certPem);
  await t.rejects(LocalCA.open(dir, { leafDays: 7 }), { code: 'CONFIG_INVALID', message: /edgeway-local-ca\.key is missing/ });
  await t.rejects(LocalCA.open(dataDir, { leafDays: 0 }), { code: 'CONFIG_INVALID', field: 'tls.leaf_days' });
});

t.test('leaves: exact name, ECDSA, cached in memory and on disk', async (t) => {
  const a = await ca.leafFor(UC);
  const leaf = new X509Certificate(a.certPem);
  t.equal(leaf.publicKey.asymmetricKeyType, 'ec');
  t.equal(leaf.subjectAltName, `DNS:${UC}`, 'SAN is exactly the name');
  t.same(a.names, [UC]);
  t.equal(leaf.ca, false);
  t.ok(leaf.verify(new X509Certificate(ca.certPem).publicKey), 'signed by the CA');
  t.match(a.issuer, /^edgeway local CA/);
  t.equal(a.certPem.split('BEGIN CERTIFICATE').length - 1, 2, 'certPem = leaf + CA');
  const lifeDays = (a.notAfter.getTime() - a.notBefore.getTime()) / 86_400_000;
  t.ok(lifeDays >= 7 && lifeDays < 7.01, 'validity is leafDays');

  t.equal(serial(await ca.leafFor(UC.toUpperCase())), serial(a), 'second call reuses the leaf');
  const [p, q] = await Promise.all([ca.leafFor('concurrent.localhost'), ca.leafFor('concurrent.localhost')]);
  t.equal(p, q, 'concurrent calls share one mint');

  const keyFile = join(dataDir, 'certs', 'local', `${UC}.key`);
  t.equal((await stat(keyFile)).mode & 0o777, 0o600, 'leaf key is 0600 on disk');
  const reopened = await LocalCA.open(dataDir, { leafDays: 7 });
  t.equal(serial(await reopened.leafFor(UC)), serial(a), 'reused from disk after re-open');

  t.notOk(ca.needsRenewal(a));
  const life = a.notAfter.getTime() - a.notBefore.getTime();
  t.notOk(ca.needsRenewal(a, a.notAfter.getTime() - life / 2));
  t.ok(ca.needsRenewal(a, a.notAfter.getTime() - life / 4), 'less than 1/3 left');

  const wild = await ca.leafFor('*.org-x.localhost');
  t.same(wild.names, ['*.org-x.localhost']);
  await t.rejects(ca.leafFor('../etc/passwd'), { code: 'INVALID_FIELD' });
  await t.rejects(ca.leafForNames([]), { code: 'INVALID_FIELD' });
});

t.test('leaves: a cached leaf near its end is minted again', async (t) => {
  const name = 'old.localhost';
  const now = Date.now();
  // Signed by the same CA but with only 1 of 10 days left: must be replaced.
  const stale = await generate([{ name: 'commonName', value: name }], {
    keyType: 'ec',
    algorithm: 'sha256',
    notBeforeDate: new Date(now - 9 * 86_400_000),
    notAfterDate: new Date(now + 86_400_000),
    ca: { key: await readFile(ca.keyPath, 'utf8'), cert: ca.certPem },
    extensions: [{ name: 'subjectAltName', altNames: [{ type: 2, value: name }] }],
  });
  const dir = join(dataDir, 'certs', 'local');
  await writeFile(join(dir, `${name}.crt`), stale.cert + '\n' + ca.certPem);
  await writeFile(join(dir, `${name}.key`), stale.private);
  const fresh = await (await LocalCA.open(dataDir, { leafDays: 7 })).leafFor(name);
  t.not(serial(fresh), new X509Certificate(stale.cert).serialNumber, 're-minted');
  t.equal(fp(await readFile(join(dir, `${name}.crt`), 'utf8')), fp(fresh.certPem), 'and rewritten on disk');
});

/** Runs openssl; a missing binary fails with a message saying so (CI installs it). */
function openssl(t: Test, args: string[], input?: string): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const child = execFile('openssl', args, (err, stdout, stderr) => {
      if ((err as NodeJS.ErrnoException | null)?.code === 'ENOENT') {
        t.fail('openssl is not installed (not found on PATH): install it to run this test (CI does: apt-get install openssl)');
        return resolve({ code: -1, out: '' });
      }
      resolve({ code: err === null ? 0 : Number((err as { code?: unknown }).code ?? 1), out: stdout + stderr });
    });
    if (input !== undefined) child.stdin?.end(input);
  });
}

/** The DER bytes of an extension's extnValue, by OID (e.g. '2.5.29.14'), from a certificate. */
function extensionValue(cert: X509Certificate, id: string): Buffer | undefined {
  const der = cert.raw;
  const tbs = children(der, read(der, 0))[0]!;
  const exts = children(der, tbs).find((n) => n.tag === 0xa3);
  if (exts === undefined) return undefined;
  const want = oid(id);
  for (const e of children(der, children(der, exts)[0]!)) {
    const parts = children(der, e);
    if (!der.subarray(parts[0]!.start, parts[0]!.end).equals(want)) continue;
    const v = parts.at(-1)!;
    return der.subarray(v.content, v.end);
  }
  return undefined;
}

/** keyIdentifier of an SKI (OCTET STRING) or an AKI (SEQUENCE { [0] keyid }). */
function keyIdOf(value: Buffer | undefined): string | undefined {
  if (value === undefined) return undefined;
  const top = read(value, 0);
  const inner = top.tag === 0x04 ? top : children(value, top).find((n) => n.tag === 0x80);
  return inner === undefined ? undefined : value.subarray(inner.content, inner.end).toString('hex');
}

/** RFC 5280 method 1 key id: SHA-1 of the public key bits. */
function methodOneKeyId(cert: X509Certificate): string {
  const spki = cert.publicKey.export({ type: 'spki', format: 'der' });
  const bits = children(spki, read(spki, 0))[1]!;
  return createHash('sha1').update(spki.subarray(bits.content + 1, bits.end)).digest('hex');
}

t.test('leaves: 200 mints, each signed by the CA, with the right names and extensions', async (t) => {
  const caCert = new X509Certificate(ca.certPem);
  const caSki = keyIdOf(extensionValue(caCert, '2.5.29.14'));
  t.equal(caSki, methodOneKeyId(caCert), 'the CA has a subjectKeyIdentifier (method 1)');
  const started = Date.now();
  const serials = new Set<string>();
  const sets: string[][] = [];
  for (let i = 0; i < 200; i++) {
    // Exact names, uc names longer than 64 (no CN), wildcards, and pairs.
    if (i % 4 === 0) sets.push([`n${i}.mint.localhost`]);
    else if (i % 4 === 1) sets.push([UC.replace('000000000001', String(i).padStart(12, '0'))]);
    else if (i % 4 === 2) sets.push([`*.w${i}.localhost`]);
    else sets.push([`p${i}.localhost`, `*.p${i}.localhost`]);
  }
  const bundles = await Promise.all(sets.map((names) => ca.leafForNames(names)));
  let bad = 0;
  const badSubject: string[] = [];
  const badBundle: number[] = [];
  for (const [i, b] of bundles.entries()) {
    const names = [...sets[i]!].sort();
    const leaf = new X509Certificate(b.certPem);
    const ok =
      leaf.verify(caCert.publicKey) &&
      leaf.checkIssued(caCert) &&
      leaf.subjectAltName === names.map((n) => `DNS:${n}`).join(', ') &&
      !leaf.ca &&
      leaf.keyUsage?.join() === '1.3.6.1.5.5.7.3.1' &&
      leaf.publicKey.asymmetricKeyDetails?.namedCurve === 'prime256v1' &&
      /^[0-7][0-9A-F]{31}$/.test(leaf.serialNumber) &&
      keyIdOf(extensionValue(leaf, '2.5.29.35')) === caSki &&
      keyIdOf(extensionValue(leaf, '2.5.29.14')) === methodOneKeyId(leaf);
    if (!ok) bad++;
    serials.add(leaf.serialNumber);
    const cn = names.find((n) => !n.startsWith('*.')) ?? names[0]!;
    if (leaf.subject !== (cn.length <= 64 ? `O=edgeway local\nCN=${cn}` : 'O=edgeway local')) badSubject.push(leaf.subject);
    // What #mint builds without parsing equals what parsing the PEM gives (which also checks the key).
    if (JSON.stringify(bundleFromPem(b.certPem, b.keyPem)) !== JSON.stringify(b)) badBundle.push(i);
  }
  t.equal(bad, 0, 'every leaf verifies against the CA, with its SANs, EKU, AKI = CA SKI, SKI, P-256 key');
  t.same(badSubject, [], 'subject: O=edgeway local, plus CN when the name has ≤ 64 characters');
  t.same(badBundle, [], 'each bundle equals bundleFromPem of its own PEM (dates, names, issuer, key match)');
  t.ok(bundles.some((x) => !new X509Certificate(x.certPem).subject.includes('CN=')), 'long uc names get no CN');
  t.equal(serials.size, 200, 'serials are unique');
  const b = bundles[0]!;
  t.ok(Math.abs(b.notBefore.getTime() - (started - 5 * 60_000)) < 5_000, 'notBefore = now - 5 min');
  t.equal(b.notAfter.getTime() - b.notBefore.getTime(), 7 * 86_400_000 + 5 * 60_000, 'notAfter = now + leafDays');

  // A few of them in real handshakes, hostname checked by tls.connect.
  const store = new CertStore(fallback);
  for (const x of bundles.slice(0, 8)) store.set(x);
  const srv = await startServer(store, keys);
  for (const [i, names] of sets.slice(0, 8).entries()) {
    const servername = names[0]!.replace('*', 'any');
    const c = await connect(srv.port, { servername });
    t.ok(c.socket.authorized, `${servername} verifies`);
    t.equal(c.peer, fp(bundles[i]!.certPem));
  }

  const files = await readdir(join(dataDir, 'certs', 'local'));
  t.same(files.filter((f) => f.endsWith('.tmp')), [], 'no temp files left');
  const stem = join(dataDir, 'certs', 'local', 'n0.mint.localhost');
  t.equal((await stat(stem + '.key')).mode & 0o777, 0o600, 'key file 0600');
  t.equal((await stat(stem + '.crt')).mode & 0o777, 0o644, 'cert file 0644');
  t.equal(await readFile(stem + '.crt', 'utf8'), bundles[0]!.certPem, 'files hold the bundle');
  t.equal(await readFile(stem + '.key', 'utf8'), bundles[0]!.keyPem);
});

t.test('leaves: files left empty by a power cut (they are not fsynced) are due and minted again', async (t) => {
  const name = 'torn.localhost';
  const first = await ca.leafFor(name);
  const stem = join(dataDir, 'certs', 'local', name);
  await writeFile(stem + '.key', '');
  const reopened = await LocalCA.open(dataDir, { leafDays: 7 });
  t.equal(await reopened.leafDue(name), true, 'an empty key file makes the leaf due');
  t.equal(await LocalCA.leafReader(dataDir)(name), undefined, 'the data-plane reader refuses it');
  const again = await reopened.leafFor(name);
  t.not(serial(again), serial(first), 'minted again');
  t.equal(await readFile(stem + '.key', 'utf8'), again.keyPem, 'and rewritten');
  t.equal(await LocalCA.open(dataDir, { leafDays: 7 }).then((c) => c.leafDue(name)), false, 'no longer due');
  await writeFile(stem + '.crt', '');
  t.equal(await (await LocalCA.open(dataDir, { leafDays: 7 })).leafDue(name), true, 'an empty certificate file too');
});

t.test('leaves: openssl verifies them and shows the expected extensions', async (t) => {
  const b = await ca.leafForNames(['ossl.localhost', '*.ossl.localhost']);
  const leafFile = join(dataDir, 'certs', 'local', '_.ossl.localhost+ossl.localhost.crt');
  const v = await openssl(t, ['verify', '-x509_strict', '-purpose', 'sslserver', '-CAfile', ca.certPath, leafFile]);
  t.equal(v.code, 0, v.out);
  t.match(v.out, /: OK/);
  const text = (await openssl(t, ['x509', '-noout', '-text'], b.certPem)).out;
  t.match(text, /Signature Algorithm: ecdsa-with-SHA256/);
  t.match(text, /Issuer: O ?= ?edgeway, CN ?= ?edgeway local CA/);
  t.match(text, /Subject: O ?= ?edgeway local, CN ?= ?ossl\.localhost/);
  t.match(text, /ASN1 OID: prime256v1/);
  t.match(text, /X509v3 Basic Constraints: critical\s+CA:FALSE/);
  t.match(text, /X509v3 Key Usage: critical\s+Digital Signature\n/);
  t.match(text, /X509v3 Extended Key Usage: ?\s+TLS Web Server Authentication\n/);
  t.match(text, /X509v3 Subject Alternative Name: ?\s+DNS:\*\.ossl\.localhost, DNS:ossl\.localhost\n/);
  t.match(text, /X509v3 Subject Key Identifier/);
  t.match(text, /X509v3 Authority Key Identifier/);
  const key = await openssl(t, ['pkey', '-noout', '-check'], b.keyPem);
  t.equal(key.code, 0, `leaf key passes openssl pkey -check: ${key.out}`);
  const caText = (await openssl(t, ['x509', '-noout', '-text', '-in', ca.certPath])).out;
  t.match(caText, /X509v3 Basic Constraints: critical\s+CA:TRUE, pathlen:0/);
  t.match(caText, /X509v3 Key Usage: critical\s+Certificate Sign, CRL Sign\n/);
});

t.test('leaves of a CA created by an older edgeway (selfsigned, no SKI) still verify', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'edgeway-tls-legacy-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const now = Date.now();
  const old = await generate(
    [
      { name: 'organizationName', value: 'edgeway' },
      { name: 'commonName', value: 'edgeway local CA legacy' },
    ],
    {
      keyType: 'ec',
      curve: 'P-256',
      algorithm: 'sha256',
      notBeforeDate: new Date(now - 60_000),
      notAfterDate: new Date(now + 365 * 86_400_000),
      extensions: [
        { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
        { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
      ],
    },
  );
  await mkdir(join(dir, 'ca'));
  await writeFile(join(dir, 'ca', 'edgeway-local-ca.crt'), old.cert);
  await writeFile(join(dir, 'ca', 'edgeway-local-ca.key'), old.private);
  const legacy = await LocalCA.open(dir, { leafDays: 7 });
  const caCert = new X509Certificate(legacy.certPem);
  t.equal(extensionValue(caCert, '2.5.29.14'), undefined, 'the old CA has no SKI');
  const b = await legacy.leafFor('legacy.localhost');
  const leaf = new X509Certificate(b.certPem);
  t.ok(leaf.verify(caCert.publicKey) && leaf.checkIssued(caCert), 'signed by the old CA');
  t.equal(b.issuer, 'edgeway local CA legacy');
  t.equal(keyIdOf(extensionValue(leaf, '2.5.29.35')), methodOneKeyId(caCert), 'AKI = the CA key id by method 1');
  const v = await openssl(t, ['verify', '-CAfile', legacy.certPath, join(dir, 'certs', 'local', 'legacy.localhost.crt')]);
  t.equal(v.code, 0, v.out);
  const store = new CertStore(b);
  const srv = await startServer(store, keys);
  const c = await new Promise<tls.TLSSocket>((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port: srv.port, ca: [legacy.certPem], servername: 'legacy.localhost' }, () => resolve(s));
    t.teardown(() => void s.destroy());
    s.once('error', reject);
  });
  t.ok(c.authorized, 'handshake verifies against the old CA');
});

t.test('an RSA CA signs leaves with sha256WithRSAEncryption', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'edgeway-tls-rsa-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const now = Date.now();
  const rsa = await generate([{ name: 'commonName', value: 'rsa test CA' }], {
    keySize: 2048,
    algorithm: 'sha256',
    notBeforeDate: new Date(now - 60_000),
    notAfterDate: new Date(now + 365 * 86_400_000),
    extensions: [{ name: 'basicConstraints', cA: true, critical: true }],
  });
  await mkdir(join(dir, 'ca'));
  await writeFile(join(dir, 'ca', 'edgeway-local-ca.crt'), rsa.cert);
  await writeFile(join(dir, 'ca', 'edgeway-local-ca.key'), rsa.private);
  const rca = await LocalCA.open(dir, { leafDays: 7 });
  const leaf = new X509Certificate((await rca.leafFor('rsa.localhost')).certPem);
  t.ok(leaf.verify(new X509Certificate(rca.certPem).publicKey));
  const text = (await openssl(t, ['x509', '-noout', '-text'], leaf.toString())).out;
  t.match(text, /Signature Algorithm: sha256WithRSAEncryption/);
  const v = await openssl(t, ['verify', '-CAfile', rca.certPath, join(dir, 'certs', 'local', 'rsa.localhost.crt')]);
  t.equal(v.code, 0, v.out);
});

t.test('DER encoder', async (t) => {
  t.equal(uint(Buffer.from([0, 0, 0x7f])).toString('hex'), '02017f', 'leading zeros dropped');
  t.equal(uint(Buffer.from([0x80])).toString('hex'), '02020080', 'a high bit gets a zero byte');
  t.equal(uint(Buffer.alloc(0)).toString('hex'), '020100');
  t.equal(smallInt(2).toString('hex'), '020102');
  t.throws(() => smallInt(128));
  t.equal(oid('1.2.840.10045.4.3.2').toString('hex'), '06082a8648ce3d040302');
  t.equal(time(Date.UTC(2049, 11, 31, 23, 59, 59, 999)).toString('latin1').slice(2), '491231235959Z', 'UTCTime to 2049, seconds truncated');
  t.equal(time(Date.UTC(2050, 0, 1)).toString('latin1').slice(2), '20500101000000Z', 'GeneralizedTime from 2050');
  for (const n of [0, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000, 0x1000000]) {
    const enc = tlv(0x04, Buffer.alloc(n));
    const node = read(enc, 0);
    t.equal(node.end - node.content, n, `length ${n} round-trips`);
    t.equal(node.end, enc.length);
  }
  t.same(children(seq(smallInt(1), smallInt(2)), read(seq(smallInt(1), smallInt(2)), 0)).length, 2);
  t.throws(() => read(Buffer.from([0x30, 0x05, 0x01]), 0), /past the end/);
  t.throws(() => read(Buffer.from([0x30, 0x80]), 0), /unsupported length/);
  t.throws(() => read(Buffer.from([0x30]), 0), /truncated/);
});

t.test('bundleFromPem', async (t) => {
  const a = await ca.leafFor('a.localhost');
  const b = await ca.leafFor('b.localhost');
  const noNewline = a.certPem.trimEnd();
  const parsed = bundleFromPem(noNewline, a.keyPem);
  t.same(parsed.names, ['a.localhost']);
  t.equal(parsed.certPem, a.certPem, 'blocks normalized');
  t.throws(() => bundleFromPem(a.certPem, b.keyPem), { code: 'INVALID_FIELD', field: 'key' });
  t.throws(() => bundleFromPem('not a cert', a.keyPem), { code: 'INVALID_FIELD', field: 'cert' });
});

t.test('store lookups', async (t) => {
  const store = new CertStore(fallback);
  const uc = await ca.leafFor(UC);
  const wild = await ca.leafFor('*.org-x.localhost');
  store.set(uc);
  store.set(wild);
  const fb = store.contextFor(undefined);
  t.not(store.contextFor(UC), fb);
  t.equal(store.contextFor(UC.toUpperCase() + '.'), store.contextFor(UC), 'case and trailing dot');
  t.not(store.contextFor('uc-y.org-x.localhost'), fb, 'wildcard covers one label');
  t.equal(store.contextFor('a.b.org-x.localhost'), fb, 'but not two');
  t.equal(store.contextFor('org-x.localhost'), fb, 'nor the parent itself');
  t.ok(store.has('*.org-x.localhost'));
  t.notOk(store.has('uc-y.org-x.localhost'));
  t.equal(store.list().length, 3);
  store.delete(UC, fallback);
  t.ok(store.has(UC), 'delete with a bundle that is not current is a no-op');
  store.delete(UC);
  t.notOk(store.has(UC));
  t.equal(store.contextFor(UC), fb);
});

t.test('handshakes: exact, wildcard, unrouted, no SNI', async (t) => {
  const store = new CertStore(fallback);
  const uc = await ca.leafFor(UC);
  const wild = await ca.leafFor('*.org-x.localhost');
  store.set(uc);
  store.set(wild);
  const srv = await startServer(store, keys);

  const exact = await connect(srv.port, { servername: UC, ALPNProtocols: ['http/1.1'] });
  t.ok(exact.socket.authorized, 'chain and name verify against the CA');
  t.equal(exact.peer, fp(uc.certPem));
  t.equal(exact.socket.alpnProtocol, 'http/1.1');
  t.equal(await echo(exact.socket, 'hi'), 'hi');

  const viaWild = await connect(srv.port, { servername: 'uc-y.org-x.localhost' });
  t.ok(viaWild.socket.authorized);
  t.equal(viaWild.peer, fp(wild.certPem));

  const deep = await connect(srv.port, { servername: 'a.b.org-x.localhost', rejectUnauthorized: false });
  t.equal(deep.peer, fp(fallback.certPem), 'two labels down gets the fallback');

  const unrouted = await connect(srv.port, { servername: 'nobody.example', rejectUnauthorized: false });
  t.equal(unrouted.peer, fp(fallback.certPem), 'unrouted SNI completes with the fallback');

  const noSni = await connect(srv.port, { rejectUnauthorized: false });
  t.equal(noSni.peer, fp(fallback.certPem), 'no SNI completes with the fallback');
  await echo(noSni.socket, 'x'); // the server has surely accepted it by now
  t.equal(srv.lastServername, false, 'the client really sent no SNI');
});

t.test('swap: next handshake sees the new cert, open connections keep working', async (t) => {
  const name = 'swap.localhost';
  const store = new CertStore(fallback);
  const first = await ca.leafFor(name);
  store.set(first);
  const srv = await startServer(store, keys);
  const open = await connect(srv.port, { servername: name });
  t.equal(open.peer, fp(first.certPem));

  await ca.forget([name]);
  const second = await ca.leafFor(name);
  t.not(serial(second), serial(first), 'forget makes the next call mint');
  store.set(second);

  const next = await connect(srv.port, { servername: name });
  t.equal(next.peer, fp(second.certPem), 'new handshake, new cert');
  t.equal(await echo(open.socket, 'still here'), 'still here', 'old connection untouched');
});

t.test('new fallback reaches no-SNI clients after refreshDefaultContext', async (t) => {
  const store = new CertStore(fallback);
  const srv = await startServer(store, keys);
  const other = await ca.leafForNames(['example.localhost']);
  store.setFallback(other);
  t.equal((await connect(srv.port, { servername: 'nobody.example', rejectUnauthorized: false })).peer, fp(other.certPem));
  refreshDefaultContext(srv.server, store, keys);
  t.equal((await connect(srv.port, { rejectUnauthorized: false })).peer, fp(other.certPem));
});

t.test('protocol versions and ciphers', async (t) => {
  const store = new CertStore(fallback);
  store.set(await ca.leafFor(UC));
  const srv = await startServer(store, keys);

  // SECLEVEL=0 so that the client itself is willing to offer TLS 1.1.
  const old = { servername: UC, minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' } as const;
  await t.rejects(connect(srv.port, old));
  t.equal(srv.clientErrors.at(-1)?.code, 'ERR_SSL_UNSUPPORTED_PROTOCOL', 'the server refused TLS 1.1');

  const v12 = await connect(srv.port, { servername: UC, maxVersion: 'TLSv1.2' });
  t.equal(v12.socket.getProtocol(), 'TLSv1.2');
  t.equal(v12.socket.getCipher().name, 'ECDHE-ECDSA-AES128-GCM-SHA256');

  const v13 = await connect(srv.port, { servername: UC });
  t.equal(v13.socket.getProtocol(), 'TLSv1.3');
  t.equal(v13.socket.getCipher().standardName, 'TLS_AES_128_GCM_SHA256', 'server order, not the client default');

  const cbc = { servername: UC, maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-SHA256' } as const;
  await t.rejects(connect(srv.port, cbc), 'CBC suites are not offered');
});

/**
 * First connection's session. The listener goes on before the handshake: with
 * TLS 1.2 the ticket comes within it, with TLS 1.3 after it.
 */
function sessionFrom(port: number, maxVersion: tls.SecureVersion): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ca: [ca.certPem], servername: UC, maxVersion });
    t.teardown(() => void socket.destroy());
    socket.once('session', (session: Buffer) => {
      resolve(session);
      socket.end();
    });
    socket.once('error', reject);
  });
}

for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
  t.test(`session resumption with tickets, ${version}`, async (t) => {
    const store = new CertStore(fallback);
    store.set(await ca.leafFor(UC));
    const one = await startServer(store, keys);
    const two = await startServer(store, Buffer.from(keys)); // another worker, same keys
    const other = await startServer(store, newTicketKeys());
    const session = await sessionFrom(one.port, version);

    const again = await connect(one.port, { servername: UC, maxVersion: version, session });
    t.equal(again.socket.getProtocol(), version);
    t.ok(again.socket.isSessionReused(), 'same server resumes');
    const cross = await connect(two.port, { servername: UC, maxVersion: version, session });
    t.ok(cross.socket.isSessionReused(), 'a server with the same ticket keys resumes');
    const foreign = await connect(other.port, { servername: UC, maxVersion: version, session });
    t.notOk(foreign.socket.isSessionReused(), 'different ticket keys do not');
  });
}

t.test('files mode', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'edgeway-tls-files-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const site = await ca.leafFor('files.localhost');
  const multi = await ca.leafForNames(['m.localhost', '*.m.localhost']);
  await writeFile(join(dir, 'site.crt'), site.certPem);
  await writeFile(join(dir, 'site.key'), site.keyPem);
  await writeFile(join(dir, 'multi+1.pem'), multi.certPem);
  await writeFile(join(dir, 'multi+1-key.pem'), multi.keyPem);
  await writeFile(join(dir, 'README'), 'not a certificate');
  await writeFile(join(dir, 'stray.key'), site.keyPem);

  const loaded = await loadCertsDir(dir);
  t.same(loaded.map((b) => [...b.names].sort()), [['*.m.localhost', 'm.localhost'], ['files.localhost']]);
  t.equal(fp(loaded[1]!.certPem), fp(site.certPem));

  await writeFile(join(dir, 'bad.crt'), site.certPem);
  await writeFile(join(dir, 'bad.key'), multi.keyPem);
  await t.rejects(loadCertsDir(dir), { code: 'CONFIG_INVALID', message: /bad\.key.*does not match/ });
  await writeFile(join(dir, 'bad.key'), site.keyPem);
  await writeFile(join(dir, 'broken.pem'), 'garbage');
  await t.rejects(loadCertsDir(dir), { code: 'CONFIG_INVALID', message: /broken\.pem: .*no key file broken-key\.pem/ });
  await writeFile(join(dir, 'broken-key.pem'), site.keyPem);
  await t.rejects(loadCertsDir(dir), { code: 'CONFIG_INVALID', message: /broken\.pem: cert: no PEM certificate/ });
  await t.rejects(loadCertsDir(join(dir, 'absent')), { code: 'CONFIG_INVALID' });
});

t.test('writeFileAtomic', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'edgeway-atomic-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'secret.key');
  await writeFileAtomic(file, 'one', 0o600);
  t.equal((await stat(file)).mode & 0o777, 0o600);
  await writeFileAtomic(file, new TextEncoder().encode('two'), 0o640);
  t.equal(await readFile(file, 'utf8'), 'two', 'replaced');
  t.equal((await stat(file)).mode & 0o777, 0o640, 'mode set exactly, whatever the umask');
  await writeFileAtomic(join(dir, 'plain.txt'), 'x');
  const umask = process.umask(0o022);
  process.umask(umask);
  t.equal((await stat(join(dir, 'plain.txt'))).mode & 0o777, 0o666 & ~umask, 'no mode: 0666 less the umask');
  t.same((await readdir(dir)).sort(), ['plain.txt', 'secret.key'], 'no temp files left');
  await t.rejects(writeFileAtomic(join(dir, 'missing', 'x'), 'y'), { code: 'ENOENT' });
  t.same((await readdir(dir)).sort(), ['plain.txt', 'secret.key']);
});
