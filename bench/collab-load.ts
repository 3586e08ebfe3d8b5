// bench:collab load generator, one child process (forked by bench/collab.ts,
// several of them): a slice of whole rooms, every client a real y-websocket
// peer on the wire (sync step 1 at open, the server's step 2 awaited, then
// update messages the servers apply and store) but nothing more: no Y.Doc,
// updates pre-built by UpdateWriter, receipts read from the stamp. Issue 6
// "Speed": measured with one process holding 10,000 sockets and a Y.Doc per
// client, that process's own event-loop delay and GC were most of the p99.
//
// A room's clients all live in one process, so a send time and its receipts
// are read on the same clock (performance.now) and no update crosses
// processes. The parent sends {connect}, {round}, {close}; the child answers
// with counts, the round's latencies (µs) and its own probe window.

import { writeFileSync } from 'node:fs';
import WebSocket from 'ws';
import { probe } from './collab-probe.js';
import { UpdateWriter, readStamp } from './collab-wire.js';

export interface ConnectCmd {
  readonly type: 'connect';
  /** `{room}` is replaced by the room's name. */
  readonly url: string;
  readonly rooms: readonly number[];
  readonly clients: number;
  /** Global index of this slice's first client (keys, senders and Yjs client ids stay unique across children). */
  readonly firstClient: number;
  readonly opts: { ca?: string[]; headers?: Record<string, string>; loopback?: boolean };
  /** Every client of the slice joins this one room instead (the idle-socket baseline for RSS). */
  readonly oneRoom?: string;
}
export interface RoundCmd {
  readonly type: 'round';
  readonly rate: number;
  readonly seconds: number;
  readonly tickMs: number;
}
type Cmd = ConnectCmd | RoundCmd | { readonly type: 'close' };

class Client {
  synced = false;
  constructor(
    readonly ws: WebSocket,
    readonly index: number,
    readonly writer: UpdateWriter,
  ) {}
}

const kClient = Symbol('client');
type ClientSocket = WebSocket & { [kClient]?: Client };

// Per-round receipt state, shared by every socket's listener (no closure per socket).
let latencies = new Float64Array(1 << 16);
let count = 0;
let closing = false;
const stamp = { timeUs: 0, sender: 0 };
// EDGEWAY_BENCH_DUMP=PREFIX (diagnosis): each round also writes every
// receipt's send time and latency (µs, performance clock; epoch ms =
// origin + send / 1000) to PREFIX.<pid>.<rate>.json, to line the p99's late
// receipts up with stalls logged by EDGEWAY_BENCH_STALLS (bench/NOTES.md
// collab step 9).
const DUMP = process.env.EDGEWAY_BENCH_DUMP;
let sends = new Float64Array(DUMP === undefined ? 0 : 1 << 16);

function onMessage(this: ClientSocket, data: Buffer): void {
  const c = this[kClient]!;
  if (data[0] === 0 && data[1] === 1) {
    c.synced = true;
    return;
  }
  if (!readStamp(data, stamp) || stamp.sender === c.index) return;
  if (count === latencies.length) latencies = doubled(latencies);
  if (DUMP !== undefined) {
    if (count === sends.length) sends = doubled(sends);
    sends[count] = stamp.timeUs;
  }
  latencies[count++] = performance.now() * 1000 - stamp.timeUs;
}

function doubled(a: Float64Array<ArrayBuffer>): Float64Array<ArrayBuffer> {
  const bigger = new Float64Array(a.length * 2);
  bigger.set(a);
  return bigger;
}

function onClose(this: ClientSocket, code: number): void {
  if (!closing) process.stderr.write(`load generator: client ${this[kClient]!.index} closed: ${code}\n`);
}

const STEP1_EMPTY = Buffer.from([0, 0, 1, 0]); // sync step 1 with an empty state vector
let clients: Client[] = [];

