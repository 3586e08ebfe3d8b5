// The upstream of the websocket and streaming scenarios, run by the bench as
// its own process (`node dist/bench/node-upstream.js PORT`), not counted for
// any target:
//   - any upgrade: a websocket echo server (`ws`, no compression);
//   - POST /stream/up: reads and discards the body, answers {"bytes": n};
//   - GET /stream/down?bytes=N: N bytes (1 GiB by default) from one reused
//     buffer, with Content-Length, honouring backpressure;
//   - anything else: 200 "ok".
// It prints "listening" once the port is open.

import http from 'node:http';
import { WebSocketServer } from 'ws';

const port = Number(process.argv[2]);
const CHUNK = Buffer.alloc(256 * 1024, 'y');
const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 1 << 20 });
wss.on('connection', (ws) => {
  ws.on('message', (data, binary) => ws.send(data, { binary }));
  ws.on('error', () => ws.terminate());
});

function down(res: http.ServerResponse, total: number): void {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': total });
  let left = total;
  const pump = (): void => {
    while (left > 0) {
      const n = Math.min(left, CHUNK.length);
      left -= n;
      if (!res.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) return void res.once('drain', pump);
    }
    res.end();
  };
  pump();
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://upstream');
  if (req.method === 'POST' && url.pathname === '/stream/up') {
    let bytes = 0;
    req.on('data', (c: Buffer) => (bytes += c.length));
    req.on('end', () => {
      const body = JSON.stringify({ bytes });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
    return;
  }
  if (req.method === 'GET' && url.pathname === '/stream/down') return down(res, Number(url.searchParams.get('bytes') ?? 2 ** 30));
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 2 });
  res.end('ok');
});
server.on('upgrade', (req, socket, head) => wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req)));
server.keepAliveTimeout = 65_000;
server.requestTimeout = 0;
server.listen(port, '127.0.0.1', 8192, () => console.log('listening'));
process.on('SIGTERM', () => process.exit(0));
