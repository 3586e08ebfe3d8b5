// edgeway's command line (DESIGN.md "Command line"): `edgeway --config FILE`
// runs the appliance; `edgeway token …` mints a development token with the
// configured key; `edgeway hosts …` and `edgeway resolve …` talk to a running
// instance's admin API. Exit codes: 0 done (or clean stop), 1 runtime failure
// (including an error answer from the admin API), 2 bad configuration or
// usage (contract: unknown keys and bad values exit 2).

import cluster from 'node:cluster';
import process from 'node:process';
import { parseArgs } from 'node:util';
import { tokenCommand, TOKEN_USAGE } from './token.js';
import { CLIENT_OPTIONS_USAGE, CliError } from './admin-client.js';
import { hostsCommand, HOSTS_USAGE } from './hosts.js';
import { resolveCommand, RESOLVE_USAGE } from './resolve.js';
import { certsCommand, CERTS_USAGE } from './certs.js';
import { loadConfig } from '../config/load.js';
import type { Config } from '../config/types.js';
import { isEdgewayError } from '../errors.js';
// The appliance, its workers and the logger are imported only by the commands
// that run them: `edgeway hosts …` then starts in half the time.

/** Signals that arrived before the appliance was up (see src/main.ts). */
export interface EarlySignals {
  readonly received: readonly NodeJS.Signals[];
  readonly listener: (s: NodeJS.Signals) => void;
}

const SIGNALS: readonly NodeJS.Signals[] = ['SIGHUP', 'SIGTERM', 'SIGINT'];

const USAGE = `usage:
  edgeway [run] --config FILE            run the appliance
${HOSTS_USAGE}
${RESOLVE_USAGE}
${CERTS_USAGE}
  edgeway token --config FILE …          sign a development token with the configured key

${CLIENT_OPTIONS_USAGE}

${TOKEN_USAGE}
`;

const DEFAULT_CONFIG = process.env['EDGEWAY_CONFIG'] ?? '/etc/edgeway/config.yaml';

function fail(message: string, code: number): never {
  process.stderr.write(`edgeway: ${message}\n`);
  process.exit(code);
}

async function config(file: string | undefined): Promise<Config> {
  try {
    return await loadConfig(file ?? DEFAULT_CONFIG);
  } catch (err) {
    if (isEdgewayError(err)) fail(err.message, 2);
    throw err;
  }
}

async function run(file: string | undefined, early: EarlySignals): Promise<void> {
  const cfg = await config(file);
  const [{ createLogger }, { startAppliance }, { startPrimary }] = await Promise.all([
    import('../log.js'),
    import('../appliance.js'),
    import('../cluster/primary.js'),
  ]);
  const log = createLogger(cfg.log.level);
  let app: { addresses: object; banner: readonly string[]; reload(): Promise<void>; stop(): Promise<boolean> };
  try {
    app =
      cfg.workers > 1
        ? await startPrimary(cfg, log, process.argv.slice(2))
        : await startAppliance(cfg, log);
  } catch (err) {
    if (isEdgewayError(err) && (err.code === 'CONFIG_INVALID' || err.code === 'ROUTES_INVALID')) fail(err.message, 2);
    log.fatal({ err }, 'edgeway failed to start');
    fail((err as Error).message, 1);
  }
  log.info({ ...app.addresses, domain: cfg.domain, workers: cfg.workers }, 'edgeway listening');
  for (const line of app.banner) log.info(line);

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'draining');
    app.stop().then(
      (clean) => {
        log.info({ clean }, 'stopped');
        process.exit(0);
      },
      (err: unknown) => {
        log.error({ err }, 'stop failed');
        process.exit(1);
      },
    );
  };
  const reload = (): void => {
    app.reload().then(
      () => log.info('reloaded configuration, routes and certificates'),
      (err: unknown) => log.error({ err: (err as Error).message }, 'reload refused; the running configuration stays'),
    );
  };
  for (const s of SIGNALS) process.off(s, early.listener);
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', reload);
  // A stop asked for during start-up wins; a reload asked for then is done now
  // (the files may have changed after they were read).
  const asked = early.received;
  if (asked.includes('SIGTERM') || asked.includes('SIGINT')) stop(asked.includes('SIGTERM') ? 'SIGTERM' : 'SIGINT');
  else if (asked.includes('SIGHUP')) reload();
}

export async function main(argv: string[], early: EarlySignals): Promise<void> {
  if (!cluster.isPrimary) {
    for (const s of SIGNALS) process.off(s, early.listener);
    const { runWorker } = await import('../cluster/worker.js');
    return runWorker(early.received);
  }
  const sub = argv[0] !== undefined && !argv[0].startsWith('-') ? argv[0] : 'run';
  const rest = sub === 'run' && argv[0] !== 'run' ? argv : argv.slice(1);
  const { values, tokens } = parseArgs({ args: rest, options: { config: { type: 'string' }, help: { type: 'boolean' } }, strict: false, tokens: true });
  if (values.help === true) return void process.stdout.write(USAGE);
  const file = typeof values.config === 'string' ? values.config : undefined;
  switch (sub) {
    case 'run': {
      const unknown = tokens.filter((t) => t.kind === 'option' && t.name !== 'config');
      if (unknown.length > 0) fail(`unknown option --${(unknown[0] as { name: string }).name}\n${USAGE}`, 2);
      // `edgeway --config F hosts list` would otherwise start an appliance.
      const stray = tokens.find((t) => t.kind === 'positional');
      if (stray !== undefined) fail(`unexpected argument ${JSON.stringify((stray as { value: string }).value)} (the command comes first: edgeway hosts list --config FILE)\n${USAGE}`, 2);
      return run(file, early);
    }
    case 'token': {
      const cfg = await config(file);
      const args = removeConfigArg(rest);
      try {
        process.stdout.write(`${await tokenCommand(args, cfg)}\n`);
      } catch (err) {
        // Its usage errors carry TOKEN_USAGE already.
        fail((err as Error).message, 2);
      }
      return;
    }
    case 'hosts':
      return client(() => hostsCommand(rest));
    case 'resolve':
      return client(() => resolveCommand(rest));
    case 'certs':
      return client(() => certsCommand(rest));
    default:
      fail(`unknown command ${sub}\n${USAGE}`, 2);
  }
}

/** Runs an admin API command: its output on stdout, a CliError as `edgeway: …` with its exit code. */
async function client(command: () => Promise<string>): Promise<void> {
  try {
    process.stdout.write(await command());
  } catch (err) {
    if (!(err instanceof CliError)) throw err;
    fail(err.exitCode === 2 ? `${err.message}\n${USAGE}` : err.message, err.exitCode);
  }
}

function removeConfigArg(args: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--config') i++;
    else if (!a.startsWith('--config=')) out.push(a);
  }
  return out;
}

