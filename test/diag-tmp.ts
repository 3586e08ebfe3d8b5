import http from 'node:http';
import WebSocket, { WebSocketServer } from 'ws';
import { WebSocketProxy } from '../src/proxy/websocket.js';
import { UpstreamGroup } from '../src/proxy/upstream-group.js';
import { CFG, forwardRequest, gc, target } from './helpers/upstreams.js';
const direct = process.argv[2] === 'direct';
const up = http.createServer();
const wss = new WebSocketServer({ server: up });
wss.on('connection', (ws) => ws.on('message', (d) => ws.send(d)));
await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
const upPort = (up.address() as any).port;
const proxy = new WebSocketProxy(CFG);
const group = new UpstreamGroup([target(upPort)], CFG);
const front = http.createServer();
front.on('upgrade', (req, socket, head) => proxy.upgrade(req, socket, head, forwardRequest(req, group, 5000), 1));
await new Promise<void>((r) => front.listen(0, '127.0.0.1', r));
const port = direct ? upPort : (front.address() as any).port;
const cycle = () => new Promise<void>((resolve, reject) => { const ws = new WebSocket(`ws://127.0.0.1:${port}/`); ws.on('open', () => ws.close(1000)); ws.on('close', () => resolve()); ws.on('error', reject); });
async function run(n: number) { let next = 0; await Promise.all(Array.from({ length: 50 }, async () => { while (next < n) { next++; await cycle(); } })); }
for (let round = 0; round < 8; round++) {
  await run(2000);
  await new Promise((r) => setTimeout(r, 700));
  gc(); gc();
  console.log(round, (process.memoryUsage().heapUsed / 1048576).toFixed(1), 'size', proxy.size, (proxy as any).lingering.size);
}
if (process.argv[3] === 'snap') { const v8 = await import('node:v8'); console.log(v8.writeHeapSnapshot('/tmp/ws.heapsnapshot')); }
if (!process.env.TAP) process.exit(0);
