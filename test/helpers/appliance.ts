// Test helpers: a temporary config + routes dir, an in-process appliance, and
// an HTTPS client that sets SNI and Host independently while trusting the
// appliance's local CA.

import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { startAppliance, type Appliance } from '../../src/appliance.js';
import { loadJwtKeys } from '../../src/auth/keys.js';
import { signToken } from '../../src/auth/jwt.js';
import { loadConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';
import { createLogger } from '../../src/log.js';

export const DOMAIN = 'example.test';
export const ORG = '7f3a0000-0000-4000-8000-000000000002';
export const ORG2 = '7f3a0000-0000-4000-8000-000000000003';
export const UC = '1b4e8f0a-0000-4000-8000-000000000001';
export const ORG_HOST = `org-${ORG}.${DOMAIN}`;
export const ORG2_HOST = `org-${ORG2}.${DOMAIN}`;
export const UC_HOST = `uc-${UC}.org-${ORG}.${DOMAIN}`;

interface Teardown {
  teardown(fn: () => unknown): void;
}

/** Writes a config (127.0.0.1, port 0 everywhere, workers 1) plus routes/ files into a temp dir. */
export async function writeTestConfig(
  overrides: Record<string, unknown> = {},
  routes: Record<string, unknown> = {},
): Promise<{ dir: string; file: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'edgeway-test-'));
  await mkdir(join(dir, 'routes'));
  for (const [name, body] of Object.entries(routes)) {
    await writeFile(join(dir, 'routes', name), typeof body === 'string' ? body : stringify(body));
  }
  const cfg = {
    domain: DOMAIN,
    listen: { https: '127.0.0.1:0', http: '127.0.0.1:0', admin: '127.0.0.1:0' },
    workers: 1,
    data_dir: 'data',
    routes_dir: 'routes',
    log: { level: 'silent' },
    ...overrides,
  };
  const file = join(dir, 'edgeway.yaml');
  await writeFile(file, stringify(cfg));
  return { dir, file };
}

export interface TestAppliance {
  readonly app: Appliance;
  readonly cfg: Config;
  readonly dir: string;
  readonly caPem: string;
  readonly httpsPort: number;
  readonly httpPort: number;
  readonly adminUrl: string;
  readonly platformToken: string;
}

export function portOf(addr: string): number {
  return Number(addr.slice(addr.lastIndexOf(':') + 1));
}

export async function startTestAppliance(
  t: Teardown,
  overrides: Record<string, unknown> = {},
  routes: Record<string, unknown> = {},
): Promise<TestAppliance> {
  const { dir, file } = await writeTestConfig(overrides, routes);
  // Teardowns run last-registered first: the directory goes after the appliance.
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const cfg = await loadConfig(file);
  const app = await startAppliance(cfg, createLogger('silent'), { processMetrics: false });
  t.teardown(() => app.stop());
  const keys = await loadJwtKeys(cfg);
  return {
    app,
    cfg,
    dir,
    caPem: cfg.tls.mode === 'self-signed' ? await readFile(join(cfg.data_dir, 'ca', 'edgeway-local-ca.crt'), 'utf8') : '',
    httpsPort: portOf(app.addresses.https),
    httpPort: portOf(app.addresses.http),
    adminUrl: `http://${app.addresses.admin}`,
    platformToken: signToken(keys, cfg.auth.jwt, { type: 'platform', scope: ['edge:admin'] }, 3600),
  };
}

export interface Reply {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
}

/** One HTTPS request to 127.0.0.1 with SNI `servername` (default: host) and Host `host`. */
export function httpsGet(
  ta: Pick<TestAppliance, 'httpsPort' | 'caPem'>,
  host: string,
  path = '/',
  opts: { servername?: string | null; headers?: Record<string, string>; method?: string; body?: string } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port: ta.httpsPort,
        path,
        method: opts.method ?? 'GET',
        ca: [ta.caPem],
        // null: send no SNI (checkServerIdentity still runs against `host`).
        servername: opts.servername === null ? '' : (opts.servername ?? host),
        checkServerIdentity: () => undefined,
        headers: { host, ...opts.headers },
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** An admin API call with the platform token. */
export async function admin(
  ta: Pick<TestAppliance, 'adminUrl' | 'platformToken'>,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; json: unknown }> {
  const res = await fetch(ta.adminUrl + path, {
    method,
    headers: { authorization: `Bearer ${ta.platformToken}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: text === '' ? undefined : JSON.parse(text) };
}

/** A plain HTTP upstream on 127.0.0.1:0 that answers with what it saw. */
export async function echoUpstream(t: Teardown, name = 'up'): Promise<{ url: string; server: http.Server; seen: http.IncomingMessage[] }> {
  const seen: http.IncomingMessage[] = [];
  const server = http.createServer((req, res) => {
    seen.push(req);
    const body = JSON.stringify({ name, url: req.url, headers: req.headers });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  const a = server.address() as { port: number };
  return { url: `http://127.0.0.1:${a.port}`, server, seen };
}

/** A user token (DESIGN.md "Tokens": type user, sub, scope) signed with the appliance's JWT key. */
export async function userToken(ta: Pick<TestAppliance, 'cfg'>, sub: string, scope: readonly string[], ttlSeconds = 3600): Promise<string> {
  const keys = await loadJwtKeys(ta.cfg);
  return signToken(keys, ta.cfg.auth.jwt, { type: 'user', sub, scope }, ttlSeconds);
}
