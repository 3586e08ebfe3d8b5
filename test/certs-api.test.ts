// GET /v1/certs and the PUT answer's `certificate` outside ACME mode (issue 5
// adds them for every mode), who may see them, files-mode certificates that
// outlive a deleted host entry of the same name, and an unreadable
// tls.acme.ca_file stopping the start with exit 2.

import t from 'tap';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import tls from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { signToken } from '../src/auth/jwt.js';
import { loadJwtKeys } from '../src/auth/keys.js';
import { LocalCA } from '../src/tls/local-ca.js';
import { admin, DOMAIN, httpsGet, ORG, startTestAppliance, UC_HOST, userToken, writeTestConfig } from './helpers/appliance.js';
import { runToExit } from './helpers/process.js';

interface Row {
  id: string;
  names: string[];
  state: string;
  issuer: string;
  not_after: string;
  last_error: unknown;
}

t.test('self-signed: PUT answers ready, /v1/certs lists the fallback, tenants see nothing of it', async (t) => {
  const ta = await startTestAppliance(t);
  const put = await admin(ta, 'PUT', `/v1/hosts/${UC_HOST}`, { access: 'public', locations: [{ path: '/', upstream: 'http://127.0.0.1:9' }] });
  t.equal(put.status, 201);
  t.equal((put.json as { certificate: string }).certificate, 'ready', 'the leaf is minted before the answer');
  const r = await admin(ta, 'GET', '/v1/certs');
  t.equal(r.status, 200);
  const rows = r.json as Row[];
  t.equal(rows.length, 1);
  t.strictSame([...rows[0]!.names].sort(), [`*.${DOMAIN}`, DOMAIN]);
  t.equal(rows[0]!.state, 'ready');
  t.equal(rows[0]!.last_error, null);
  t.match(rows[0]!.issuer, /edgeway/i);
  t.ok(Date.parse(rows[0]!.not_after) > Date.now());

  const keys = await loadJwtKeys(ta.cfg);
  const orgToken = signToken(keys, ta.cfg.auth.jwt, { type: 'organization_token', organization_id: ORG }, 60);
  const asOrg = await fetch(`${ta.adminUrl}/v1/certs`, { headers: { authorization: `Bearer ${orgToken}` } });
  t.strictSame(await asOrg.json(), [], 'the operator certificate is not an org’s');
  const user = await userToken(ta, 'u1', [`org:${ORG}:member`]);
  t.equal((await fetch(`${ta.adminUrl}/v1/certs`, { headers: { authorization: `Bearer ${user}` } })).status, 403);
  t.equal((await fetch(`${ta.adminUrl}/v1/certs`)).status, 401);
});

t.test('files mode: deleting a host entry does not drop the certificate file of the same name', async (t) => {
  const caDir = await mkdtemp(join(tmpdir(), 'edgeway-certs-api-'));
  t.teardown(() => rm(caDir, { recursive: true, force: true }));
  const ca = await LocalCA.open(caDir, { leafDays: 5 });
  const certsDir = join(caDir, 'files');
  await mkdir(certsDir);
  const wild = await ca.leafForNames([`*.org-${ORG}.${DOMAIN}`]);
  const apex = await ca.leafForNames([DOMAIN, `*.${DOMAIN}`]);
  await writeFile(join(certsDir, 'org.crt'), wild.certPem);
  await writeFile(join(certsDir, 'org.key'), wild.keyPem);
  await writeFile(join(certsDir, 'apex.crt'), apex.certPem);
  await writeFile(join(certsDir, 'apex.key'), apex.keyPem);
  const ta = await startTestAppliance(t, { tls: { mode: 'files', certs_dir: certsDir } });
  const client = { ...ta, caPem: await readFile(join(caDir, 'ca', 'edgeway-local-ca.crt'), 'utf8') };
  const rows = (await admin(ta, 'GET', '/v1/certs')).json as Row[];
  t.same(rows.map((r) => [...r.names].sort().join(',')).sort(), [`*.${DOMAIN},${DOMAIN}`, `*.org-${ORG}.${DOMAIN}`].sort());

  const entry = { access: 'public', locations: [{ path: '/', upstream: 'http://127.0.0.1:9' }] };
  await admin(ta, 'PUT', `/v1/hosts/*.org-${ORG}.${DOMAIN}`, entry);
  await admin(ta, 'PUT', `/v1/hosts/${UC_HOST}`, entry);
  t.equal((await admin(ta, 'DELETE', `/v1/hosts/*.org-${ORG}.${DOMAIN}`)).status, 204);
  // The uc host still presents the org wildcard.
  const res = await new Promise<string>((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port: client.httpsPort, servername: UC_HOST, ca: [client.caPem] }, () => {
      resolve(new X509Certificate(s.getPeerCertificate().raw).subjectAltName ?? '');
      s.end();
    });
    s.on('error', reject);
  });
  t.equal(res, `DNS:*.org-${ORG}.${DOMAIN}`);
  t.equal((await httpsGet(client, UC_HOST, '/', { headers: {} })).status, 502, 'and routes (to a dead upstream)');
});

t.test('an unreadable tls.acme.ca_file stops the start with exit 2 naming the key', async (t) => {
  const { file, dir } = await writeTestConfig({
    tls: { mode: 'acme', acme: { ca_file: '/nonexistent/pebble.pem', dns01: { url: 'http://127.0.0.1:9' } } },
  });
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const { exit, p } = await runToExit(['--config', file]);
  t.equal(exit.code, 2);
  t.match(p.stderr, /tls\.acme\.ca_file: cannot read \/nonexistent\/pebble\.pem/);
});
