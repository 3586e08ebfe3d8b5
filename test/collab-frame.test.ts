// Broadcast frames built once for every peer (src/collab/frame.ts, issue 6
// Speed): byte for byte what ws itself would put on the wire, and written
// through ws.send whenever ws's sender holds frames of its own.

import { createRequire } from 'node:module';
import t from 'tap';
import type WebSocket from 'ws';
import * as encoding from 'lib0/encoding';
import { binaryFrame, syncUpdateFrame, writeFrame } from '../src/collab/frame.js';

const SIZES = [0, 1, 125, 126, 127, 200, 65535, 65536, 70000];

// ws's CommonJS entry has Sender.frame, the framing every ws.send uses.
const Sender = (createRequire(import.meta.url)('ws') as { Sender: { frame(d: Buffer, o: object): Buffer[] } }).Sender;

function wsFrame(data: Buffer): Buffer {
  const list = Sender.frame(data, { fin: true, opcode: 2, mask: false, readOnly: true, rsv1: false });
  return Buffer.concat(list.length === 2 ? list : [list[0]!, data]);
}

t.test('binaryFrame is ws’s own frame for every length class', async (t) => {
  for (const n of SIZES) {
    const data = Buffer.alloc(n, n % 251);
    t.same(binaryFrame(data), wsFrame(data), `${n} bytes`);
  }
});

t.test('syncUpdateFrame is the frame of [sync, update, varuint length, update]', async (t) => {
  for (const n of SIZES) {
    const update = Buffer.alloc(n, 7);
    const e = encoding.createEncoder();
    encoding.writeVarUint(e, 0);
    encoding.writeVarUint(e, 2);
    encoding.writeVarUint8Array(e, update);
    t.same(syncUpdateFrame(update), wsFrame(Buffer.from(encoding.toUint8Array(e))), `${n} bytes`);
  }
});

t.test('writeFrame writes to the socket, or through ws.send while the sender holds frames', async (t) => {
  const written: Buffer[] = [];
  const sent: Buffer[] = [];
  const fake = (queue: unknown[]) => ({ _socket: { write: (b: Buffer) => written.push(b) }, _sender: { _queue: queue }, send: (b: Buffer) => sent.push(b) }) as unknown as WebSocket;
  const frame = binaryFrame(Buffer.from('hello'));
  writeFrame(fake([]), frame);
  t.same(written, [frame]);
  writeFrame(fake([['queued']]), frame);
  t.same(sent, [Buffer.from('hello')], 'the payload, framed by ws behind what it holds');
  const big = Buffer.alloc(70000, 1);
  writeFrame(fake([['queued']]), binaryFrame(big));
  t.same(sent[1], big);
});
