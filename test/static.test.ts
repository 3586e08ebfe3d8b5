// Static file serving: real HTTP servers over a temp directory built at run
// time (symlinks and a FIFO cannot live in git). Requests go through
// http.request with raw paths so nothing normalizes `..` or `%2e` on the way.

import t from 'tap';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { StaticHandler } from '../src/static/serve.js';

const base = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'edgeway-static-')));
t.teardown(() => fs.rmSync(base, { recursive: true, force: true }));
const root = path.join(base, 'www');
const outside = path.join(base, 'outside');
const sibling = path.join(base, 'www-evil'); // shares the root's name as a prefix

const INDEX = '<!doctype html><h1>home</h1>\n';
const APP_JS = 'console.log("edgeway");\n'.repeat(40);
const BIG = Buffer.alloc(8 * 1024 * 1024, 0x61);
const MTIME = new Date('2024-03-01T12:00:00Z');

function write(rel: string, data: string | Buffer, dir = root): void {
  const file = path.join(dir, rel);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, data);
  fs.utimesSync(file, MTIME, MTIME);
}

write('index.html', INDEX);
write('hello.txt', 'hello world\n');
write('empty.txt', '');
write('data.json', '{"a":1}');
write('LICENSE', 'no extension\n');
write('with space.txt', 'spaced\n');
write('image.png', Buffer.from([0x89, 0x50, 0x4e, 0x47, 1, 2, 3]));
write('image.png.gz', zlib.gzipSync(Buffer.from([0x89, 0x50, 0x4e, 0x47, 1, 2, 3])));
write('app.js', APP_JS);
write('app.js.br', zlib.brotliCompressSync(APP_JS));
write('app.js.gz', zlib.gzipSync(APP_JS));
write('style.css', 'body{color:red}\n');
write('style.css.gz', zlib.gzipSync('body{color:red}\n'));
write('big.bin', BIG);
write('docs/index.html', '<h1>docs</h1>\n');
write('docs/page.html', '<h1>page</h1>\n');
fs.mkdirSync(path.join(root, 'noindex'));
write('.env', 'SECRET=1\n');
write('.git/config', 'SECRET=2\n');
write('.well-known/security.txt', 'Contact: mailto:sec@example.test\n');
write('secret.txt', 'SECRET=3\n', outside);
write('secret.txt', 'SECRET=4\n', sibling);
fs.symlinkSync(path.join(root, 'hello.txt'), path.join(root, 'link-in'));
fs.symlinkSync('docs', path.join(root, 'link-docs'));
fs.symlinkSync(path.join(outside, 'secret.txt'), path.join(root, 'link-out.txt'));
fs.symlinkSync(outside, path.join(root, 'link-outdir'));
fs.symlinkSync('../www-evil/secret.txt', path.join(root, 'link-sibling'));
fs.symlinkSync('.env', path.join(root, 'link-dot'));
execFileSync('mkfifo', [path.join(root, 'pipe.txt')]);

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** The handler gets the request path without the query, as the data plane passes it. */
function pathOf(url: string | undefined): string {
  const u = url ?? '/';
  const q = u.indexOf('?');
  return q < 0 ? u : u.slice(0, q);
}

async function start(handler: StaticHandler): Promise<number> {
  const server = http.createServer((req, res) => handler.serve(req, res, pathOf(req.url)));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

function request(port: number, rawPath: string, opts: { method?: string; headers?: http.OutgoingHttpHeaders } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, path: rawPath, method: opts.method ?? 'GET', headers: opts.headers, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    // A hang (say, a FIFO opened blocking) must fail the test, not stall it.
    req.setTimeout(5000, () => req.destroy(new Error(`timeout: ${rawPath}`)));
    req.on('error', reject);
    req.end();
  });
}

const plainPort = await start(new StaticHandler({ root, spa: false }));
const spaPort = await start(new StaticHandler({ root, spa: true }));
const get = (p: string, headers?: http.OutgoingHttpHeaders): Promise<Reply> => request(plainPort, p, { headers });

