// Issue 5 against a real ACME server: Pebble with DNS-01 validated through
// pebble-challtestsrv's DNS (test/helpers/pebble.ts). Covers issuance of
// {domain} + *.{domain}, an org registration triggering *.org-{id} (a uc host
// then validates against Pebble's root), release after the org's hosts are
// gone, batching several orgs into one certificate, renewal swapped in while
// a keep-alive connection and a websocket stay open, a wrong TXT value and a
// stopped DNS server (retries, old certificate keeps serving), and the
// budget refusal. Issuance times are printed as `# acme-timing …` lines.

import t from 'tap';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import http from 'node:http';
import https from 'node:https';
import { join } from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';
import WebSocket from 'ws';
import * as acme from 'acme-client';
import { admin, DOMAIN, ORG, ORG2, startTestAppliance, UC, UC_HOST, type TestAppliance } from './helpers/appliance.js';
import { pageUpstream } from './helpers/browser.js';
import { missingPebble, startPebble, type Pebble } from './helpers/pebble.js';
import { MAIN } from './helpers/process.js';

const run = promisify(execFile);
const ORG3 = '7f3a0000-0000-4000-8000-000000000004';
const ucOf = (org: string, uc = UC): string => `uc-${uc}.org-${org}.${DOMAIN}`;

interface Row {
  id: string;
  names: string[];
  state: string;
  issuer: string | null;
  not_before: string | null;
  not_after: string | null;
  last_error: { code: string; message: string } | null;
  orgs: string[];
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function certs(ta: TestAppliance): Promise<Row[]> {
  const r = await admin(ta, 'GET', '/v1/certs');
  if (r.status !== 200) throw new Error(`GET /v1/certs answered ${r.status}`);
  return r.json as Row[];
}

/** Polls /v1/certs until `pred` holds; returns the rows and how long it took. */
async function until(ta: TestAppliance, what: string, pred: (rows: Row[]) => boolean, timeoutMs = 30_000): Promise<{ rows: Row[]; ms: number }> {
  const t0 = performance.now();
  let rows: Row[] = [];
  while (performance.now() - t0 < timeoutMs) {
    rows = await certs(ta);
    if (pred(rows)) return { rows, ms: Math.round(performance.now() - t0) };
    await sleep(50);
  }
  throw new Error(`${what}: not within ${timeoutMs} ms; last /v1/certs: ${JSON.stringify(rows)}`);
}

const row = (rows: Row[], id: string): Row | undefined => rows.find((r) => r.id === id);

interface Peer {
  readonly authorized: boolean;
  readonly error: string | null;
  readonly serial: string;
  readonly issuer: string;
  readonly san: string;
}

/** A TLS handshake with SNI `servername`, verifying against `root` (the chain and the name). */
function handshake(port: number, servername: string, root: string): Promise<Peer> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername, ca: [root], rejectUnauthorized: false }, () => {
      const c = s.getPeerCertificate();
      const err = s.authorizationError === null ? null : String(s.authorizationError);
      // tls.checkServerIdentity is what https does after the chain check.
      const nameErr = tls.checkServerIdentity(servername, c);
      resolve({
        authorized: s.authorized && nameErr === undefined,
        error: err ?? nameErr?.message ?? null,
        serial: c.serialNumber,
        issuer: c.issuer?.CN ?? '',
        san: c.subjectaltname ?? '',
      });
      s.end();
    });
    s.on('error', reject);
  });
}

function acmeConfig(p: Pebble, extra: Record<string, unknown> = {}, hookUrl = p.hookUrl): Record<string, unknown> {
  return {
    tls: {
      mode: 'acme',
      acme: {
        directory_url: p.directoryUrl,
        ca_file: p.caFile,
        email: 'ops@example.test',
        dns01: { provider: 'webhook', url: hookUrl, propagation_wait_s: 0 },
        retry_min_s: 1,
        retry_max_s: 2,
        ...extra,
      },
    },
  };
}

const entry = (upstream: string): Record<string, unknown> => ({ access: 'public', locations: [{ path: '/', upstream }] });

async function ledger(ta: TestAppliance): Promise<{ kind: string; names: string[] }[]> {
  return (JSON.parse(await readFile(join(ta.cfg.data_dir, 'acme', 'ledger.json'), 'utf8')) as { entries: { kind: string; names: string[] }[] }).entries;
}

