// Real-browser helpers: headless Debian Chromium driven by playwright-core,
// an NSS database that trusts the appliance's local CA, and an upstream that
// serves an HTML page plus a websocket echo.

import { execFile } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { promisify } from 'node:util';
import { chromium, type Browser } from 'playwright-core';
import { WebSocketServer } from 'ws';
import { DOMAIN } from './appliance.js';

const run = promisify(execFile);

interface Teardown {
  teardown(fn: () => unknown): void;
}

/** The browser under test; CHROMIUM_PATH overrides the Debian location. */
export const CHROMIUM = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';

function onPath(cmd: string): boolean {
  for (const dir of (process.env['PATH'] ?? '').split(delimiter)) {
    try {
      accessSync(join(dir, cmd), constants.X_OK);
      return true;
    } catch {
      // next
    }
  }
  return false;
}

/** Null when chromium and certutil are there, else what to install. */
export function missingTools(): string | null {
  const missing: string[] = [];
  try {
    accessSync(CHROMIUM, constants.X_OK);
  } catch {
    missing.push(`${CHROMIUM} (Debian package chromium)`);
  }
  if (!onPath('certutil')) missing.push('certutil (Debian package libnss3-tools)');
  if (missing.length === 0) return null;
  return (
    `the browser test needs ${missing.join(' and ')}; install them with ` +
    '`apt-get install -y --no-install-recommends chromium libnss3-tools` (CI does this in .ci/run)'
  );
}

async function tempDir(t: Teardown, prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * A fresh HOME. With `caPem`, its NSS database ($HOME/.pki/nssdb, where
 * Chromium on Linux looks for user-trusted roots) trusts that CA for TLS
 * servers ("C,,"); without, the database is absent and nothing local is trusted.
 */
export async function browserHome(t: Teardown, caPem?: string): Promise<string> {
  const home = await tempDir(t, 'edgeway-browser-home-');
  if (caPem !== undefined) {
    const db = join(home, '.pki', 'nssdb');
    await mkdir(db, { recursive: true });
    const ca = join(home, 'edgeway-local-ca.crt');
    await writeFile(ca, caPem);
    await run('certutil', ['-d', `sql:${db}`, '-N', '--empty-password']);
    await run('certutil', ['-d', `sql:${db}`, '-A', '-t', 'C,,', '-n', 'edgeway-test', '-i', ca]);
  }
  return home;
}

/**
 * Launches headless Chromium with HOME = `home` and the test domain resolved
 * to 127.0.0.1. playwright-core adds --headless (the new headless mode in
 * current Chromium), --no-sandbox and a temporary --user-data-dir it removes
 * on close (it refuses a --user-data-dir in `args`).
 */
export async function launchChromium(t: Teardown, home: string): Promise<Browser> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 20_000,
    env: { ...process.env, HOME: home },
    args: [
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      `--host-resolver-rules=MAP *.${DOMAIN} 127.0.0.1, MAP ${DOMAIN} 127.0.0.1`,
    ],
  });
  t.teardown(() => browser.close());
  return browser;
}

export interface PageUpstream {
  readonly url: string;
  /** Host and Origin headers of every websocket upgrade, in order. */
  readonly upgrades: { host: string | undefined; origin: string | undefined; url: string | undefined }[];
}

const escapeHtml = (s: string): string =>
  s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/**
 * An upstream on 127.0.0.1:0: any GET gets an HTML page showing the Host it
 * saw (#host) and its request headers as JSON (#headers); `/ws` upgrades to
 * a websocket that echoes every message, prefixed with "echo:".
 */
export async function pageUpstream(t: Teardown): Promise<PageUpstream> {
  const upgrades: PageUpstream['upgrades'] = [];
  const server = http.createServer((req, res) => {
    const body =
      '<!doctype html><html><head><meta charset="utf-8"><title>edgeway browser test</title></head><body>' +
      `<p id="host">${escapeHtml(req.headers.host ?? '')}</p>` +
      `<pre id="headers">${escapeHtml(JSON.stringify(req.headers))}</pre>` +
      '</body></html>';
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  const wss = new WebSocketServer({ noServer: true });
  wss.on('connection', (ws) => {
    ws.on('message', (data, isBinary) => ws.send(isBinary ? data : `echo:${data.toString()}`, { binary: isBinary }));
  });
  server.on('upgrade', (req: http.IncomingMessage, socket: Socket, head: Buffer) => {
    upgrades.push({ host: req.headers.host, origin: req.headers.origin, url: req.url });
    if (req.url !== '/ws') {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
  });
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        for (const ws of wss.clients) ws.terminate();
        wss.close();
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  );
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, upgrades };
}