t.test('content types, length, caching headers', async (t) => {
  const cases: [string, string, string][] = [
    ['/hello.txt', 'text/plain; charset=utf-8', 'hello world\n'],
    ['/data.json', 'application/json; charset=utf-8', '{"a":1}'],
    ['/index.html', 'text/html; charset=utf-8', INDEX],
    ['/LICENSE', 'application/octet-stream', 'no extension\n'],
    ['/with%20space.txt', 'text/plain; charset=utf-8', 'spaced\n'],
    ['/hello%2etxt', 'text/plain; charset=utf-8', 'hello world\n'],
    ['/.well-known/security.txt', 'text/plain; charset=utf-8', 'Contact: mailto:sec@example.test\n'],
    ['/link-in', 'application/octet-stream', 'hello world\n'],
    ['/link-docs/page.html', 'text/html; charset=utf-8', '<h1>page</h1>\n'],
    ['//docs//page.html', 'text/html; charset=utf-8', '<h1>page</h1>\n'],
  ];
  for (const [p, type, body] of cases) {
    const r = await get(p);
    t.equal(r.status, 200, `${p} status`);
    t.equal(r.headers['content-type'], type, `${p} type`);
    t.equal(r.body.toString(), body, `${p} body`);
    t.equal(r.headers['content-length'], String(Buffer.byteLength(body)), `${p} length`);
    t.equal(r.headers['accept-ranges'], 'bytes', `${p} accept-ranges`);
  }
  const png = await get('/image.png');
  t.equal(png.headers['content-type'], 'image/png');
  t.equal(png.headers['cache-control'], 'public, max-age=0');
  t.equal(png.headers['last-modified'], MTIME.toUTCString());
  t.match(png.headers.etag, /^"[0-9a-f]+-[0-9a-f]+"$/, 'strong etag');
  t.equal((await get('/index.html')).headers['cache-control'], 'no-cache', 'index.html is always revalidated');
  const empty = await get('/empty.txt');
  t.equal(empty.status, 200);
  t.equal(empty.headers['content-length'], '0');
});

t.test('conditional requests (RFC 9110 §13)', async (t) => {
  const first = await get('/hello.txt');
  const etag = first.headers.etag as string;
  const lm = first.headers['last-modified'] as string;
  const later = new Date(MTIME.getTime() + 3600_000).toUTCString();
  const earlier = new Date(MTIME.getTime() - 3600_000).toUTCString();
  const cases: [string, http.OutgoingHttpHeaders, number][] = [
    ['If-None-Match equal', { 'if-none-match': etag }, 304],
    ['If-None-Match weak form', { 'if-none-match': `W/${etag}` }, 304],
    ['If-None-Match list', { 'if-none-match': `"nope", ${etag}` }, 304],
    ['If-None-Match *', { 'if-none-match': '*' }, 304],
    ['If-None-Match other', { 'if-none-match': '"nope"' }, 200],
    ['If-None-Match beats If-Modified-Since', { 'if-none-match': '"nope"', 'if-modified-since': later }, 200],
    ['If-Modified-Since = Last-Modified', { 'if-modified-since': lm }, 304],
    ['If-Modified-Since later', { 'if-modified-since': later }, 304],
    ['If-Modified-Since earlier', { 'if-modified-since': earlier }, 200],
    ['If-Modified-Since garbage', { 'if-modified-since': 'yesterday' }, 200],
    ['If-Match other', { 'if-match': '"nope"' }, 412],
    ['If-Match weak never matches', { 'if-match': `W/${etag}` }, 412],
    ['If-Match equal', { 'if-match': etag }, 200],
    ['If-Unmodified-Since earlier', { 'if-unmodified-since': earlier }, 412],
    ['If-Unmodified-Since later', { 'if-unmodified-since': later }, 200],
  ];
  for (const [name, headers, status] of cases) {
    const r = await get('/hello.txt', headers);
    t.equal(r.status, status, name);
    if (status !== 200) t.equal(r.body.length, 0, `${name}: no body`);
    if (status === 304) t.equal(r.headers.etag, etag, `${name}: 304 carries the ETag`);
  }
  const js = await get('/app.js', { 'accept-encoding': 'br', 'if-none-match': (await get('/app.js', { 'accept-encoding': 'br' })).headers.etag });
  t.equal(js.status, 304);
  t.equal(js.headers.vary, 'Accept-Encoding', '304 keeps Vary');
});

