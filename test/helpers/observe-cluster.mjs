// A tiny process group for test/observe.test.ts: a primary and two workers
// (node:cluster) wired like edgeway's, through the real stats path of
// dist/src/cluster/stats.js. Each worker serves HTTP on its own port
// (exclusive listen, so the test picks the worker) and routes like the data
// plane; the primary serves /metrics and /activity from what the workers
// answer. The primary prints one JSON line: { primary, workers: [{pid, port}] }.
// Plain JavaScript: it runs dist/ as built (npm run build).

import cluster from 'node:cluster';
import http from 'node:http';
import { pino } from 'pino';
import { answerStats, createPrimaryObservability } from '../../dist/src/cluster/stats.js';
import { normalizeHost } from '../../dist/src/hosts/hostname.js';
import { createObservability } from '../../dist/src/observe/observer.js';
import { sendError } from '../../dist/src/proxy/failure.js';
import { RouteTable } from '../../dist/src/routes/table.js';

const DOMAIN = 'example.test';
const ORG_HOST = `org-7f3a0000-0000-4000-8000-000000000002.${DOMAIN}`;
const UC_HOST = `uc-1b4e8f0a-0000-4000-8000-000000000001.${ORG_HOST}`;
const WORKERS = 2;

const table = new RouteTable(DOMAIN);
table.put({ host: ORG_HOST, locations: [{ path: '/', upstream: 'http://10.1.2.3:8080' }], source: 'api' });
table.put({ host: UC_HOST, locations: [{ path: '/', upstream: 'http://10.1.2.4:8888' }], source: 'api' });
table.put({ host: `api.${DOMAIN}`, locations: [{ path: '/', static: { root: '/srv/www' } }], source: 'static' });

function listen(server, opts) {
  return new Promise((resolve) => server.listen(opts, () => resolve(server.address().port)));
}

if (cluster.isPrimary) {
  const obs = createPrimaryObservability({
    domain: DOMAIN,
    workers: WORKERS,
    hosts: () => [...table.entries()].map((h) => h.host),
    tableSize: () => table.size,
    processMetrics: false,
    timeoutMs: 500,
  });
  const workers = [];
  const ports = [];
  for (let i = 0; i < WORKERS; i++) {
    const w = cluster.fork();
    workers.push(w);
    ports.push(
      new Promise((resolve) => {
        w.on('message', (m) => {
          if (m.t === 'stats') obs.collector.reply(m);
          else if (m.t === 'port') resolve({ pid: w.process.pid, port: m.port });
        });
      }),
    );
  }
  process.on('SIGTERM', () => {
    for (const w of workers) w.process.kill('SIGKILL');
    process.exit(0);
  });
  const server = http.createServer((req, res) => {
    const p = req.url === '/metrics' ? obs.metrics.metrics() : obs.activity.activity().then((r) => JSON.stringify(r));
    p.then(
      (body) => res.end(body),
      (err) => {
        res.statusCode = 500;
        res.end(String(err));
      },
    );
  });
  const port = await listen(server, { port: 0, host: '127.0.0.1' });
  process.stdout.write(`${JSON.stringify({ primary: port, workers: await Promise.all(ports) })}\n`);
} else {
  const obs = createObservability({
    config: { log: { level: 'silent', access_log: false } },
    log: pino({ level: 'silent' }),
    table,
    tableSize: false,
    processMetrics: false,
  });
  process.on('message', (m) => {
    if (m?.t === 'stats') answerStats(obs, m).then((r) => process.send(r));
  });
  process.on('disconnect', () => process.exit(0));
  const server = http.createServer((req, res) => {
    const m = table.match(normalizeHost(req.headers.host) ?? '', req.url);
    obs.observer.request(req, res, m?.host, m?.location);
    if (m === undefined) return sendError(req, res, 'HOST_NOT_FOUND');
    if (req.url.startsWith('/fail')) return sendError(req, res, 'UPSTREAM_REFUSED');
    req.resume();
    req.on('end', () => res.end('ok'));
  });
  process.send({ t: 'port', port: await listen(server, { port: 0, host: '127.0.0.1', exclusive: true }) });
}
