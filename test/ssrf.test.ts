// No SSRF through the API (issue 3): upstreams must fall inside
// admin.allowed_upstreams at registration (literal addresses and resolved
// names), link-local and metadata addresses only when listed exactly, and
// names are checked again at every connect (DNS rebinding), except for the
// trusted routes/ entries.

import t, { type Test } from 'tap';
import http from 'node:http';
import net from 'node:net';
import type { LookupAddress } from 'node:dns';
import { AddressPolicy } from '../src/proxy/address-policy.js';
import { guardedLookup, type Resolver } from '../src/proxy/guarded-lookup.js';
import { UndiciForwarder } from '../src/proxy/undici-forwarder.js';
import { UpstreamGroup } from '../src/proxy/upstream-group.js';
import { UpstreamPolicy } from '../src/admin/upstream-policy.js';
import { validateEntry } from '../src/routes/validate-entry.js';
import { CFG, forwardRequest, listen, request, target, upstream } from './helpers/upstreams.js';
import { admin, echoUpstream, httpsGet, startTestAppliance, UC_HOST, ORG_HOST } from './helpers/appliance.js';

const METADATA = ['169.254.169.254', 'fd00:ec2::254', '100.100.100.200'];

/** A resolver the test scripts: answers `answers[i]` on the i-th call (the last one after that). */
function scripted(answers: string[][]): Resolver & { calls: number } {
  const r: Resolver & { calls: number } = Object.assign(
    async (): Promise<LookupAddress[]> => {
      const list = answers[Math.min(r.calls++, answers.length - 1)]!;
      return list.map((address) => ({ address, family: net.isIP(address) }));
    },
    { calls: 0 },
  );
  return r;
}

function lookupOnce(fn: ReturnType<typeof guardedLookup>, all: boolean): Promise<{ err: NodeJS.ErrnoException | null; address: unknown }> {
  return new Promise((resolve) => fn('upstream.test', { all, family: 0 }, (err, address) => resolve({ err, address })));
}

t.test('the address policy: link-local and metadata only when listed exactly', async (t) => {
  const cases: Array<[string[], string, boolean]> = [
    [['0.0.0.0/0', '::/0'], '203.0.113.7', true],
    [['0.0.0.0/0', '::/0'], '2001:db8::7', true],
    [['0.0.0.0/0', '::/0'], '100.100.100.201', true],
    [['0.0.0.0/0', '::/0'], 'fd00:ec2::253', true],
    ...METADATA.map((a): [string[], string, boolean] => [['0.0.0.0/0', '::/0'], a, false]),
    [['0.0.0.0/0', '::/0'], '169.254.1.1', false],
    [['0.0.0.0/0', '::/0'], 'fe80::1', false],
    [['0.0.0.0/0', '::/0'], '::ffff:169.254.169.254', false],
    [['0.0.0.0/0', '::/0'], '0.0.0.0', false],
    [['0.0.0.0/0', '::/0'], '::', false],
    [['0.0.0.0/1', '128.0.0.0/1'], '169.254.169.254', false],
    [['169.254.0.0/15'], '169.254.169.254', false],
    [['fd00::/8'], 'fd00::1', true],
    [['fd00::/8'], 'fd00:ec2::254', false],
    [['fd00::/8', 'fd00:ec2::254/128'], 'fd00:ec2::254', true],
    [['100.64.0.0/10'], '100.64.0.1', true],
    [['100.64.0.0/10'], '100.100.100.200', false],
    [['100.64.0.0/10', '100.100.100.200'], '100.100.100.200', true],
    [['0.0.0.0/0', '169.254.169.254/32'], '169.254.169.254', true],
    [['0.0.0.0/0', '169.254.169.254/32'], '::ffff:169.254.169.254', true],
    [['0.0.0.0/0', '169.254.169.254/32'], '169.254.169.253', false],
    [['169.254.0.0/16'], '169.254.1.1', true],
    [['169.254.0.0/16'], '169.254.169.254', true],
    [['fe80::/10'], 'fe80::1', true],
    [['fe80::/64'], 'fe80::1', true],
    [['fe80::/64'], 'fe80:0:0:1::1', false],
    [['10.0.0.0/8'], '10.1.2.3', true],
    [['10.0.0.0/8'], '11.0.0.1', false],
    [['10.0.0.0/8'], 'localhost', false],
  ];
  for (const [list, address, allowed] of cases) {
    t.equal(new AddressPolicy(list).allows(address), allowed, `${list.join(',')}: ${address} ${allowed ? 'allowed' : 'refused'}`);
  }
  t.throws(() => new AddressPolicy(['10.0.0.0/8', 'nope']), { code: 'CONFIG_INVALID', field: 'admin.allowed_upstreams[1]' });
});