t.test('byte ranges (RFC 9110 §14)', async (t) => {
  const full = await get('/hello.txt');
  const etag = full.headers.etag as string;
  const cases: [string, http.OutgoingHttpHeaders, number, string, string | undefined][] = [
    ['first bytes', { range: 'bytes=0-4' }, 206, 'hello', 'bytes 0-4/12'],
    ['open end', { range: 'bytes=6-' }, 206, 'world\n', 'bytes 6-11/12'],
    ['suffix', { range: 'bytes=-6' }, 206, 'world\n', 'bytes 6-11/12'],
    ['suffix longer than file', { range: 'bytes=-100' }, 206, 'hello world\n', 'bytes 0-11/12'],
    ['end past size clamps', { range: 'bytes=0-999' }, 206, 'hello world\n', 'bytes 0-11/12'],
    ['unit is case-insensitive', { range: 'Bytes=0-0' }, 206, 'h', 'bytes 0-0/12'],
    ['start past size', { range: 'bytes=12-' }, 416, '', 'bytes */12'],
    ['zero suffix', { range: 'bytes=-0' }, 416, '', 'bytes */12'],
    ['several ranges: whole body', { range: 'bytes=0-1,3-4' }, 200, 'hello world\n', undefined],
    ['reversed: ignored', { range: 'bytes=5-2' }, 200, 'hello world\n', undefined],
    ['other unit: ignored', { range: 'items=0-1' }, 200, 'hello world\n', undefined],
    ['garbage: ignored', { range: 'bytes=a-b' }, 200, 'hello world\n', undefined],
    ['If-Range current etag', { range: 'bytes=0-4', 'if-range': etag }, 206, 'hello', 'bytes 0-4/12'],
    ['If-Range stale etag', { range: 'bytes=0-4', 'if-range': '"old"' }, 200, 'hello world\n', undefined],
    ['If-Range weak etag', { range: 'bytes=0-4', 'if-range': `W/${etag}` }, 200, 'hello world\n', undefined],
    ['If-Range current date', { range: 'bytes=0-4', 'if-range': MTIME.toUTCString() }, 206, 'hello', 'bytes 0-4/12'],
    ['If-Range old date', { range: 'bytes=0-4', 'if-range': new Date(0).toUTCString() }, 200, 'hello world\n', undefined],
  ];
  for (const [name, headers, status, body, contentRange] of cases) {
    const r = await get('/hello.txt', headers);
    t.equal(r.status, status, `${name}: status`);
    t.equal(r.body.toString(), body, `${name}: body`);
    t.equal(r.headers['content-range'], contentRange, `${name}: Content-Range`);
    t.equal(r.headers['content-length'], String(body.length), `${name}: Content-Length`);
  }
  t.equal((await get('/empty.txt', { range: 'bytes=0-' })).status, 416, 'empty file has no satisfiable range');
  const head = await request(plainPort, '/hello.txt', { method: 'HEAD', headers: { range: 'bytes=0-4' } });
  t.equal(head.status, 200, 'Range is defined for GET only');

  const big = await get('/big.bin', { range: 'bytes=1048576-1048585' });
  t.equal(big.status, 206);
  t.same(big.body, BIG.subarray(1048576, 1048586));

  const js = await get('/app.js', { range: 'bytes=0-6', 'accept-encoding': 'br, gzip' });
  t.equal(js.status, 206, 'a range on a precompressed file ...');
  t.equal(js.headers['content-encoding'], undefined, '... is served from the identity file');
  t.equal(js.body.toString(), 'console');
});