async function connect(cmd: ConnectCmd): Promise<void> {
  const lookup = (_h: string, o: { all?: boolean }, cb: (...a: unknown[]) => void): void => (o.all ? cb(null, [{ address: '127.0.0.1', family: 4 }]) : cb(null, '127.0.0.1', 4));
  const opts: WebSocket.ClientOptions = { perMessageDeflate: false, ca: cmd.opts.ca, headers: cmd.opts.headers, ...(cmd.opts.loopback ? { lookup: lookup as never } : {}) };
  const total = cmd.rooms.length * cmd.clients;
  let next = 0;
  const open = async (): Promise<void> => {
    while (next < total) {
      const i = next++;
      const room = cmd.rooms[i % cmd.rooms.length]!;
      const index = cmd.firstClient + i;
      const ws = new WebSocket(cmd.url.replace('{room}', cmd.oneRoom ?? `room-${room}`), opts) as ClientSocket;
      const c = new Client(ws, index, new UpdateWriter(1_000_000 + index, `c${index}`, index));
      ws[kClient] = c;
      ws.on('message', onMessage);
      ws.on('close', onClose);
      await new Promise<void>((resolve, reject) => {
        ws.once('open', resolve);
        ws.once('error', reject);
      });
      ws.send(STEP1_EMPTY);
      clients[i] = c;
    }
  };
  await Promise.all(Array.from({ length: 32 }, open));
  const deadline = Date.now() + 120_000;
  while (unsynced(total) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  process.send!({ type: 'connected', clients: total, unsynced: unsynced(total) });
}

function unsynced(total: number): number {
  let n = 0;
  for (let i = 0; i < total; i++) if (clients[i]?.synced !== true) n++;
  return n;
}

/** Sends `rate` updates/s for `seconds`, round-robin over rooms (then over a room's clients), in ticks of `tickMs`. */
async function round(cmd: RoundCmd, rooms: number): Promise<void> {
  count = 0;
  probe.report();
  const cpu0 = process.cpuUsage();
  let k = 0;
  let sent = 0;
  const started = performance.now();
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const elapsed = performance.now() - started;
      if (elapsed >= cmd.seconds * 1000) {
        clearInterval(timer);
        resolve();
        return;
      }
      // Owed by the clock, not by tick count: a late timer sends what it owes.
      for (const owed = Math.floor((cmd.rate * elapsed) / 1000); sent < owed; sent++) {
        // Clients are laid out room by room in rounds: index k%rooms is a room, k/rooms its next client.
        const c = clients[(Math.floor(k / rooms) % (clients.length / rooms)) * rooms + (k % rooms)]!;
        k++;
        c.ws.send(c.writer.next(performance.now() * 1000));
      }
    }, cmd.tickMs);
  });
  const sendSeconds = (performance.now() - started) / 1000;
  const perRoom = clients.length / rooms;
  const expected = sent * (perRoom - 1);
  const until = Date.now() + 5000;
  while (count < expected && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  const lat = latencies.slice(0, count);
  if (DUMP !== undefined) writeFileSync(`${DUMP}.${process.pid}.${cmd.rate}.json`, JSON.stringify({ origin: performance.timeOrigin, send: Array.from(sends.subarray(0, count)), lat: Array.from(lat) }));
  const cpu = process.cpuUsage(cpu0);
  process.send!({ type: 'round', sent, sendSeconds, expected, receipts: count, latencies: lat, probe: probe.report(), cpuSeconds: (cpu.user + cpu.system) / 1e6 });
}

let rooms = 0;
process.on('message', (cmd: Cmd) => {
  if (cmd.type === 'connect') {
    rooms = cmd.oneRoom === undefined ? cmd.rooms.length : 1;
    connect(cmd).catch((err: unknown) => {
      process.stderr.write(`load generator: connect failed: ${String(err)}\n`);
      process.exit(1);
    });
  } else if (cmd.type === 'round') void round(cmd, rooms);
  else {
    closing = true;
    for (const c of clients) c.ws.terminate();
    clients = [];
    process.disconnect();
  }
});