t.test('registration: the policy names the field, resolving names', async (t) => {
  const check = (list: string[], upstreams: string[]): Promise<void> =>
    new UpstreamPolicy(list).check(validateEntry({ locations: [{ path: '/', upstreams }] }, { source: 'api', pathHost: UC_HOST }));
  await t.rejects(check(['10.0.0.0/8'], ['http://10.0.0.1', 'http://localhost:80']), { code: 'INVALID_FIELD', field: 'locations[0].upstreams[1]' }, 'a name resolving outside');
  await t.rejects(check(['10.0.0.0/8'], ['http://no-such-host.invalid']), { field: 'locations[0].upstreams[0]', message: /does not resolve/ });
  await t.resolves(check(['127.0.0.0/8', '::1/128'], ['http://localhost:80']), 'a name resolving inside');
  for (const a of METADATA) {
    const url = `http://${a.includes(':') ? `[${a}]` : a}/`;
    await t.rejects(check(['0.0.0.0/0', '::/0'], [url]), { code: 'INVALID_FIELD', field: 'locations[0].upstreams[0]' }, `${a} under a /0`);
    await t.resolves(check(['0.0.0.0/0', '::/0', a], [url]), `${a} listed exactly`);
  }
});

t.test('registration through the admin API of an appliance', async (t) => {
  const echo = await echoUpstream(t, 'static');
  const port = new URL(echo.url).port;
  const ta = await startTestAppliance(t, { admin: { allowed_upstreams: ['10.0.0.0/8', '192.0.2.0/24', '169.254.169.254/32', 'fe80::/10'] } }, {
    // Trusted operator config: a name outside allowed_upstreams, never checked.
    'trusted.yaml': { host: 'trusted.example.test', locations: [{ path: '/', upstream: `http://localhost:${port}` }] },
  });
  const put = (upstream: string) => admin(ta, 'PUT', `/v1/hosts/${ORG_HOST}`, { locations: [{ path: '/', service: 'oauth' }, { path: '/app', upstream }] });
  const refused: Array<[string, RegExp]> = [
    ['http://192.168.1.1', /not inside/],
    ['http://127.0.0.1:9900', /not inside/],
    [`http://localhost:${port}`, /not inside/],
    ['http://no-such-host.invalid', /does not resolve/],
    ['http://169.254.169.253', /not inside/],
    ['http://[fd00:ec2::254]', /not inside/],
    ['http://100.100.100.200', /not inside/],
    ['http://[::ffff:c0a8:101]', /not inside/],
  ];
  for (const [upstream, message] of refused) {
    const r = await put(upstream);
    t.equal(r.status, 400, upstream);
    t.match(r.json, { error: 'invalid_field', field: 'locations[1].upstream', message });
  }
  t.equal((await admin(ta, 'GET', `/v1/hosts/${ORG_HOST}`)).status, 404, 'nothing stored');
  for (const upstream of ['http://10.9.8.7:80', 'http://192.0.2.1', 'http://169.254.169.254', 'http://[fe80::1]:8080']) {
    t.ok([200, 201].includes((await put(upstream)).status), `${upstream} is inside the list`);
  }
  const trusted = await httpsGet(ta, 'trusted.example.test', '/hi');
  t.equal(trusted.status, 200, 'a routes/ entry naming a host outside the list is served: static entries skip the guard');
  t.equal(JSON.parse(trusted.body).name, 'static');
});

t.test('connect time: the guarded lookup', async (t) => {
  const policy = new AddressPolicy(['10.0.0.0/8', '127.0.0.0/8']);

  const rebind = scripted([['10.0.0.5'], ['169.254.169.254']]);
  const lookup = guardedLookup(policy, rebind);
  t.same(await lookupOnce(lookup, false), { err: null, address: '10.0.0.5' }, 'inside at first');
  const second = await lookupOnce(lookup, false);
  t.equal(second.err?.code, 'UPSTREAM_FORBIDDEN', 'the same name resolving outside later is refused');
  t.notMatch(second.err?.message, /169\.254/, 'the error names no address');

  const all = guardedLookup(policy, scripted([['10.0.0.5', '127.0.0.1']]));
  t.same((await lookupOnce(all, true)).address, [{ address: '10.0.0.5', family: 4 }, { address: '127.0.0.1', family: 4 }], 'all: every address');
  const mixed = guardedLookup(policy, scripted([['10.0.0.5', '192.168.0.1']]));
  t.equal((await lookupOnce(mixed, true)).err?.code, 'UPSTREAM_FORBIDDEN', 'one address outside refuses the name');
  t.equal((await lookupOnce(guardedLookup(policy, scripted([[]])), false)).err?.code, 'ENOTFOUND');
  const failing: Resolver = async () => {
    throw Object.assign(new Error('getaddrinfo EAI_AGAIN'), { code: 'EAI_AGAIN' });
  };
  t.equal((await lookupOnce(guardedLookup(policy, failing), false)).err?.code, 'EAI_AGAIN', 'resolver errors pass through');
  let family = -1;
  const spy: Resolver = async (_h, f) => {
    family = f;
    return [{ address: '10.0.0.5', family: 4 }];
  };
  await new Promise<void>((resolve) => guardedLookup(policy, spy)('x', { family: 6 }, () => resolve()));
  t.equal(family, 6, 'the family asked for reaches the resolver');
});

