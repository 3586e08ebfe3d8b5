// The scenarios that are not one wrk run per target: (e) idle websockets, (f)
// route churn under load, (h) 1 GiB streamed up and down, (i) websocket echo.
// Each is a list of target names and a function that measures one of them for
// one round; run.ts interleaves them with its wrk scenarios round by round.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { edgewayChurn, measureChurn, nginxChurn, type Churn } from './churn.js';
import type { WrkResult } from './load.js';
import { startCaddy, startEdgeway, startNginxSingle, startNginxTwoStage, type EdgewayTarget, type Target } from './peers.js';
import type { Metric } from './report.js';
import { prepareEdgeway, UC_HOST, type Upstreams } from './setup.js';
import { measureStream } from './stream.js';
import { measureEcho } from './ws-echo.js';
import { measureIdle } from './ws-idle.js';

export interface Extra {
  readonly id: string;
  readonly label: string;
  /** Target names, in the order of round 1. */
  targets: string[];
  /** A small run of the same kind: false (with a line saying why) leaves the target out. */
  probe(name: string): Promise<boolean>;
  run(name: string, round: number): Promise<Metric[]>;
}

export interface ExtraContext {
  readonly dir: string;
  readonly main: readonly Target[];
  readonly upstreams: Upstreams & { readonly mainPort: number; readonly nodePort: number };
  readonly cert: { cert: string; key: string };
  readonly cookies: ReadonlyMap<string, string>;
  readonly say: (s: string) => void;
  /** The (a) load: wrk, uc host, session cookie, c64, for `seconds` or until `stop`. */
  readonly load: (t: Target, seconds: number, stop?: AbortSignal) => Promise<WrkResult>;
}

export interface ExtraSettings {
  readonly seconds: number;
  readonly wsIdle: number;
  readonly wsEcho: number;
  readonly streamBytes: number;
  readonly churnChanges: number;
  readonly churnReloads: number;
  /** Add nginx single-stage and Caddy to (e), (h) and (i) (each (e) run costs ~20-30 s here). */
  readonly allPeers: boolean;
}

/** Open files a process may hold here (soft limit; Node raises it to the hard limit at start, children inherit it). */
export function openFileLimit(): number {
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
  return !m || m[1] === 'unlimited' ? 1 << 20 : Number(m[1]);
}

export function extraScenarios(wanted: ReadonlySet<string>, c: ExtraContext, o: ExtraSettings): Extra[] {
  const byName = new Map(c.main.map((t) => [t.name, t]));
  // edgeway and what it replaces; with allPeers, nginx single-stage and Caddy too.
  const names = c.main.map((t) => t.name).filter((n) => o.allPeers || n.startsWith('edgeway') || n === 'nginx-2stage');
  const cookie = (name: string): string | undefined => c.cookies.get(name) ?? c.cookies.get('edgeway-w1');
  const out: Extra[] = [];
  let n = 0;

  if (wanted.has('e')) {
    // A fresh target per run. A proxy holds two descriptors per websocket; nginx gets worker_connections to match.
    const connections = openFileLimit() - 100;
    const fresh: Record<string, () => Promise<{ t: Target; cookie?: string }>> = {
      'edgeway-w1': async () => {
        const t = await startEdgeway(join(c.dir, `e-${++n}`), { name: 'edgeway-w1', workers: 1, tlsMode: 'self-signed' });
        return { t, cookie: (await prepareEdgeway(t, c.upstreams, 0)).cookie };
      },
      'nginx-2stage': async () => ({ t: await startNginxTwoStage(join(c.dir, `e-${++n}`), c.upstreams.mainPort, c.cert, { nodePort: c.upstreams.nodePort, connections }) }),
      'nginx-1stage': async () => ({ t: await startNginxSingle(join(c.dir, `e-${++n}`), c.upstreams.mainPort, c.cert, { nodePort: c.upstreams.nodePort, connections }) }),
      caddy: async () => ({ t: await startCaddy(join(c.dir, `e-${++n}`), c.upstreams.mainPort, c.cert, { nodePort: c.upstreams.nodePort }) }),
    };
    out.push({
      id: 'e',
      label: `${o.wsIdle.toLocaleString('en-US')} idle TLS websockets: KB of RSS per websocket (fresh target per run)`,
      targets: names.filter((x) => x in fresh),
      probe: async (name) => (await measureIdle(byName.get(name)!, { count: 10, host: UC_HOST, cookie: cookie(name) }, -1, c.say)) !== undefined,
      run: async (name, round) => {
        const { t, cookie: k } = await fresh[name]!();
        try {
          const m = await measureIdle(t, { count: o.wsIdle, host: UC_HOST, ...(k ? { cookie: k } : {}) }, round, c.say);
          return m ? [m] : [];
        } finally {
          await t.stop();
        }
      },
    });
  }

  if (wanted.has('f')) {
    const churnFor = async (t: Target, count: number): Promise<Churn | undefined> =>
      t.name.startsWith('edgeway') ? edgewayChurn(t as EdgewayTarget, c.upstreams, count) : t.reloadWith ? nginxChurn(t, count) : undefined;
    out.push({
      id: 'f',
      label: `(a) c64 load while edgeway takes ${o.churnChanges} admin API host changes, nginx two-stage ${o.churnReloads} config rewrites + reloads`,
      targets: names.filter((x) => x.startsWith('edgeway') || byName.get(x)!.reloadWith),
      probe: async (name) => {
        const t = byName.get(name)!;
        const ch = await churnFor(t, 1);
        const r = ch && (await measureChurn(t, ch, (stop) => c.load(t, 62, stop), 2, -1, c.say));
        const ok = r !== undefined && r[0]!.detail!['changes'] === 1;
        if (!ok) c.say(`(f) ${name}: the probe (one change under 2 s of load) did not go through: left out`);
        return ok;
      },
      run: async (name, round) => {
        const t = byName.get(name)!;
        const ch = (await churnFor(t, t.name.startsWith('edgeway') ? o.churnChanges : o.churnReloads))!;
        return measureChurn(t, ch, (stop) => c.load(t, o.seconds + 60, stop), o.seconds, round, c.say);
      },
    });
  }

  if (wanted.has('h')) {
    out.push({
      id: 'h',
      label: `${(o.streamBytes / 2 ** 20).toLocaleString('en-US')} MiB streamed up (POST) and down (GET) over TLS: MiB/s and RSS growth`,
      targets: names.filter((x) => x !== 'edgeway-w2'),
      probe: async (name) => (await measureStream(byName.get(name)!, { bytes: 1 << 20, host: UC_HOST, cookie: cookie(name) }, -1, c.say)).length === 4,
      run: (name, round) => measureStream(byName.get(name)!, { bytes: o.streamBytes, host: UC_HOST, cookie: cookie(name) }, round, c.say),
    });
  }

  if (wanted.has('i')) {
    const spec = (name: string, seconds: number) => ({ connections: o.wsEcho, seconds, size: 32, host: UC_HOST, cookie: cookie(name) });
    out.push({
      id: 'i',
      label: `websocket echo over TLS, ${o.wsEcho} websockets ping-ponging 32-byte messages: messages/s`,
      targets: names,
      probe: async (name) => (await measureEcho(byName.get(name)!, spec(name, 0.5), -1, c.say)).length > 0,
      run: (name, round) => measureEcho(byName.get(name)!, spec(name, o.seconds), round, c.say),
    });
  }
  return out;
}
