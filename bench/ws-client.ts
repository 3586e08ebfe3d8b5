// The client side of the websocket scenarios, forked by the bench with an IPC
// channel so its sockets and CPU stay out of the harness process:
//   idle: open `count` websockets (`concurrency` handshakes at a time), report
//         {opened, failed, error}, hold them until the parent sends 'close',
//         close them, report {closed} and exit;
//   echo: open `count` websockets, then each sends a `size`-byte message and
//         sends the next as soon as the echo is back, for `seconds`; reports
//         {opened, failed, error, messages, seconds} and exits.

import type tls from 'node:tls';
import { clientFrame, openWs, serverFrameLength, type WsTarget } from './ws-wire.js';

export interface ClientSpec extends WsTarget {
  readonly mode: 'idle' | 'echo';
  readonly count: number;
  readonly concurrency: number;
  readonly seconds?: number;
  readonly size?: number;
}

export interface ClientReport {
  opened: number;
  /** Of the opened: how many resumed a TLS session (abbreviated handshake). */
  resumed: number;
  failed: number;
  error?: string;
  messages?: number;
  seconds?: number;
}

const send = (m: unknown): void => void process.send!(m);

async function openAll(spec: ClientSpec): Promise<{ sockets: tls.TLSSocket[]; report: ClientReport }> {
  const sockets: tls.TLSSocket[] = [];
  const report: ClientReport = { opened: 0, resumed: 0, failed: 0 };
  // One full handshake first; its session resumes the rest.
  let session: Buffer | undefined;
  let next = 0;
  const one = async (): Promise<void> => {
    try {
      const s = await openWs(spec, session);
      session ??= s.getSession();
      s.on('session', (b: Buffer) => (session = b));
      sockets.push(s);
      report.opened++;
      if (s.isSessionReused()) report.resumed++;
    } catch (e) {
      report.failed++;
      report.error ??= (e as Error).message;
    }
  };
  if (spec.count > 0) {
    next = 1;
    await one();
    await new Promise((r) => setTimeout(r, 50)); // the TLS 1.3 ticket arrives after the handshake
  }
  const worker = async (): Promise<void> => {
    while (next < spec.count) {
      next++;
      await one();
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, spec.concurrency) }, worker));
  return { sockets, report };
}

async function echo(sockets: tls.TLSSocket[], spec: ClientSpec, report: ClientReport): Promise<void> {
  const payload = Buffer.alloc(spec.size ?? 32, 'm');
  const frameLen = serverFrameLength(Buffer.from([0x81, payload.length]));
  let messages = 0;
  let running = true;
  for (const s of sockets) {
    let got = 0;
    s.on('data', (d: Buffer) => {
      got += d.length;
      while (got >= frameLen) {
        got -= frameLen;
        messages++;
        if (running) s.write(clientFrame(payload));
      }
    });
    s.write(clientFrame(payload));
  }
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, (spec.seconds ?? 5) * 1000));
  running = false;
  report.seconds = (performance.now() - t0) / 1000;
  report.messages = messages;
}

process.once('message', (spec: ClientSpec) => {
  void (async () => {
    const { sockets, report } = await openAll(spec);
    if (spec.mode === 'echo') {
      if (sockets.length > 0) await echo(sockets, spec, report);
      for (const s of sockets) s.destroy();
      send(report);
      process.disconnect();
      return;
    }
    send(report);
    process.once('message', () => {
      for (const s of sockets) s.destroy();
      send({ closed: sockets.length });
      process.disconnect();
    });
  })();
});
