// bench:collab helper: edgeway's collab relay alone (CollabService, the same
// object the control plane opens) behind a plain ws listener, so that it can
// be compared with the reference server on equal terms (no TLS, no routing;
// the location is public). Prints `listening PORT` when ready.
//
//   node dist/bench/collab-relay-server.js DATA_DIR

import http from 'node:http';
import { openCollab } from '../src/collab/collab-service.js';
import { validateConfig } from '../src/config/validate.js';
import { createLogger } from '../src/log.js';
import { RouteTable } from '../src/routes/table.js';
import { serviceCall } from '../src/server/data-plane.js';
import type { AccessGate } from '../src/auth/access-gate.js';

const dataDir = process.argv[2]!;
const cfg = validateConfig({ domain: 'example.test', data_dir: dataDir, log: { level: 'warn' } }, `${dataDir}/edgeway.yaml`);
const ORG_HOST = 'org-7f3a0000-0000-4000-8000-000000000002.example.test';
const table = new RouteTable(cfg.domain);
table.put({ host: ORG_HOST, access: 'public', locations: [{ path: '/', service: 'collab' }] } as never);
// A public location never asks the gate for more than its policy.
const gate = { check: () => ({ sub: '', scope: [], expMs: Infinity, viaAuthorization: false }) } as unknown as AccessGate;
const svc = await openCollab({ config: cfg, log: createLogger('warn'), gate, lookupHost: (h) => table.lookupHost(h)?.host });
const server = http.createServer((_req, res) => res.end());
server.on('upgrade', (req: http.IncomingMessage, socket, head: Buffer) => {
  const m = table.match(ORG_HOST, req.url ?? '/')!;
  req.headers.host = ORG_HOST;
  svc.upgrade(req, socket, head, serviceCall(req, m));
});
server.listen(0, '127.0.0.1', () => console.log(`listening ${(server.address() as { port: number }).port}`));