t.test('precompressed siblings and Vary', async (t) => {
  const identity = await get('/app.js');
  t.equal(identity.headers['content-encoding'], undefined);
  t.equal(identity.headers.vary, 'Accept-Encoding', 'Vary even when identity is chosen');
  t.equal(identity.body.toString(), APP_JS);
  const cases: [string, string | undefined][] = [
    ['br, gzip', 'br'],
    ['gzip, deflate, br', 'br'],
    ['gzip', 'gzip'],
    ['x-gzip', 'gzip'],
    ['br;q=0, gzip', 'gzip'],
    ['gzip;q=0.5, br;q=0.4', 'gzip'],
    ['gzip;q=0.5, br;q=0.5', 'br'],
    ['br;q=0, gzip;q=0', undefined],
    ['*', 'br'],
    ['*;q=0', undefined],
    ['gzip;q=0, *', 'br'],
    ['identity', undefined],
    ['BR', 'br'],
    ['br;q=nonsense, gzip', 'gzip'],
  ];
  const etags = new Set<string>();
  for (const [ae, enc] of cases) {
    const r = await get('/app.js', { 'accept-encoding': ae });
    t.equal(r.status, 200, `${ae}: status`);
    t.equal(r.headers['content-encoding'], enc, `${ae}: Content-Encoding`);
    t.equal(r.headers['content-type'], 'text/javascript; charset=utf-8', `${ae}: original type`);
    t.equal(r.headers.vary, 'Accept-Encoding', `${ae}: Vary`);
    t.equal(r.headers['content-length'], String(r.body.length), `${ae}: length of the sent bytes`);
    const plain = enc === 'br' ? zlib.brotliDecompressSync(r.body) : enc === 'gzip' ? zlib.gunzipSync(r.body) : r.body;
    t.equal(plain.toString(), APP_JS, `${ae}: decodes to the original`);
    etags.add(r.headers.etag as string);
  }
  t.equal(etags.size, 3, 'identity, br and gzip each have their own ETag');

  const css = await get('/style.css', { 'accept-encoding': 'br, gzip' });
  t.equal(css.headers['content-encoding'], 'gzip', 'falls back to .gz when there is no .br');
  const png = await get('/image.png', { 'accept-encoding': 'gzip' });
  t.equal(png.headers['content-encoding'], undefined, 'incompressible types ignore siblings');
  t.equal(png.headers.vary, undefined, 'and need no Vary');
  const head = await request(plainPort, '/app.js', { method: 'HEAD', headers: { 'accept-encoding': 'br' } });
  t.equal(head.headers['content-encoding'], 'br');
  t.equal(head.body.length, 0);
});

t.test('directories: index and 308', async (t) => {
  const rootIndex = await get('/');
  t.equal(rootIndex.status, 200);
  t.equal(rootIndex.body.toString(), INDEX);
  t.equal(rootIndex.headers['cache-control'], 'no-cache');
  const docs = await get('/docs/');
  t.equal(docs.body.toString(), '<h1>docs</h1>\n');
  t.equal(docs.headers['content-type'], 'text/html; charset=utf-8');
  const redirects: [string, string][] = [
    ['/docs', '/docs/'],
    ['/docs?x=1&y', '/docs/?x=1&y'],
    ['/link-docs', '/link-docs/'],
    ['//docs', '/docs/'], // never a protocol-relative Location
    ['///docs?q', '/docs/?q'],
  ];
  for (const [from, to] of redirects) {
    const r = await get(from);
    t.equal(r.status, 308, `${from} redirects`);
    t.equal(r.headers.location, to, `${from} → ${to}`);
  }
  t.equal((await get('/noindex/')).status, 404, 'no index, no listing');
  t.equal((await get('/hello.txt/')).status, 404, 'a file with a trailing slash');
  t.equal((await get('/missing/')).status, 404);
});

t.test('SPA fallback', async (t) => {
  for (const p of ['/some/client/route', '/docs/missing', '/user-42?tab=1', '/missing/']) {
    const r = await request(spaPort, p);
    t.equal(r.status, 200, `${p} falls back`);
    t.equal(r.body.toString(), INDEX, `${p} body`);
    t.equal(r.headers['cache-control'], 'no-cache', `${p} no-cache`);
    t.equal(r.headers['content-type'], 'text/html; charset=utf-8');
  }
  t.equal((await request(spaPort, '/missing.js')).status, 404, 'paths with an extension stay 404');
  t.equal((await request(spaPort, '/hello.txt')).body.toString(), 'hello world\n', 'existing files win');
  t.equal((await request(spaPort, '/docs/')).body.toString(), '<h1>docs</h1>\n', 'existing indexes win');
  const head = await request(spaPort, '/route', { method: 'HEAD' });
  t.equal(head.status, 200);
  t.equal(head.body.length, 0);
  t.equal(head.headers['content-length'], String(INDEX.length));
  t.equal((await request(plainPort, '/some/client/route')).status, 404, 'no fallback without spa');
});

