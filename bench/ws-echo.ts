// (i) websocket echo over TLS: `connections` websockets through the target to
// the node upstream's echo, each sending a small message and the next one as
// soon as its echo is back (ping-pong), for `seconds`. Reports messages/s
// (round trips) and the target's CPU µs per message (/proc, its process tree).
// The client is a forked process (bench/ws-client.ts).

import { cpuSeconds, processTree } from './load.js';
import type { Target } from './peers.js';
import type { Metric } from './report.js';
import { startClient } from './ws-idle.js';

export interface EchoSpec {
  readonly connections: number;
  readonly seconds: number;
  readonly size: number;
  readonly host: string;
  readonly cookie?: string;
}

export async function measureEcho(t: Target, spec: EchoSpec, round: number, say: (s: string) => void): Promise<Metric[]> {
  const pids = processTree(t.pids);
  const client = startClient({
    mode: 'echo', port: t.httpsPort, host: spec.host, path: '/ws', count: spec.connections, concurrency: 16,
    seconds: spec.seconds, size: spec.size, ...(spec.cookie ? { cookie: spec.cookie } : {}),
  });
  // CPU is read around the whole client run (opening included: 64 handshakes, small next to the echo).
  const cpu0 = cpuSeconds(pids);
  const r = await client.report;
  const cpu1 = cpuSeconds(pids);
  await client.close();
  if (r.opened === 0 || !r.messages || !r.seconds) {
    say(`(i) ${t.name}: ${r.opened === 0 ? `no websocket opened (${r.error ?? '?'})` : 'no echo came back'}: no figure`);
    return [];
  }
  if (r.failed > 0) say(`(i) ${t.name}: ${r.failed} of ${spec.connections} websockets failed to open (first: ${r.error})`);
  const detail = { connections: r.opened, messages: r.messages, seconds: Math.round(r.seconds * 100) / 100 };
  return [
    { scenario: 'i', target: t.name, round, name: 'msg/s', value: Math.round(r.messages / r.seconds), better: 'higher', detail },
    { scenario: 'i', target: t.name, round, name: 'CPU µs/msg', value: Math.round(((cpu1 - cpu0) * 1e6 * 100) / r.messages) / 100, better: 'lower', detail },
  ];
}
