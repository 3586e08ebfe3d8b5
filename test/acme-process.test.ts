// Issue 5 with the real binary and `workers: 2`: the control plane (primary)
// orders from Pebble and the data-plane workers serve what it hands them; a
// restart loads every certificate from data_dir and orders nothing; headless
// Chromium trusting only Pebble's root sees a valid chain on an org host and
// on a uc host.

import t from 'tap';
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import tls from 'node:tls';
import { admin, DOMAIN, ORG, ORG_HOST, UC_HOST, writeTestConfig } from './helpers/appliance.js';
import { browserHome, launchChromium, missingTools, pageUpstream } from './helpers/browser.js';
import { missingPebble, startPebble } from './helpers/pebble.js';
import { startEdgeway, type Running } from './helpers/process.js';

interface Row {
  id: string;
  state: string;
  not_before: string | null;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function rows(e: Running): Promise<Row[]> {
  return (await admin(e, 'GET', '/v1/certs')).json as Row[];
}

async function allReady(e: Running, n: number, timeoutMs = 30_000): Promise<{ rows: Row[]; ms: number }> {
  const t0 = performance.now();
  for (;;) {
    const r = await rows(e);
    if (r.length === n && r.every((x) => x.state === 'ready')) return { rows: r, ms: Math.round(performance.now() - t0) };
    if (performance.now() - t0 > timeoutMs) throw new Error(`certificates not ready: ${JSON.stringify(r)}`);
    await sleep(50);
  }
}

function verified(port: number, servername: string, root: string): Promise<{ ok: boolean; error: string | null }> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername, ca: [root] }, () => {
      const nameErr = tls.checkServerIdentity(servername, s.getPeerCertificate());
      resolve({ ok: s.authorized && nameErr === undefined, error: nameErr?.message ?? null });
      s.end();
    });
    s.on('error', (e) => (e.message.includes('certificate') ? resolve({ ok: false, error: e.message }) : reject(e)));
  });
}

const pebbleMissing = missingPebble();
if (pebbleMissing !== null) {
  t.fail(pebbleMissing);
} else {
  t.test('workers: 2 serve ACME certificates; a restart orders nothing; Chromium trusts the chain', async (t) => {
    const pebble = await startPebble(t);
    const root = await pebble.root();
    const up = await pageUpstream(t);
    const { file, dir } = await writeTestConfig({
      workers: 2,
      log: { level: 'info', access_log: false },
      tls: {
        mode: 'acme',
        acme: {
          directory_url: pebble.directoryUrl,
          ca_file: pebble.caFile,
          dns01: { provider: 'webhook', url: pebble.hookUrl, propagation_wait_s: 0 },
          retry_min_s: 1,
          retry_max_s: 2,
        },
      },
    });
    const dataDir = join(dir, 'data');

    const t0 = performance.now();
    const first = await startEdgeway(t, file);
    const entry = { access: 'public', locations: [{ path: '/', upstream: up.url }] };
    t.equal((await admin(first, 'PUT', `/v1/hosts/${ORG_HOST}`, entry)).status, 201);
    t.equal((await admin(first, 'PUT', `/v1/hosts/${UC_HOST}`, entry)).status, 201);
    const ready = await allReady(first, 2);
    t.comment(`acme-timing workers: 2, domain + org wildcard ready ${Math.round(performance.now() - t0)} ms after spawn`);
    for (const name of [DOMAIN, ORG_HOST, UC_HOST]) {
      // Several handshakes, so both workers answer some.
      for (let i = 0; i < 4; i++) t.ok((await verified(first.httpsPort, name, root)).ok, `${name} validates (worker handshake ${i + 1})`);
    }
    const obtained = first.p.lines.filter((l) => l.msg === 'ACME certificate obtained');
    t.equal(obtained.length, 2, 'two certificates obtained, logged');
    for (const l of obtained) t.comment(`acme-timing order ${String(l['id'])}: ${String(l['ms'])} ms`);
    const ledgerBefore = await readFile(join(dataDir, 'acme', 'ledger.json'), 'utf8');

    first.p.signal('SIGTERM');
    t.equal((await first.p.exited).code, 0);

    const second = await startEdgeway(t, file);
    // Ready at once: nothing to wait for.
    const again = await rows(second);
    t.strictSame(again.map((r) => [r.id, r.state]).sort(), [['domain', 'ready'], [`org-${ORG}`, 'ready']], 'ready from data_dir right after the restart');
    t.strictSame(
      again.map((r) => r.not_before).sort(),
      ready.rows.map((r) => r.not_before).sort(),
      'the same certificates',
    );
    for (const name of [DOMAIN, ORG_HOST, UC_HOST]) t.ok((await verified(second.httpsPort, name, root)).ok, `${name} validates after the restart`);
    await sleep(3000);
    t.equal(await readFile(join(dataDir, 'acme', 'ledger.json'), 'utf8'), ledgerBefore, 'no new orders after the restart');
    t.equal(second.p.lines.filter((l) => l.msg === 'ACME certificate obtained').length, 0);

    t.test('headless Chromium trusting only Pebble root sees a valid chain on an org host and a uc host', async (t) => {
      const missing = missingTools();
      if (missing !== null) {
        t.fail(missing);
        return;
      }
      const home = await browserHome(t, root);
      const browser = await launchChromium(t, home);
      const page = await browser.newPage();
      for (const host of [ORG_HOST, UC_HOST]) {
        const res = await page.goto(`https://${host}:${second.httpsPort}/`);
        t.equal(res?.status(), 200, `${host} loads without a certificate error`);
        t.equal(await page.textContent('#host'), `${host}:${second.httpsPort}`);
        const sec = await res!.securityDetails();
        t.match(sec?.issuer, /^Pebble Intermediate CA/, `${host}: issued by Pebble`);
        t.match(sec?.subjectName, host === UC_HOST ? `*.org-${ORG}.${DOMAIN}` : DOMAIN);
      }
      // Control: the same browser refuses a name nothing valid covers.
      const bad = await page.goto(`https://x.y.${DOMAIN}:${second.httpsPort}/`).catch((e: Error) => e);
      t.match(String(bad), /ERR_CERT/, 'a name without a valid certificate is refused (the trust is not blanket)');
      // Sanity: the root we trusted is Pebble's.
      t.match(new X509Certificate(root).subject, /Pebble Root CA/);
    });
  });
}