// Every way out of the root; each must be a bare 404 on both servers, and never
// the SPA index.
const ESCAPES: [string, string][] = [
  ['dot-dot', '/../outside/secret.txt'],
  ['dot-dot, extensionless', '/../outside'],
  ['dot-dot after a directory', '/docs/../../outside/secret.txt'],
  ['dot-dot that stays inside', '/docs/../hello.txt'],
  ['single dot', '/./hello.txt'],
  ['encoded dots', '/%2e%2e/outside/secret.txt'],
  ['encoded dots, extensionless', '/%2e%2e'],
  ['encoded dots and slashes, mixed case', '/%2E%2e%2foutside%2fsecret.txt'],
  ['encoded dot-dot inside a directory', '/docs/%2e%2e/hello.txt'],
  ['double encoded', '/%252e%252e%252foutside%252fsecret.txt'],
  ['double encoded, extensionless', '/%252e%252e%252foutside'],
  ['percent left after decoding', '/hello%25.txt'],
  ['raw backslashes', '/..\\outside\\secret.txt'],
  ['raw backslash, extensionless', '/..\\outside'],
  ['encoded backslashes', '/..%5coutside%5csecret.txt'],
  ['encoded backslash, upper case', '/..%5Coutside'],
  ['NUL', '/hello.txt%00.png'],
  ['NUL, extensionless', '/hello%00'],
  ['invalid escape', '/%zz'],
  ['lone percent', '/abc%'],
  ['truncated escape', '/abc%2'],
  ['overlong UTF-8 dot', '/%c0%ae%c0%ae/outside/secret.txt'],
  ['dotfile', '/.env'],
  ['encoded dotfile', '/%2eenv'],
  ['dot directory', '/.git/config'],
  ['dot directory, extensionless', '/.git'],
  ['symlink to a file outside', '/link-out.txt'],
  ['symlink to a directory outside', '/link-outdir/secret.txt'],
  ['symlink to a directory outside, extensionless', '/link-outdir'],
  ['symlink to a directory outside, slash', '/link-outdir/'],
  ['symlink to a sibling sharing the prefix', '/link-sibling'],
  ['symlink to a dotfile', '/link-dot'],
  ['FIFO', '/pipe.txt'],
];

t.test('no escape from the root', async (t) => {
  for (const [port, label] of [
    [plainPort, 'plain'],
    [spaPort, 'spa'],
  ] as const) {
    for (const [name, p] of ESCAPES) {
      const r = await request(port, p);
      t.equal(r.status, 404, `${label}: ${name} (${p})`);
      const body = r.body.toString();
      t.notMatch(body, /SECRET|home|hello/, `${label}: ${name}: nothing served`);
      t.notOk(body.includes(base), `${label}: ${name}: no filesystem path`);
    }
  }
});

t.test('methods', async (t) => {
  for (const method of ['POST', 'PUT', 'DELETE', 'OPTIONS']) {
    const r = await request(plainPort, '/hello.txt', { method });
    t.equal(r.status, 405, method);
    t.equal(r.headers.allow, 'GET, HEAD', `${method} Allow`);
  }
  t.equal((await request(spaPort, '/route', { method: 'POST' })).status, 405, 'no SPA fallback for POST');
  const head = await request(plainPort, '/hello.txt', { method: 'HEAD' });
  t.equal(head.status, 200);
  t.equal(head.headers['content-length'], '12');
  t.equal(head.body.length, 0, 'HEAD has no body');
});

t.test('a root that appears later is picked up', async (t) => {
  const late = path.join(base, 'late');
  const port = await start(new StaticHandler({ root: late, spa: true }));
  t.equal((await request(port, '/a.txt')).status, 404);
  t.equal((await request(port, '/route')).status, 404, 'no root, no index');
  write('a.txt', 'late\n', late);
  t.equal((await request(port, '/a.txt')).body.toString(), 'late\n');
  const relative = await start(new StaticHandler({ root: 'www', spa: false }));
  t.equal((await request(relative, '/hello.txt')).status, 404, 'a relative root serves nothing');
});

function openFds(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

async function settle(baseline: number): Promise<number> {
  for (let i = 0; i < 100 && openFds() > baseline; i++) await new Promise((r) => setTimeout(r, 20));
  return openFds();
}

t.test('large files stream and aborted downloads release their fd', async (t) => {
  const full = await get('/big.bin');
  t.equal(full.body.length, BIG.length);
  t.ok(full.body.equals(BIG), 'bytes intact');

  const baseline = openFds();
  for (let i = 0; i < 5; i++) {
    await new Promise<void>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: plainPort, path: '/big.bin', agent: false }, (res) => {
        t.equal(res.statusCode, 200);
        res.once('data', () => {
          req.destroy(); // the client goes away mid-body
          resolve();
        });
      });
      req.on('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNRESET' ? undefined : reject(err)));
      req.end();
    });
  }
  t.ok((await settle(baseline)) <= baseline, 'fd count back to the baseline');
  const after = await get('/hello.txt');
  t.equal(after.status, 200, 'server still serves');
});
