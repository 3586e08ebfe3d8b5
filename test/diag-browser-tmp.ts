import tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { startTestAppliance, admin, ORG_HOST, UC_HOST } from './helpers/appliance.js';
const tds: (() => unknown)[] = [];
const ta = await startTestAppliance({ teardown: (f) => tds.push(f) });
for (const host of [ORG_HOST, UC_HOST, 'nope.example.test']) {
  if (host !== 'nope.example.test') console.log((await admin(ta, 'PUT', `/v1/hosts/${host}`, { access: 'public', locations: [{ path: '/', upstream: 'http://127.0.0.1:1' }] })).status);
  const s = tls.connect({ host: '127.0.0.1', port: ta.httpsPort, servername: host, ca: [ta.caPem] });
  await new Promise((r) => s.once('secureConnect', r));
  const c = s.getPeerX509Certificate()!;
  console.log(host, s.authorized, s.authorizationError, JSON.stringify(c.subject), c.subjectAltName, c.validFrom, c.validTo, c.issuer.replace(/\n/g, ', '), c.keyUsage, (c as any).ca);
  s.destroy();
}
const ca = new X509Certificate(ta.caPem);
console.log('CA', ca.subject, ca.validFrom, ca.validTo);
for (const f of tds.reverse()) await f();
