// The processes `npm run bench` measures, all on 127.0.0.1 high ports, all in
// the foreground (no daemons) with their config, pid, logs and temp files in
// one temp directory, so nothing needs root-owned paths:
//
// - the upstream: nginx answering a fixed 1 KiB body with keep-alive (a small
//   node:http server when nginx is missing); worker_processes 1;
// - edgeway (`node dist/src/main.js --config FILE`), self-signed or files mode;
// - nginx two-stage: stage 1 terminates TLS and proxies with keep-alive to
//   stage 2, a plain-HTTP nginx that proxies with keep-alive to the upstream
//   (two nginx instances, worker_processes auto each);
// - nginx single-stage TLS (worker_processes auto);
// - Caddy (`caddy run --adapter caddyfile`, admin endpoint off, our own cert).
//
// Nothing is installed here: a peer whose binary is missing is reported by
// `missingPeers()` and skipped by run.ts.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { accessSync, constants, existsSync, writeFileSync } from 'node:fs';
import { mkdir, writeFile, readFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { withDataPlaneFlags } from '../src/cluster/heap-flags.js';

export const BODY = 'x'.repeat(1024);
const MAIN_JS = fileURLToPath(new URL('../src/main.js', import.meta.url)); // dist/bench → dist/src

export interface Target {
  readonly name: string;
  /** Root pids of the process trees whose CPU and memory count for this target. */
  readonly pids: number[];
  readonly httpsPort: number;
  /** Plain-HTTP listener, when the target has one. */
  readonly httpPort?: number;
  stop(): Promise<void>;
  /** nginx two-stage: rewrite stage 2's config with a server block per host added (proxying to the upstream) and signal its master to reload (HUP). */
  reloadWith?(hosts: readonly string[]): void;
}

/** What an nginx or Caddy target is started with beyond the 1 KiB upstream. */
export interface PeerOptions {
  /** Port of the node upstream: /ws and /stream locations go there. */
  readonly nodePort?: number;
  /** nginx worker_connections (default 8192; (e) needs two per websocket). */
  readonly connections?: number;
}

/** Absolute path of an executable on PATH (plus the sbin dirs, where Debian puts nginx), or undefined. */
export function which(cmd: string): string | undefined {
  const dirs = [...(process.env['PATH'] ?? '').split(delimiter), '/usr/sbin', '/sbin', '/usr/local/sbin'];
  for (const d of dirs) {
    if (!d) continue;
    const p = join(d, cmd);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      /* next */
    }
  }
  return undefined;
}