t.test('connect time, real sockets: net, http.Agent and the forwarder', async (t) => {
  const policy = new AddressPolicy(['127.0.0.0/8']);

  // net.connect: refused before any connection is made.
  const accepted: number[] = [];
  const tcp = net.createServer((s) => {
    accepted.push(1);
    s.end();
  });
  const tcpPort = await listen(t, tcp);
  const rebind = scripted([['127.0.0.1'], ['169.254.169.254']]);
  const connect = (): Promise<string> =>
    new Promise((resolve) => {
      const s = net.connect({ host: 'upstream.test', port: tcpPort, lookup: guardedLookup(policy, rebind) });
      s.on('connect', () => {
        s.destroy();
        resolve('connected');
      });
      s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
    });
  t.equal(await connect(), 'connected');
  t.equal(await connect(), 'UPSTREAM_FORBIDDEN', 'rebound to the metadata address: refused');

  // http.Agent({ lookup }): the way http-proxy (websockets) takes the guard.
  const agentGet = (lookup: ReturnType<typeof guardedLookup>): Promise<string> =>
    new Promise((resolve) => {
      const agent = new http.Agent({ lookup } as http.AgentOptions);
      const req = http.get({ host: 'upstream.test', port: tcpPort, agent }, (res) => {
        res.resume();
        resolve(String(res.statusCode));
      });
      req.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
    });
  t.equal(await agentGet(guardedLookup(policy, scripted([['169.254.169.254']]))), 'UPSTREAM_FORBIDDEN', 'http.Agent honors the lookup');
  t.equal(accepted.length, 1, 'no refused attempt reached the socket');

  // The forwarder: a pooled connection, then the name rebinds; a new connection is refused (502).
  const up = await upstream(t, (req, res) => {
    // Closing after each response makes the next request open a new connection (and look the name up again).
    res.setHeader('connection', 'close');
    res.end(`hello ${req.url}`);
  });
  const resolver = scripted([['127.0.0.1'], ['127.0.0.1'], ['169.254.169.254']]);
  const fwd = new UndiciForwarder(CFG, {}, guardedLookup(policy, resolver));
  t.teardown(() => fwd.close());
  const named = new UpstreamGroup([target(up.port, 'http:', 'upstream.test')], CFG);
  const front = http.createServer((req, res) => fwd.forward(req, res, forwardRequest(req, named, 5000)));
  const frontPort = await listen(t, front);
  const get = (path: string) => request(frontPort, { path, headers: { host: 'a.example.test' }, agent: false });
  t.equal((await get('/1')).body.toString(), 'hello /1');
  t.equal((await get('/2')).body.toString(), 'hello /2');
  const before = up.stats.accepted;
  const refused = await get('/3');
  t.equal(refused.status, 502, 'rebound: 502');
  t.equal(JSON.parse(refused.body.toString()).error, 'upstream_forbidden');
  t.equal(up.stats.accepted, before, 'the upstream never saw a connection');
  t.equal(resolver.calls, 3, 'one lookup per new connection');

  await trustedSkipsGuard(t, up.port);
});

/** A trusted (routes/) request to the same origin uses its own pool, without the guard. */
async function trustedSkipsGuard(t: Test, port: number): Promise<void> {
  const refuseAll = guardedLookup(new AddressPolicy(['10.0.0.0/8']));
  const fwd = new UndiciForwarder(CFG, {}, refuseAll);
  t.teardown(() => fwd.close());
  const group = new UpstreamGroup([target(port, 'http:', 'localhost')], CFG);
  const front = http.createServer((req, res) => {
    const trusted = req.url === '/trusted';
    fwd.forward(req, res, { ...forwardRequest(req, group, 5000), trusted });
  });
  const frontPort = await listen(t, front);
  const guarded = await request(frontPort, { path: '/guarded', headers: { host: 'a.example.test' }, agent: false });
  t.equal(guarded.status, 502, 'localhost is outside 10.0.0.0/8: refused at connect');
  const trusted = await request(frontPort, { path: '/trusted', headers: { host: 'a.example.test' }, agent: false });
  t.equal(trusted.status, 200, 'the same origin for a trusted entry: connected');
  t.equal(fwd.poolCount, 2, 'separate pools for guarded and trusted');
}


