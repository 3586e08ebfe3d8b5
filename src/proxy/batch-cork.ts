// Writes of one I/O batch leave together (issue 4). Every loopback or
// network write wakes its reader, and a woken reader on a busy machine
// preempts the writer: with one write per request the fast lane woke the
// upstream and the client once per request, and the bench counted ~4,700
// involuntary context switches a second per worker. Corking a socket until
// the end of the current I/O phase (setImmediate runs right after it) turns
// the batch's writes into one wakeup per peer and lets the rest of the batch
// run first; a request waits at most for its own batch.
//
// One immediate per batch, not per write; a socket is corked once per batch.
// Writable semantics are kept: end() uncorks first, so a close never
// overtakes its response, and a destroyed socket is skipped.

import type { Socket } from 'node:net';

const corked: Socket[] = [];
let armed = false;

function uncorkAll(): void {
  armed = false;
  for (let i = 0; i < corked.length; i++) {
    const s = corked[i] as Socket;
    if (!s.destroyed) s.uncork();
  }
  corked.length = 0;
}

/** Corks `s` until the end of this I/O phase, unless it already is. */
export function corkTillBatchEnd(s: Socket): void {
  if (s.writableCorked !== 0) return;
  s.cork();
  corked.push(s);
  if (!armed) {
    armed = true;
    setImmediate(uncorkAll);
  }
}