const missing = missingPebble();
if (missing !== null) {
  t.fail(missing);
} else {
  t.test('ACME against Pebble', async (t) => {
    const pebble = await startPebble(t);
    const root = await pebble.root();

    t.test('{domain} + *.{domain} at start; an org registration orders its wildcard; a uc host validates against Pebble root', async (t) => {
      const up = await pageUpstream(t);
      const t0 = performance.now();
      const ta = await startTestAppliance(t, acmeConfig(pebble, { release_after_s: 1 }));
      const start = await until(ta, 'domain certificate', (rows) => row(rows, 'domain')?.state === 'ready');
      t.comment(`acme-timing domain certificate ready ${Math.round(performance.now() - t0)} ms after start (${start.ms} ms after the admin API answered)`);
      const domainRow = row(start.rows, 'domain')!;
      t.strictSame(domainRow.names, [DOMAIN, `*.${DOMAIN}`]);
      t.match(domainRow.issuer, /^Pebble Intermediate CA/);
      t.ok(Date.parse(domainRow.not_after!) > Date.now() + 86400_000, 'not_after is in the future');
      for (const sni of [DOMAIN, `api.${DOMAIN}`, `org-${ORG}.${DOMAIN}`]) {
        const peer = await handshake(ta.httpsPort, sni, root);
        t.ok(peer.authorized, `${sni} validates against Pebble's root (${peer.error})`);
      }

      // Key files are 0600 under data_dir/acme.
      const acmeDir = join(ta.cfg.data_dir, 'acme');
      t.equal((await stat(join(acmeDir, 'account.key'))).mode & 0o777, 0o600);
      t.equal((await stat(join(acmeDir, 'certs', 'domain.key'))).mode & 0o777, 0o600);

      // Before the org's wildcard exists the uc host gets the best there is (*.{domain}): it does not validate.
      const put = await admin(ta, 'PUT', `/v1/hosts/${UC_HOST}`, entry(up.url));
      t.equal(put.status, 201);
      t.equal((put.json as { certificate: string }).certificate, 'pending', 'PUT answers pending while the org wildcard is on order');
      const tPut = performance.now();
      const early = await handshake(ta.httpsPort, UC_HOST, root);
      if (!early.authorized) t.match(early.san, `*.${DOMAIN}`, 'pending: served with the domain wildcard meanwhile');
      const org = await until(ta, 'org wildcard', (rows) => row(rows, `org-${ORG}`)?.state === 'ready');
      t.comment(`acme-timing org wildcard ready ${Math.round(performance.now() - tPut)} ms after the PUT`);
      t.strictSame(row(org.rows, `org-${ORG}`)!.names, [`*.org-${ORG}.${DOMAIN}`]);

      const peer = await handshake(ta.httpsPort, UC_HOST, root);
      t.ok(peer.authorized, `uc host chain validates against Pebble's root (${peer.error})`);
      t.match(peer.issuer, /^Pebble Intermediate CA/);
      // And a full HTTPS request with default verification.
      const body = await new Promise<string>((resolve, reject) => {
        https
          .get({ host: '127.0.0.1', port: ta.httpsPort, servername: UC_HOST, headers: { host: UC_HOST }, ca: [root], agent: false }, (res) => {
            let b = '';
            res.setEncoding('utf8').on('data', (c: string) => (b += c)).on('end', () => resolve(b));
          })
          .on('error', reject);
      });
      t.match(body, UC_HOST);

      const second = await admin(ta, 'PUT', `/v1/hosts/${ucOf(ORG, '1b4e8f0a-0000-4000-8000-000000000009')}`, entry(up.url));
      t.equal((second.json as { certificate: string }).certificate, 'ready', "the org's next host is ready at once");

      // The CLI shows the same.
      const cli = await run(process.execPath, [MAIN, 'certs', '--admin', ta.adminUrl.slice('http://'.length), '--token', ta.platformToken]);
      t.match(cli.stdout, /^NAMES\s+STATE\s+ISSUER\s+NOT AFTER\s+LAST ERROR/);
      t.match(cli.stdout, new RegExp(`\\*\\.org-${ORG}\\.${DOMAIN.replace('.', '\\.')}\\s+ready\\s+Pebble Intermediate CA`));
      const metrics = await fetch(`${ta.adminUrl}/metrics`, { headers: { authorization: `Bearer ${ta.platformToken}` } }).then((r) => r.text());
      t.match(metrics, /edgeway_acme_certificates\{state="ready"\} 2/);

      // An org token sees only its own org's certificates.
      const { signToken } = await import('../src/auth/jwt.js');
      const { loadJwtKeys } = await import('../src/auth/keys.js');
      const orgToken = signToken(await loadJwtKeys(ta.cfg), ta.cfg.auth.jwt, { type: 'organization_token', organization_id: ORG2 }, 60);
      const other = await fetch(`${ta.adminUrl}/v1/certs`, { headers: { authorization: `Bearer ${orgToken}` } }).then((r) => r.json());
      t.strictSame(other, []);

      // The org's hosts go: after release_after_s the wildcard is released (files and data plane).
      for (const h of [UC_HOST, ucOf(ORG, '1b4e8f0a-0000-4000-8000-000000000009')]) t.equal((await admin(ta, 'DELETE', `/v1/hosts/${h}`)).status, 204);
      await until(ta, 'org wildcard released', (rows) => row(rows, `org-${ORG}`) === undefined, 15_000);
      t.notOk((await readdir(join(acmeDir, 'certs'))).includes(`org-${ORG}.crt`), 'released certificate removed from data_dir');
      t.notOk((await handshake(ta.httpsPort, UC_HOST, root)).authorized, 'the released wildcard is no longer served');
    });

    t.test('orgs registered close together share one certificate (max_names)', async (t) => {
      const ta = await startTestAppliance(t, acmeConfig(pebble, { max_names: 3, batch_wait_ms: 1500 }));
      await until(ta, 'domain certificate', (rows) => row(rows, 'domain')?.state === 'ready');
      const tPut = performance.now();
      const orgs = [ORG, ORG2, ORG3];
      const b = await admin(ta, 'POST', '/v1/batch', { put: orgs.map((o) => ({ host: ucOf(o), ...entry('http://127.0.0.1:9') })) });
      t.equal(b.status, 200);
      t.strictSame((b.json as { put: { certificate: string }[] }).put.map((p) => p.certificate), ['pending', 'pending', 'pending']);
      const { rows } = await until(ta, 'batched wildcard', (rows) => rows.some((r) => r.id !== 'domain' && r.state === 'ready'));
      t.comment(`acme-timing batch of 3 org wildcards ready ${Math.round(performance.now() - tPut)} ms after the PUT (3 = max_names: no batch wait)`);
      const batch = rows.filter((r) => r.id !== 'domain');
      t.equal(batch.length, 1, 'one certificate for the three orgs');
      t.strictSame([...batch[0]!.names].sort(), orgs.map((o) => `*.org-${o}.${DOMAIN}`).sort());
      for (const o of orgs) t.ok((await handshake(ta.httpsPort, ucOf(o), root)).authorized, `uc host of ${o} validates`);
      t.equal((await ledger(ta)).filter((e) => e.kind === 'certificate').length, 2, 'two certificates issued: domain and the batch');
    });

    t.test('renewal is swapped in while a keep-alive connection and a websocket stay open', async (t) => {
      const up = await pageUpstream(t);
      // A fresh certificate is already due: every one is renewed as soon as it arrives.
      const ta = await startTestAppliance(t, acmeConfig(pebble, { renew_at: 1e-9 }));
      await admin(ta, 'PUT', `/v1/hosts/${UC_HOST}`, entry(up.url));
      await until(ta, 'org wildcard', (rows) => row(rows, `org-${ORG}`)?.not_after != null);

      const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: [root], servername: UC_HOST });
      t.teardown(() => agent.destroy());
      const get = (): Promise<{ status: number; serial: string; reused: boolean }> =>
        new Promise((resolve, reject) => {
          const req = https.get({ host: '127.0.0.1', port: ta.httpsPort, headers: { host: UC_HOST }, agent }, (res) => {
            const serial = (res.socket as tls.TLSSocket).getPeerCertificate().serialNumber;
            res.resume().on('end', () => resolve({ status: res.statusCode ?? 0, serial, reused: req.reusedSocket }));
          });
          req.on('error', reject);
        });
      const first = await get();
      t.equal(first.status, 200);
      const ws = new WebSocket(`wss://127.0.0.1:${ta.httpsPort}/ws`, { headers: { host: UC_HOST }, servername: UC_HOST, ca: [root] } as WebSocket.ClientOptions);
      t.teardown(() => ws.terminate());
      await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
      const wsSerial = (ws as unknown as { _socket: tls.TLSSocket })._socket.getPeerCertificate().serialNumber;

      const tSwap = performance.now();
      let fresh: Peer;
      do {
        await sleep(100);
        fresh = await handshake(ta.httpsPort, UC_HOST, root);
      } while (fresh.serial === first.serial && performance.now() - tSwap < 30_000);
      t.not(fresh.serial, first.serial, 'a new handshake gets the renewed certificate');
      t.ok(fresh.authorized, `renewed certificate validates (${fresh.error})`);
      t.comment(`acme-timing renewed certificate served ${Math.round(performance.now() - tSwap)} ms after the first was in use`);

      const again = await get();
      t.equal(again.status, 200, 'the keep-alive connection still works');
      t.ok(again.reused, 'on the same connection');
      t.equal(again.serial, first.serial, 'which keeps the certificate it negotiated');
      const echo = new Promise<string>((resolve) => ws.once('message', (d) => resolve(d.toString())));
      ws.send('still here');
      t.equal(await echo, 'echo:still here', 'the websocket still works');
      t.equal(wsSerial, first.serial);
      t.equal(ws.readyState, WebSocket.OPEN);
      t.ok((await ledger(ta)).filter((e) => e.kind === 'certificate').length >= 3, 'renewals are recorded in the ledger');
    });

    t.test('a wrong TXT value and a stopped DNS server: retried, the old certificate keeps serving, then recovery', async (t) => {
      // A webhook in front of challtestsrv that can publish a wrong value.
      let wrong = false;
      const hook = http.createServer((req, res) => {
        let body = '';
        req.setEncoding('utf8').on('data', (c: string) => (body += c)).on('end', () => {
          const msg = JSON.parse(body) as { host: string; value?: string };
          if (wrong && msg.value !== undefined) msg.value = 'wrong-value-wrong-value-wrong-value-wrong-v';
          fetch(`${pebble.hookUrl}${req.url}`, { method: 'POST', body: JSON.stringify(msg) }).then(
            (r) => res.writeHead(r.status).end(),
            () => res.writeHead(502).end(),
          );
        });
      });
      await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
      t.teardown(() => new Promise((r) => hook.close(r)));
      const hookUrl = `http://127.0.0.1:${(hook.address() as { port: number }).port}`;
      const ta = await startTestAppliance(t, acmeConfig(pebble, { renew_at: 1e-9 }, hookUrl));
      const { rows } = await until(ta, 'domain certificate', (rows) => row(rows, 'domain')?.not_after != null);
      const firstNotAfter = row(rows, 'domain')!.not_after;
      t.ok((await handshake(ta.httpsPort, DOMAIN, root)).authorized);

      wrong = true;
      const bad = await until(ta, 'failure recorded', (rows) => row(rows, 'domain')?.last_error?.code === 'acme_order_failed');
      const err = row(bad.rows, 'domain')!.last_error!;
      t.match(err.message, /^validation: example\.test: urn:ietf:params:acme:error:unauthorized Correct value not found for DNS challenge/, `the cause is named: ${err.message}`);
      t.equal(row(bad.rows, 'domain')!.state, 'renewing', 'the old certificate is still in hand');
      const during = await handshake(ta.httpsPort, DOMAIN, root);
      t.ok(during.authorized, 'a valid certificate keeps serving while orders fail');

      wrong = false;
      await pebble.stopDns();
      let dnsBack = false;
      t.teardown(() => (dnsBack ? undefined : pebble.startDns()));
      const down = await until(ta, 'DNS hook failure recorded', (rows) => row(rows, 'domain')?.last_error?.code === 'acme_dns_failed');
      // The webhook in front answers 502 when challtestsrv is gone (the first test covers an unreachable hook).
      t.match(row(down.rows, 'domain')!.last_error!.message, /^DNS webhook set-txt at http:\/\/127\.0\.0\.1:\d+\/set-txt answered HTTP 502$/);
      t.ok((await handshake(ta.httpsPort, DOMAIN, root)).authorized, 'still serving with the DNS hook down');

      await pebble.startDns();
      dnsBack = true;
      const healed = await until(ta, 'recovery', (rows) => row(rows, 'domain')?.last_error === null && row(rows, 'domain')?.not_after !== firstNotAfter);
      t.ok(row(healed.rows, 'domain')!.not_after, 'a new certificate after the faults are gone');
      t.ok((await handshake(ta.httpsPort, DOMAIN, root)).authorized);
    });

    t.test('the exec provider runs `<command> set|clear <fqdn> <value>`; a failing command is a named DNS error', async (t) => {
      const dir = await mkdtemp(join(tmpdir(), 'edgeway-exec-hook-'));
      t.teardown(() => rm(dir, { recursive: true, force: true }));
      const calls = join(dir, 'calls.log');
      const impl = join(dir, 'dns-hook.mjs');
      const script = join(dir, 'dns-hook');
      // A DNS "provider" for the test: writes into challtestsrv, like a script
      // would write a zone file for CoreDNS or BIND; fails while ./broken exists.
      // The wrapper drops tap's NODE_OPTIONS (its loaders), which the hook would inherit.
      await writeFile(script, `#!/bin/sh\nunset NODE_OPTIONS\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(impl)} "$@"\n`, { mode: 0o755 });
      await writeFile(
        impl,
        `import { appendFileSync, existsSync } from 'node:fs';
const [op, fqdn, value] = process.argv.slice(2);
appendFileSync(${JSON.stringify(calls)}, op + ' ' + fqdn + ' ' + (value ? 'value' : 'none') + '\\n');
if (existsSync(${JSON.stringify(join(dir, 'broken'))})) { console.error('zone file is read-only'); process.exit(3); }
const body = op === 'set' ? { host: fqdn, value } : { host: fqdn };
const r = await fetch(${JSON.stringify(pebble.hookUrl)} + '/' + op + '-txt', { method: 'POST', body: JSON.stringify(body) });
process.exit(r.ok ? 0 : 1);
`,
        { mode: 0o755 },
      );
      await writeFile(join(dir, 'broken'), '');
      const ta = await startTestAppliance(t, acmeConfig(pebble, { dns01: { provider: 'exec', command: script, propagation_wait_s: 0 } }));
      const bad = await until(ta, 'exec failure', (rows) => row(rows, 'domain')?.last_error?.code === 'acme_dns_failed');
      t.match(row(bad.rows, 'domain')!.last_error!.message, `DNS command ${script} set _acme-challenge.${DOMAIN}. failed (exit 3): zone file is read-only`);
      await rm(join(dir, 'broken'));
      await until(ta, 'domain certificate via exec', (rows) => row(rows, 'domain')?.state === 'ready');
      t.ok((await handshake(ta.httpsPort, DOMAIN, root)).authorized);
      const log = await readFile(calls, 'utf8');
      const name = `_acme-challenge.${DOMAIN}.`;
      t.strictSame(
        log.trim().split('\n').slice(-4),
        [`set ${name} value`, `set ${name} value`, `clear ${name} value`, `clear ${name} value`],
        'the order that worked set both values of the shared name, and cleared them only after both authorizations were final',
      );
    });

    t.test('a used-up budget refuses the order with a clear error', async (t) => {
      const ta = await startTestAppliance(t, acmeConfig(pebble, { budget: { certificates_per_week: 1, orders_per_3h: 10 } }));
      await until(ta, 'domain certificate', (rows) => row(rows, 'domain')?.state === 'ready');
      await admin(ta, 'PUT', `/v1/hosts/${UC_HOST}`, entry('http://127.0.0.1:9'));
      const { rows } = await until(ta, 'budget refusal', (rows) => row(rows, `org-${ORG}`)?.last_error != null);
      const r = row(rows, `org-${ORG}`)!;
      t.equal(r.state, 'pending');
      t.equal(r.last_error!.code, 'acme_budget_exceeded');
      t.match(r.last_error!.message, /budget\.certificates_per_week \(1\) used up; next certificate possible at \d{4}-/);
      t.equal((await ledger(ta)).filter((e) => e.kind === 'order').length, 1, 'no order was sent');
    });

    t.test('an ACME server that answers garbage: logged, retried, something is still served', async (t) => {
      const [cert, key] = await Promise.all([readFile(pebble.tlsCert, 'utf8'), readFile(pebble.tlsKey, 'utf8')]);
      let hits = 0;
      const garbage = https.createServer({ cert, key }, (_req, res) => {
        hits++;
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"this is": "not an ACME directory"');
      });
      await new Promise<void>((r) => garbage.listen(0, '127.0.0.1', r));
      t.teardown(() => new Promise((r) => garbage.close(r)));
      const port = (garbage.address() as { port: number }).port;
      const ta = await startTestAppliance(t, acmeConfig({ ...pebble, directoryUrl: `https://localhost:${port}/dir` }));
      const { rows } = await until(ta, 'failure recorded', (rows) => row(rows, 'domain')?.last_error != null);
      const r = row(rows, 'domain')!;
      t.equal(r.state, 'pending');
      t.equal(r.last_error!.code, 'acme_order_failed');
      t.match(r.last_error!.message, /^account: /, `named: ${r.last_error!.message}`);
      await until(ta, 'a retry', () => hits >= 2, 10_000);
      const peer = await handshake(ta.httpsPort, DOMAIN, root);
      t.notOk(peer.authorized, 'no ACME certificate yet');
      t.match(peer.san, `DNS:*.${DOMAIN}`, 'but a placeholder for {domain} and *.{domain} answers the handshake');
      t.equal((await fetch(`${ta.adminUrl}/v1/health`)).status, 200, 'and edgeway is healthy');
    });

    t.test('a deactivated account: a new account key is made and registered, orders go on', async (t) => {
      const ta = await startTestAppliance(t, acmeConfig(pebble));
      await until(ta, 'domain certificate', (rows) => row(rows, 'domain')?.state === 'ready');
      const keyPath = join(ta.cfg.data_dir, 'acme', 'account.key');
      const oldKey = await readFile(keyPath, 'utf8');
      // Deactivate it the way an operator (or the CA) would (RFC 8555 §7.3.6).
      // acme-client's HTTP settings (Pebble's CA) are the appliance's, same process.
      const client = new acme.Client({ directoryUrl: pebble.directoryUrl, accountKey: oldKey });
      await client.createAccount({ termsOfServiceAgreed: true, contact: ['mailto:ops@example.test'] });
      await client.updateAccount({ status: 'deactivated' });

      await admin(ta, 'PUT', `/v1/hosts/${UC_HOST}`, entry('http://127.0.0.1:9'));
      await until(ta, 'org wildcard with a new account', (rows) => row(rows, `org-${ORG}`)?.state === 'ready');
      t.ok((await handshake(ta.httpsPort, UC_HOST, root)).authorized);
      t.not(await readFile(keyPath, 'utf8'), oldKey, 'a new account key');
      const aside = (await readdir(join(ta.cfg.data_dir, 'acme'))).filter((f) => f.startsWith('account.key.deactivated-'));
      t.equal(aside.length, 1, 'the deactivated key is kept aside');
      t.equal((await stat(join(ta.cfg.data_dir, 'acme', aside[0]!))).mode & 0o777, 0o600);
      t.equal((await stat(keyPath)).mode & 0o777, 0o600);
    });

    // Last: restarts Pebble, whose root changes with every start.
    t.test('ACME server down, then back having forgotten the account: retried until it works, old certificate serving meanwhile', async (t) => {
      const ta = await startTestAppliance(t, acmeConfig(pebble));
      await until(ta, 'domain certificate', (rows) => row(rows, 'domain')?.state === 'ready');

      await pebble.stopAcme();
      await admin(ta, 'PUT', `/v1/hosts/${UC_HOST}`, entry('http://127.0.0.1:9'));
      const { rows } = await until(ta, 'failure recorded', (rows) => row(rows, `org-${ORG}`)?.last_error != null);
      t.match(row(rows, `org-${ORG}`)!.last_error!.message, /ECONNREFUSED/, 'the cause is named');
      t.ok((await handshake(ta.httpsPort, DOMAIN, root)).authorized, 'the domain certificate keeps serving while the CA is down');

      await pebble.startAcme();
      const root2 = await pebble.root();
      await until(ta, 'org wildcard after the CA is back', (rows) => row(rows, `org-${ORG}`)?.state === 'ready');
      t.ok((await handshake(ta.httpsPort, UC_HOST, root2)).authorized, 'uc host validates against the new root');

      // The CA forgets the account between two orders: the next order fails once, registers again, succeeds.
      await pebble.stopAcme();
      await pebble.startAcme();
      const root3 = await pebble.root();
      await admin(ta, 'PUT', `/v1/hosts/${ucOf(ORG2)}`, entry('http://127.0.0.1:9'));
      await until(ta, 'org wildcard with a re-registered account', (rows) => row(rows, `org-${ORG2}`)?.state === 'ready');
      t.ok((await handshake(ta.httpsPort, ucOf(ORG2), root3)).authorized);
      const orders = (await ledger(ta)).filter((e) => e.kind === 'order' && e.names.includes(`*.org-${ORG2}.${DOMAIN}`));
      t.equal(orders.length, 2, 'one order refused for the unknown account, one that worked');
    });
  });
}