export function version(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n')[0] ?? '';
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export async function waitForPort(port: number, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const children = new Set<ChildProcess>();
// If the harness dies on an error, its children (by their own pids) go too: nginx and edgeway stop on SIGTERM.
process.once('exit', () => {
  for (const c of children) c.kill('SIGTERM');
});

function launch(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; log: string }): ChildProcess {
  const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const keep = (c: Buffer): void => {
    if (out.length < 64 * 1024) out += c.toString();
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  child.once('exit', () => {
    children.delete(child);
    void writeFile(opts.log, out).catch(() => undefined);
  });
  (child as ChildProcess & { output: () => string }).output = () => out;
  children.add(child);
  return child;
}

export function outputOf(child: ChildProcess): string {
  return (child as ChildProcess & { output?: () => string }).output?.() ?? '';
}

async function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill(signal);
  const t = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(t);
}

/** Stops every process this module started (by its own pid), e.g. on an error or Ctrl-C. */
export async function stopAll(): Promise<void> {
  await Promise.all([...children].map((c) => stopChild(c)));
}

async function started(child: ChildProcess, port: number, what: string): Promise<void> {
  const exited = new Promise<never>((_, reject) =>
    child.once('exit', (code, sig) => reject(new Error(`${what} exited (${code ?? sig}) at start: ${outputOf(child).slice(0, 2000)}`))),
  );
  exited.catch(() => undefined); // a later exit (our own stop) is not a start failure
  await Promise.race([waitForPort(port), exited]);
}

// ---------------------------------------------------------------- certificates

/** A self-signed P-256 certificate for localhost, *.localhost, the bench org's hosts and 127.0.0.1. */
export async function makeCert(dir: string, org: string): Promise<{ cert: string; key: string }> {
  await mkdir(dir, { recursive: true });
  const cert = join(dir, 'bench.crt');
  const key = join(dir, 'bench.key');
  const r = spawnSync(
    'openssl',
    [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '30',
      '-subj', '/CN=localhost', '-keyout', key, '-out', cert,
      '-addext', `subjectAltName=DNS:localhost,DNS:*.localhost,DNS:*.org-${org}.localhost,IP:127.0.0.1`,
    ],
    { encoding: 'utf8' },
  );
  if (r.status !== 0) throw new Error(`openssl req failed: ${r.stderr}`);
  return { cert, key };
}

// ---------------------------------------------------------------- nginx

function nginxMain(dir: string, workers: string, http: string, connections = 8192): string {
  const tmp = join(dir, 'tmp');
  return `daemon off;
master_process on;
worker_processes ${workers};
${connections > 8192 ? `worker_rlimit_nofile ${connections};\n` : ''}pid ${join(dir, 'nginx.pid')};
error_log ${join(dir, 'error.log')} warn;
events { worker_connections ${connections}; }
http {
  access_log off;
  default_type text/plain;
  client_body_temp_path ${tmp}/body;
  proxy_temp_path ${tmp}/proxy;
  fastcgi_temp_path ${tmp}/fastcgi;
  uwsgi_temp_path ${tmp}/uwsgi;
  scgi_temp_path ${tmp}/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 65s;
${http}
}
`;
}

const PROXY = `proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header X-Forwarded-Proto $scheme;`;

/** /ws (websocket, Upgrade passed on) and /stream (bodies streamed both ways, no size limit, no temp files) to `pass`. */
function nodeLocations(pass: string): string {
  const long = 'proxy_read_timeout 1h;\n      proxy_send_timeout 1h;';
  return `
    location /ws {
      proxy_pass ${pass};
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_set_header Host $host;
      ${long}
    }
    location /stream {
      proxy_pass ${pass};
      ${PROXY}
      client_max_body_size 0;
      proxy_request_buffering off;
      proxy_max_temp_file_size 0;
      ${long}
    }`;
}

const nodePool = (o: PeerOptions): string => (o.nodePort ? `  upstream node { server 127.0.0.1:${o.nodePort}; keepalive 32; }\n` : '');

function tlsLines(cert: string, key: string): string {
  return `ssl_certificate ${cert};
    ssl_certificate_key ${key};
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:10m;`;
}

async function startNginx(name: string, dir: string, workers: string, httpBlock: string, port: number, connections?: number): Promise<ChildProcess> {
  await mkdir(join(dir, 'tmp'), { recursive: true });
  const conf = join(dir, 'nginx.conf');
  await writeFile(conf, nginxMain(dir, workers, httpBlock, connections));
  const child = launch(which('nginx')!, ['-p', dir + '/', '-e', join(dir, 'error.log'), '-c', conf], { log: join(dir, 'stdout.log') });
  try {
    await started(child, port, name);
  } catch (e) {
    const log = await readFile(join(dir, 'error.log'), 'utf8').catch(() => '');
    throw new Error(`${(e as Error).message}\n${log}`);
  }
  return child;
}

function target(name: string, kids: ChildProcess[], httpsPort: number, httpPort?: number): Target {
  return {
    name,
    pids: kids.map((k) => k.pid!),
    httpsPort,
    ...(httpPort !== undefined ? { httpPort } : {}),
    stop: async () => {
      for (const k of kids) await stopChild(k);
    },
  };
}

export interface Upstream {
  readonly port: number;
  readonly kind: string;
  stop(): Promise<void>;
}

/** nginx answering 200 with a 1 KiB body on every path (node:http when nginx is missing). */
export async function startUpstream(dir: string): Promise<Upstream> {
  const port = await freePort();
  if (which('nginx')) {
    const child = await startNginx('upstream nginx', dir, '1', `  server {
    listen 127.0.0.1:${port} backlog=4096;
    location / { return 200 "${BODY}"; }
  }`, port);
    return { port, kind: 'nginx (worker_processes 1)', stop: () => stopChild(child) };
  }
  const body = Buffer.from(BODY);
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
    res.end(body);
  });
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', 4096, r));
  return {
    port,
    kind: 'node:http (nginx not installed)',
    stop: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** The node upstream of the websocket and streaming scenarios (bench/node-upstream.ts), its own process. */
export async function startNodeUpstream(dir: string): Promise<Upstream> {
  await mkdir(dir, { recursive: true });
  const port = await freePort();
  const child = launch(process.execPath, [fileURLToPath(new URL('node-upstream.js', import.meta.url)), String(port)], { log: join(dir, 'node-upstream.log') });
  await started(child, port, 'node upstream');
  return { port, kind: 'node (ws echo, streams)', stop: () => stopChild(child) };
}

export async function startNginxTwoStage(dir: string, upstreamPort: number, tls: { cert: string; key: string }, o: PeerOptions = {}): Promise<Target> {
  const p1 = await freePort();
  const p2 = await freePort();
  const http2 = `  upstream app { server 127.0.0.1:${upstreamPort}; keepalive 128; keepalive_requests 1000000; }
${nodePool(o)}  server {
    listen 127.0.0.1:${p2} backlog=4096;
    location / {
      proxy_pass http://app;
      ${PROXY}
    }${o.nodePort ? nodeLocations('http://node') : ''}
  }`;
  const dir2 = join(dir, 'stage2');
  const stage2 = await startNginx('nginx stage 2', dir2, 'auto', http2, p2, o.connections);
  const stage1 = await startNginx('nginx stage 1', join(dir, 'stage1'), 'auto', `  upstream stage2 { server 127.0.0.1:${p2}; keepalive 128; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:${p1} ssl backlog=4096;
    ${tlsLines(tls.cert, tls.key)}
    location / {
      proxy_pass http://stage2;
      ${PROXY}
    }${o.nodePort ? nodeLocations('http://stage2') : ''}
  }`, p1, o.connections);
  return {
    ...target('nginx-2stage', [stage1, stage2], p1),
    reloadWith: (hosts: readonly string[]) => {
      const servers = hosts.map((h) => `  server { listen 127.0.0.1:${p2}; server_name ${h}; location / { proxy_pass http://app; ${PROXY} } }`);
      writeFileSync(join(dir2, 'nginx.conf'), nginxMain(dir2, 'auto', `${http2}\n${servers.join('\n')}`, o.connections));
      process.kill(stage2.pid!, 'SIGHUP');
    },
  };
}

export async function startNginxSingle(dir: string, upstreamPort: number, tls: { cert: string; key: string }, o: PeerOptions = {}): Promise<Target> {
  const p = await freePort();
  const h = await freePort();
  const child = await startNginx('nginx single-stage', dir, 'auto', `  upstream app { server 127.0.0.1:${upstreamPort}; keepalive 128; keepalive_requests 1000000; }
${nodePool(o)}  server {
    listen 127.0.0.1:${p} ssl backlog=4096;
    ${tlsLines(tls.cert, tls.key)}
    location / {
      proxy_pass http://app;
      ${PROXY}
    }${o.nodePort ? nodeLocations('http://node') : ''}
  }
  server {
    listen 127.0.0.1:${h} backlog=4096;
    location / { return 308 https://$host$request_uri; }
  }`, p, o.connections);
  await waitForPort(h);
  return target('nginx-1stage', [child], p, h);
}

// ---------------------------------------------------------------- caddy

export async function startCaddy(dir: string, upstreamPort: number, tls: { cert: string; key: string }, o: PeerOptions = {}): Promise<Target> {
  await mkdir(dir, { recursive: true });
  const p = await freePort();
  const h = await freePort();
  const file = join(dir, 'Caddyfile');
  await writeFile(
    file,
    `{
	admin off
	storage file_system ${join(dir, 'data')}
	http_port ${h}
	https_port ${p}
	auto_https disable_redirects
	skip_install_trust
	default_sni localhost
	log {
		level ERROR
	}
}
https://:${p} {
	tls ${tls.cert} ${tls.key}${o.nodePort ? `\n\treverse_proxy /ws* 127.0.0.1:${o.nodePort}\n\treverse_proxy /stream* 127.0.0.1:${o.nodePort}` : ''}
	reverse_proxy 127.0.0.1:${upstreamPort}
}
http://:${h} {
	redir https://{host}{uri} 308
}
`,
  );
  const env = { ...process.env, HOME: dir, XDG_DATA_HOME: join(dir, 'xdg-data'), XDG_CONFIG_HOME: join(dir, 'xdg-config') };
  const child = launch(which('caddy')!, ['run', '--config', file, '--adapter', 'caddyfile'], { cwd: dir, env, log: join(dir, 'caddy.log') });
  await started(child, p, 'caddy');
  await waitForPort(h);
  return target('caddy', [child], p, h);
}

// ---------------------------------------------------------------- edgeway

export interface EdgewayTarget extends Target {
  readonly adminUrl: string;
  readonly configFile: string;
}

export interface EdgewayOptions {
  readonly name: string;
  readonly workers: number;
  /** `self-signed` (leaves minted per host) or `files` with the bench's wildcard certificate. */
  readonly tlsMode: 'self-signed' | 'files';
  readonly cert?: { cert: string; key: string };
  /** `proxy.forwarder` (default: the product default, lean); undici is the "before" of bench/NOTES.md. */
  readonly forwarder?: 'lean' | 'undici';
  /** `proxy.fast_lane: false` (node:http for every request): the "before" of the fast lane in bench/NOTES.md. */
  readonly noFastLane?: boolean;
  /** Extra node flags, e.g. `--cpu-prof` (bench/profile.ts). */
  readonly nodeArgs?: readonly string[];
}

export const JWT_SECRET = 'edgeway-bench-secret-0123456789abcdef';

export async function startEdgeway(dir: string, o: EdgewayOptions): Promise<EdgewayTarget> {
  await mkdir(join(dir, 'routes'), { recursive: true });
  const p = await freePort();
  const h = await freePort();
  const a = await freePort();
  let tls = 'tls: { mode: self-signed }';
  if (o.tlsMode === 'files') {
    const certs = join(dir, 'certs');
    await mkdir(certs, { recursive: true });
    await writeFile(join(certs, 'bench.crt'), await readFile(o.cert!.cert));
    await writeFile(join(certs, 'bench.key'), await readFile(o.cert!.key));
    tls = `tls: { mode: files, certs_dir: ${certs} }`;
  }
  const configFile = join(dir, 'edgeway.yaml');
  await writeFile(
    configFile,
    `domain: localhost
listen: { https: "127.0.0.1:${p}", http: "127.0.0.1:${h}", admin: "127.0.0.1:${a}" }
workers: ${o.workers}
data_dir: data
routes_dir: routes
${tls}
auth: { jwt: { secret: ${JWT_SECRET} } }
admin: { allowed_upstreams: [127.0.0.0/8] }
log: { level: warn, access_log: false }
proxy: { ${o.forwarder === undefined ? '' : `forwarder: ${o.forwarder}, `}fast_lane: ${o.noFastLane === true ? 'false' : 'true'} }
`,
  );
  if (!existsSync(MAIN_JS)) throw new Error(`${MAIN_JS} is missing: run npm run build first`);
  // As systemd/edgeway.service runs it: with the data-plane heap flags (workers: 1 serves from this process).
  const child = launch(process.execPath, [...withDataPlaneFlags(o.nodeArgs ?? []), MAIN_JS, '--config', configFile], { cwd: dir, log: join(dir, 'edgeway.log') });
  const adminUrl = `http://127.0.0.1:${a}`;
  const exited = new Promise<never>((_, reject) =>
    child.once('exit', (code, sig) => reject(new Error(`edgeway exited (${code ?? sig}) at start: ${outputOf(child).slice(0, 2000)}`))),
  );
  exited.catch(() => undefined);
  const healthy = (async () => {
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        const r = await fetch(`${adminUrl}/v1/health`);
        await r.arrayBuffer();
        if (r.status === 200) return;
      } catch {
        /* not yet */
      }
      if (Date.now() > deadline) throw new Error(`edgeway not healthy within 30 s: ${outputOf(child).slice(0, 2000)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  await Promise.race([healthy, exited]);
  await waitForPort(p);
  return { ...target(o.name, [child], p, h), adminUrl, configFile };
}

// ---------------------------------------------------------------- checks

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One request to 127.0.0.1:port with the given Host (and SNI), certificate not checked. */
export function request(port: number, host: string, path: string, headers: Record<string, string> = {}, tlsOn = true): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const opts = { host: '127.0.0.1', port, path, headers: { host, ...headers }, agent: false as const };
    const done = (res: http.IncomingMessage): void => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    };
    const req = tlsOn ? https.get({ ...opts, servername: host, rejectUnauthorized: false }, done) : http.get(opts, done);
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
  });
}
