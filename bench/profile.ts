// `npm run bench:profile`: where edgeway's CPU goes on the hot path (issue 4,
// "Profile (--cpu-prof)"). Starts the bench upstream and one edgeway
// (`workers: 1`, node --cpu-prof), registers a public org host, drives it with
// wrk (TLS keep-alive GET, c64) and prints the functions with the most self
// time from the profile Node writes at exit. The profile file is kept in
// bench/results/ for Chrome DevTools / speedscope.
//
//   PROFILE_SECONDS (10), PROFILE_FORWARDER (lean | undici), PROFILE_TOP (25)

import { readFileSync, readdirSync, renameSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { signToken } from '../src/auth/jwt.js';
import { loadJwtKeys } from '../src/auth/keys.js';
import { loadConfig } from '../src/config/load.js';
import { runWrk } from './load.js';
import { startEdgeway, startUpstream, stopAll, which } from './peers.js';

interface ProfileNode {
  readonly id: number;
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number };
}
interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

/** Self time per function, as shares of all samples (idle included, so native writes and waiting show). */
export function selfTimes(p: CpuProfile): { name: string; share: number }[] {
  const frames = new Map(p.nodes.map((n) => [n.id, n.callFrame]));
  const byName = new Map<string, number>();
  let total = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const cf = frames.get(p.samples[i]!)!;
    const where = cf.url === '' ? '' : ` ${cf.url.split('/').slice(-2).join('/')}:${cf.lineNumber + 1}`;
    const name = `${cf.functionName === '' ? '(anonymous)' : cf.functionName}${where}`;
    const dt = p.timeDeltas[i] ?? 0;
    byName.set(name, (byName.get(name) ?? 0) + dt);
    total += dt;
  }
  return [...byName].map(([name, t]) => ({ name, share: t / total })).sort((a, b) => b.share - a.share);
}

const ORG_HOST = 'org-7f3a0000-0000-4000-8000-000000000002.localhost';
const seconds = Number(process.env['PROFILE_SECONDS'] ?? 10);
const forwarder = process.env['PROFILE_FORWARDER'] === 'undici' ? 'undici' : 'lean';
const top = Number(process.env['PROFILE_TOP'] ?? 25);

const wrk = which('wrk');
if (wrk === undefined) {
  console.log('wrk is not installed (apt-get install wrk): nothing to profile');
  process.exit(0);
}
const dir = await mkdtemp(join(os.tmpdir(), 'edgeway-profile-'));
try {
  const up = await startUpstream(join(dir, 'upstream'));
  const profDir = join(dir, 'prof');
  const e = await startEdgeway(join(dir, 'edgeway'), { name: 'edgeway-w1', workers: 1, tlsMode: 'self-signed', forwarder, nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${profDir}`] });
  const cfg = await loadConfig(e.configFile);
  const token = signToken(await loadJwtKeys(cfg), cfg.auth.jwt, { type: 'platform', scope: ['edge:admin'] }, 600);
  const put = await fetch(`${e.adminUrl}/v1/hosts/${ORG_HOST}`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ host: ORG_HOST, access: 'public', locations: [{ path: '/', upstream: `http://127.0.0.1:${up.port}` }] }),
  });
  if (put.status !== 201) throw new Error(`PUT ${ORG_HOST}: ${put.status} ${await put.text()}`);
  const r = await runWrk(wrk, { url: `https://127.0.0.1:${e.httpsPort}/`, headers: { Host: ORG_HOST }, connections: 64, seconds });
  console.log(`forwarder ${forwarder}, ${seconds} s, c64: ${Math.round(r.rps)} req/s, p50 ${r.p50_ms} ms, p99 ${r.p99_ms} ms`);
  // A profile of error answers says nothing about the forwarding path.
  if (r.non_2xx_3xx > 0 || r.errors > 0) throw new Error(`${r.non_2xx_3xx} non-2xx/3xx answers and ${r.errors} socket errors: not profiling that`);
  await stopAll(); // SIGTERM: edgeway drains and Node writes the profile on exit
  const file = readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
  if (file === undefined) throw new Error('no .cpuprofile was written');
  const kept = join('bench', 'results', `profile-${forwarder}.cpuprofile`);
  renameSync(join(profDir, file), kept);
  console.log(`self time (share of all samples; "(idle)" is waiting for I/O; writev/writeLatin1String/writeBuffer are native socket and TLS writes):`);
  for (const { name, share } of selfTimes(JSON.parse(readFileSync(kept, 'utf8')) as CpuProfile).slice(0, top)) {
    console.log(`${(share * 100).toFixed(1).padStart(6)}%  ${name}`);
  }
  console.log(`profile: ${kept}`);
} finally {
  await stopAll();
  await rm(dir, { recursive: true, force: true });
}
