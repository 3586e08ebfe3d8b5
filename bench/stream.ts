// (h) one large body streamed through the target, up (POST, the node upstream
// discards it and answers {"bytes": n}) and down (GET, the node upstream sends
// n bytes). The client is this process (node:https, one reused 1 MiB buffer,
// backpressure honoured); every byte is counted on the far side. Reports MiB/s
// and the RSS growth of the target's process tree: the highest RSS sampled
// every 100 ms during the transfer minus the RSS just before it.

import https from 'node:https';
import { memoryKb, processTree } from './load.js';
import type { Target } from './peers.js';
import type { Metric } from './report.js';

export interface StreamSpec {
  readonly bytes: number;
  readonly host: string;
  readonly cookie?: string;
}

const CHUNK = Buffer.alloc(1 << 20, 'u');

/** Resolves with the bytes the far side saw; rejects on a non-200 or a socket error. */
function transfer(t: Target, spec: StreamSpec, dir: 'up' | 'down'): Promise<number> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { host: spec.host };
    if (spec.cookie) headers['cookie'] = `edgeway_token=${spec.cookie}`;
    if (dir === 'up') headers['content-length'] = spec.bytes;
    const req = https.request(
      {
        host: '127.0.0.1', port: t.httpsPort, servername: spec.host, rejectUnauthorized: false, agent: false,
        method: dir === 'up' ? 'POST' : 'GET', path: dir === 'up' ? '/stream/up' : `/stream/down?bytes=${spec.bytes}`, headers,
      },
      (res) => {
        let n = 0;
        let text = '';
        res.on('data', (d: Buffer) => {
          n += d.length;
          if (dir === 'up' && text.length < 4096) text += d.toString();
        });
        res.on('end', () => {
          if (res.statusCode !== 200) return reject(new Error(`answered ${res.statusCode}: ${text.slice(0, 200)}`));
          resolve(dir === 'down' ? n : Number((JSON.parse(text) as { bytes: number }).bytes));
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (dir === 'down') return void req.end();
    let left = spec.bytes;
    const pump = (): void => {
      while (left > 0) {
        const n = Math.min(left, CHUNK.length);
        left -= n;
        if (!req.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) return void req.once('drain', pump);
      }
      req.end();
    };
    pump();
  });
}

export async function measureStream(t: Target, spec: StreamSpec, round: number, say: (s: string) => void): Promise<Metric[]> {
  const out: Metric[] = [];
  for (const dir of ['up', 'down'] as const) {
    const pids = processTree(t.pids);
    const before = memoryKb(pids).rss_kb;
    let peak = before;
    const sampler = setInterval(() => (peak = Math.max(peak, memoryKb(pids).rss_kb)), 100);
    const t0 = performance.now();
    try {
      const seen = await transfer(t, spec, dir);
      const s = (performance.now() - t0) / 1000;
      if (seen !== spec.bytes) {
        say(`(h) ${t.name} ${dir}: the far side saw ${seen} of ${spec.bytes} bytes: no figure`);
        continue;
      }
      peak = Math.max(peak, memoryKb(pids).rss_kb);
      const detail = { bytes: spec.bytes, seconds: Math.round(s * 100) / 100, rss_before_kib: before, rss_peak_kib: peak };
      out.push({ scenario: 'h', target: t.name, round, name: `${dir} MiB/s`, value: Math.round((spec.bytes / 2 ** 20 / s) * 10) / 10, better: 'higher', detail });
      out.push({ scenario: 'h', target: t.name, round, name: `${dir} RSS growth MiB`, value: Math.round(((peak - before) / 1024) * 10) / 10, better: 'lower', ratio: false, detail });
    } catch (e) {
      say(`(h) ${t.name} ${dir}: failed (${(e as Error).message}): no figure`);
    } finally {
      clearInterval(sampler);
    }
  }
  return out;
}
