// Summaries, ratios, the printed table, the JSON results file and a small
// hand-written SVG bar chart (no dependencies).

export interface Sample {
  readonly scenario: string;
  readonly target: string;
  readonly round: number;
  readonly requests: number;
  readonly rps: number;
  readonly p50_ms: number;
  readonly p99_ms: number;
  readonly cpu_us_per_req: number;
  /** Sum of VmHWM over the target's process tree after this round (KiB). */
  readonly hwm_kb: number;
  readonly rss_kb: number;
  readonly errors: number;
  readonly non_2xx_3xx: number;
}

export interface Summary {
  readonly scenario: string;
  readonly target: string;
  readonly rounds: number;
  readonly rps: number;
  readonly p50_ms: number;
  readonly p99_ms: number;
  readonly cpu_us_per_req: number;
  readonly peak_rss_mb: number;
  readonly errors: number;
  readonly non_2xx_3xx: number;
}

/**
 * One figure from a scenario that is not a wrk run ((e), (f), (h), (i)): e.g.
 * KB per idle websocket, failed requests, MiB/s. One per round.
 */
export interface Metric {
  readonly scenario: string;
  readonly target: string;
  readonly round: number;
  /** Short name, e.g. `KB/ws`, `failed`, `up MiB/s`. */
  readonly name: string;
  readonly value: number;
  /** Which way is better, for the ratio's reading and the chart. */
  readonly better: 'lower' | 'higher';
  /** false: no edgeway/peer ratio (counts such as failed requests, where 0 is the goal). */
  readonly ratio?: false;
  /** Whatever else the run saw (counts, RSS before and after, …). */
  readonly detail?: Record<string, number | string>;
}

export interface MetricSummary {
  readonly scenario: string;
  readonly target: string;
  readonly name: string;
  readonly better: 'lower' | 'higher';
  readonly rounds: number;
  readonly value: Spread;
}

export interface Spread {
  readonly median: number;
  readonly min: number;
  readonly max: number;
}

