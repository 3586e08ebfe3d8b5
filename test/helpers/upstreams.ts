// Small real servers for the proxy tests: upstreams on 127.0.0.1:0 that count
// their connections, a front server that hands every request to a Forwarder,
// and a client request helper that reports truncated responses.

import http from 'node:http';
import type { AddressInfo, Server as NetServer, Socket } from 'node:net';
import { Readable } from 'node:stream';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { ProxyConfig } from '../../src/config/types.js';
import type { UpstreamTarget } from '../../src/routes/types.js';
import type { Forwarder, ForwardRequest } from '../../src/proxy/forwarder.js';
import type { UpstreamGroup } from '../../src/proxy/upstream-group.js';

export const CFG: ProxyConfig = {
  timeout_ms: 5000,
  connect_timeout_ms: 1000,
  pool_connections: 4,
  max_fails: 2,
  eject_ms: 10_000,
  fast_lane: true,
  forwarder: 'lean',
};

export interface Teardown {
  teardown(fn: () => unknown): void;
}

/** Listens on 127.0.0.1:0 and registers the close at once. */
export async function listen<S extends NetServer>(t: Teardown, server: S): Promise<number> {
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

export interface Upstream {
  readonly server: http.Server;
  readonly port: number;
  readonly target: UpstreamTarget;
  /** Connections accepted so far, and open now. */
  readonly stats: { accepted: number; open: number };
}

export async function upstream(t: Teardown, handler: http.RequestListener): Promise<Upstream> {
  const server = http.createServer(handler);
  const stats = { accepted: 0, open: 0 };
  server.on('connection', (s: Socket) => {
    stats.accepted++;
    stats.open++;
    s.on('close', () => stats.open--);
  });
  const port = await listen(t, server);
  return { server, port, target: target(port), stats };
}

export function target(port: number, protocol: 'http:' | 'https:' = 'http:', hostname = '127.0.0.1'): UpstreamTarget {
  return { origin: `${protocol}//${hostname}:${port}`, protocol, hostname, port, basePath: '' };
}

/** A port nothing listens on (bound, then released). */
export async function deadPort(): Promise<number> {
  const s = http.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

export function forwardRequest(req: http.IncomingMessage, group: UpstreamGroup, timeoutMs: number): ForwardRequest {
  return {
    group,
    path: req.url as string,
    timeoutMs,
    clientIp: req.socket.remoteAddress ?? '',
    proto: 'http',
    host: req.headers.host as string,
  };
}

/** The data plane in miniature: every request goes to `group` through `forwarder`. */
export async function front(
  t: Teardown,
  forwarder: Forwarder,
  group: () => UpstreamGroup,
  timeoutMs = CFG.timeout_ms,
): Promise<number> {
  const server = http.createServer((req, res) => forwarder.forward(req, res, forwardRequest(req, group(), timeoutMs)));
  return listen(t, server);
}

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  body: Buffer;
  /** True when the response ended cleanly; false when it was cut off. */
  complete: boolean;
}

export interface RequestOptions {
  method?: string;
  path?: string;
  headers?: http.OutgoingHttpHeaders | string[];
  body?: Buffer | string | Readable;
  agent?: http.Agent | false;
}

/** One request; resolves with `complete: false` when the response is truncated. */
export function request(port: number, opts: RequestOptions = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1',
      port,
      method: opts.method ?? 'GET',
      path: opts.path ?? '/',
      headers: opts.headers as http.OutgoingHttpHeaders,
      agent: opts.agent ?? false,
    });
    req.on('error', reject);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      let settled = false;
      const done = (complete: boolean): void => {
        if (settled) return;
        settled = true;
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          rawHeaders: res.rawHeaders,
          body: Buffer.concat(chunks),
          complete,
        });
      };
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => done(res.complete));
      res.on('aborted', () => done(false));
      res.on('error', () => done(false));
      res.on('close', () => done(res.complete));
    });
    const body = opts.body;
    if (body instanceof Readable) body.pipe(req);
    else req.end(body);
  });
}

/** A Readable of `total` bytes from one reused buffer: generates, never buffers. */
export function generated(total: number, chunkSize = 64 * 1024): Readable {
  const chunk = Buffer.alloc(chunkSize, 0x61);
  let left = total;
  return new Readable({
    highWaterMark: chunkSize,
    read() {
      if (left <= 0) {
        this.push(null);
        return;
      }
      const n = Math.min(left, chunkSize);
      left -= n;
      this.push(n === chunkSize ? chunk : chunk.subarray(0, n));
    },
  });
}

/** Samples RSS every `everyMs` until stopped; returns the peak growth over the start. */
export function rssSampler(everyMs = 25): { stop(): number } {
  const start = process.memoryUsage().rss;
  let peak = start;
  const timer = setInterval(() => {
    const rss = process.memoryUsage().rss;
    if (rss > peak) peak = rss;
  }, everyMs);
  return {
    stop() {
      clearInterval(timer);
      const rss = process.memoryUsage().rss;
      if (rss > peak) peak = rss;
      return peak - start;
    },
  };
}

export const MiB = 1024 * 1024;

// A real collector without --expose-gc on the command line (tap has no
// per-file node arguments): the flag set at run time exposes `gc` to new contexts.
setFlagsFromString('--expose-gc');
export const gc = runInNewContext('gc') as () => void;
