// TLS certificates and server options: the local CA, the SNI store, files mode,
// atomic writes, and real handshakes against tls.createServer on 127.0.0.1.

import t from 'tap';
import { X509Certificate } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { generate } from 'selfsigned';
import { writeFileAtomic } from '../src/tls/atomic-write.js';
import { bundleFromPem, type CertBundle } from '../src/tls/cert-bundle.js';
import { CertStore } from '../src/tls/cert-store.js';
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