export interface Ratio {
  readonly scenario: string;
  readonly target: string;
  readonly versus: string;
  /** target / versus, paired per round. rps > 1 is better; p99 and cpu < 1 are better. */
  readonly rps: Spread;
  readonly p99: Spread;
  readonly cpu: Spread;
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const r2 = (n: number): number => Math.round(n * 100) / 100;
const r3 = (n: number): number => Math.round(n * 1000) / 1000;

export function summarize(samples: readonly Sample[]): Summary[] {
  const keys = [...new Set(samples.map((s) => `${s.scenario}\u0000${s.target}`))];
  return keys.map((k) => {
    const [scenario, target] = k.split('\u0000') as [string, string];
    const ss = samples.filter((s) => s.scenario === scenario && s.target === target);
    return {
      scenario,
      target,
      rounds: ss.length,
      rps: Math.round(median(ss.map((s) => s.rps))),
      p50_ms: r3(median(ss.map((s) => s.p50_ms))),
      p99_ms: r3(median(ss.map((s) => s.p99_ms))),
      cpu_us_per_req: r2(median(ss.map((s) => s.cpu_us_per_req))),
      peak_rss_mb: r2(Math.max(...ss.map((s) => s.hwm_kb)) / 1024),
      errors: ss.reduce((a, s) => a + s.errors, 0),
      non_2xx_3xx: ss.reduce((a, s) => a + s.non_2xx_3xx, 0),
    };
  });
}

function spread(xs: number[]): Spread {
  return { median: r3(median(xs)), min: r3(Math.min(...xs)), max: r3(Math.max(...xs)) };
}

/** target/versus for each pair, per round then median and range. */
export function ratios(samples: readonly Sample[], pairs: readonly { scenario: string; target: string; versus: string }[]): Ratio[] {
  const out: Ratio[] = [];
  for (const p of pairs) {
    const a = samples.filter((s) => s.scenario === p.scenario && s.target === p.target);
    const b = samples.filter((s) => s.scenario === p.scenario && s.target === p.versus);
    const rounds = a.map((s) => [s, b.find((x) => x.round === s.round)] as const).filter((x) => x[1] !== undefined);
    if (rounds.length === 0) continue;
    out.push({
      ...p,
      rps: spread(rounds.map(([x, y]) => x.rps / y!.rps)),
      p99: spread(rounds.map(([x, y]) => x.p99_ms / y!.p99_ms)),
      cpu: spread(rounds.map(([x, y]) => x.cpu_us_per_req / y!.cpu_us_per_req)),
    });
  }
  return out;
}

const key = (m: { scenario: string; target: string; name: string }): string => `${m.scenario}\u0000${m.target}\u0000${m.name}`;

export function summarizeMetrics(ms: readonly Metric[]): MetricSummary[] {
  const groups = new Map<string, Metric[]>();
  for (const m of ms) groups.set(key(m), [...(groups.get(key(m)) ?? []), m]);
  return [...groups.values()].map((g) => ({
    scenario: g[0]!.scenario,
    target: g[0]!.target,
    name: g[0]!.name,
    better: g[0]!.better,
    rounds: g.length,
    value: spread(g.map((m) => m.value)),
  }));
}

export interface MetricRatio {
  readonly scenario: string;
  readonly name: string;
  readonly target: string;
  readonly versus: string;
  readonly ratio: Spread;
}

/** target/versus of every metric both have, paired per round (rounds where the peer's value is 0 are left out). */
export function metricRatios(ms: readonly Metric[], pairs: readonly { scenario: string; target: string; versus: string }[]): MetricRatio[] {
  const out: MetricRatio[] = [];
  for (const p of pairs) {
    const names = [...new Set(ms.filter((m) => m.scenario === p.scenario && m.target === p.target && m.ratio !== false).map((m) => m.name))];
    for (const name of names) {
      const xs: number[] = [];
      for (const a of ms.filter((m) => m.scenario === p.scenario && m.target === p.target && m.name === name)) {
        const b = ms.find((m) => m.scenario === p.scenario && m.target === p.versus && m.name === name && m.round === a.round);
        if (b && b.value !== 0) xs.push(a.value / b.value);
      }
      if (xs.length > 0) out.push({ scenario: p.scenario, name, target: p.target, versus: p.versus, ratio: spread(xs) });
    }
  }
  return out;
}

const num = (n: number): string => (Math.abs(n) >= 100 || Number.isInteger(n) ? String(Math.round(n)) : n.toFixed(2));

export function metricTable(sums: readonly MetricSummary[], rs: readonly MetricRatio[]): string {
  const lines = [[pad('scenario', 10), pad('target', 18), pad('figure', 30), pad('median [min–max] over rounds', 30), 'rounds'].join(' ')];
  for (const s of sums) {
    const v = s.value;
    lines.push([pad(s.scenario, 10), pad(s.target, 18), pad(`${s.name} (${s.better} is better)`, 30), pad(`${num(v.median)} [${num(v.min)}–${num(v.max)}]`, 30), String(s.rounds)].join(' '));
  }
  if (rs.length > 0) {
    lines.push('', 'ratios (target / versus, paired per round: median [min–max])');
    for (const r of rs) lines.push([pad(r.scenario, 10), pad(r.target, 18), pad(r.versus, 18), pad(r.name, 30), `${r.ratio.median.toFixed(2)} [${r.ratio.min.toFixed(2)}–${r.ratio.max.toFixed(2)}]`].join(' '));
  }
  return lines.join('\n');
}

function pad(s: string, n: number, right = false): string {
  return right ? s.padStart(n) : s.padEnd(n);
}

export function table(summaries: readonly Summary[], rs: readonly Ratio[]): string {
  const lines: string[] = [];
  const head = ['scenario', 'target', 'req/s', 'p50 ms', 'p99 ms', 'CPU µs/req', 'peak RSS MB', 'errors', 'non-2xx/3xx'];
  const w = [10, 18, 9, 8, 8, 11, 12, 7, 12];
  lines.push(head.map((h, i) => pad(h, w[i]!, i > 1)).join(' '));
  for (const s of summaries) {
    const row = [s.scenario, s.target, String(s.rps), s.p50_ms.toFixed(2), s.p99_ms.toFixed(2), s.cpu_us_per_req.toFixed(1), s.peak_rss_mb.toFixed(1), String(s.errors), String(s.non_2xx_3xx)];
    lines.push(row.map((c, i) => pad(c, w[i]!, i > 1)).join(' '));
  }
  lines.push('');
  lines.push('ratios (target / versus, paired per round: median [min–max]; req/s > 1 and p99, CPU < 1 favour the target)');
  const f = (x: Spread): string => `${x.median.toFixed(2)} [${x.min.toFixed(2)}–${x.max.toFixed(2)}]`;
  lines.push([pad('scenario', 10), pad('target', 18), pad('versus', 18), pad('req/s', 18), pad('p99', 18), pad('CPU/req', 18)].join(' '));
  for (const r of rs) lines.push([pad(r.scenario, 10), pad(r.target, 18), pad(r.versus, 18), pad(f(r.rps), 18), pad(f(r.p99), 18), pad(f(r.cpu), 18)].join(' '));
  return lines.join('\n');
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

const COLORS: Record<string, string> = {
  'edgeway-w1': '#1f77b4',
  'edgeway-w2': '#6baed6',
  'nginx-2stage': '#d62728',
  'nginx-1stage': '#ff9896',
  caddy: '#2ca02c',
  'edgeway-10hosts': '#1f77b4',
  'edgeway-100khosts': '#9467bd',
};

/** Horizontal bars of median req/s, one block per scenario, each scaled to its own maximum. */
export function svg(summaries: readonly Summary[], title: string, labels: Record<string, string>, metrics: readonly MetricSummary[] = []): string {
  const scenarios = [...new Set(summaries.map((s) => s.scenario))];
  const W = 860;
  const left = 150;
  const barH = 16;
  const gap = 4;
  const chartW = W - left - 200;
  let y = 44;
  const parts: string[] = [];
  parts.push(`<text x="10" y="24" font-size="15" font-weight="bold">${esc(title)}</text>`);
  for (const sc of scenarios) {
    const rows = summaries.filter((s) => s.scenario === sc);
    const max = Math.max(...rows.map((r) => r.rps), 1);
    parts.push(`<text x="10" y="${y + 12}" font-size="13" font-weight="bold">${esc(`(${sc}) ${labels[sc] ?? ''}`)}</text>`);
    y += 20;
    for (const r of rows) {
      const w = Math.max(1, Math.round((r.rps / max) * chartW));
      const color = COLORS[r.target] ?? '#7f7f7f';
      parts.push(`<text x="${left - 6}" y="${y + barH - 4}" font-size="12" text-anchor="end">${esc(r.target)}</text>`);
      parts.push(`<rect x="${left}" y="${y}" width="${w}" height="${barH}" fill="${color}"/>`);
      parts.push(
        `<text x="${left + w + 6}" y="${y + barH - 4}" font-size="11">${r.rps.toLocaleString('en-US')} req/s · p99 ${r.p99_ms.toFixed(1)} ms · ${r.cpu_us_per_req.toFixed(0)} µs CPU</text>`,
      );
      y += barH + gap;
    }
    y += 12;
  }
  // Other figures: one block per (scenario, figure), bars of the median scaled to the block's maximum.
  for (const id of [...new Set(metrics.map((m) => `${m.scenario}\u0000${m.name}`))]) {
    const rows = metrics.filter((m) => `${m.scenario}\u0000${m.name}` === id);
    const { scenario, name, better } = rows[0]!;
    const max = Math.max(...rows.map((r) => r.value.median), 1e-9);
    parts.push(`<text x="10" y="${y + 12}" font-size="13" font-weight="bold">${esc(`(${scenario}) ${name}, ${better} is better — ${labels[scenario] ?? ''}`)}</text>`);
    y += 20;
    for (const r of rows) {
      const w = Math.max(1, Math.round((r.value.median / max) * chartW));
      parts.push(`<text x="${left - 6}" y="${y + barH - 4}" font-size="12" text-anchor="end">${esc(r.target)}</text>`);
      parts.push(`<rect x="${left}" y="${y}" width="${w}" height="${barH}" fill="${COLORS[r.target] ?? '#7f7f7f'}"/>`);
      parts.push(`<text x="${left + w + 6}" y="${y + barH - 4}" font-size="11">${esc(`${num(r.value.median)} ${name} [${num(r.value.min)}–${num(r.value.max)}]`)}</text>`);
      y += barH + gap;
    }
    y += 12;
  }
  const H = y + 10;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
${parts.join('\n')}
</svg>
`;
}
