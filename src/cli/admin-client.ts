// The CLI's side of the admin API (DESIGN.md "Command line"): `edgeway hosts …`
// and `edgeway resolve …` talk to a running instance over loopback TCP or the
// unix socket named by the config's `listen.admin` (or `--admin`), with a
// bearer token. Without `--token` or EDGEWAY_TOKEN it mints a short-lived
// platform token from the configured key, the way `edgeway token` does, so an
// operator on the edge VM needs nothing but the config file. The token is sent,
// never printed.

import { existsSync } from 'node:fs';
import { request } from 'node:http';
import process from 'node:process';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ADMIN_SCOPE, signToken } from '../auth/jwt.js';
import { defaultSecretFile, loadJwtKeys } from '../auth/keys.js';
import { loadConfig } from '../config/load.js';
import { parseHostPort } from '../config/schema.js';
import type { Config, ListenAddress } from '../config/types.js';
import { isEdgewayError } from '../errors.js';

/** A failure the CLI reports as `edgeway: <message>` with this exit code (1 runtime, 2 usage/config). */
export class CliError extends Error {
  constructor(message: string, readonly exitCode: 1 | 2) {
    super(message);
    this.name = 'CliError';
  }
}

export const usageError = (message: string): CliError => new CliError(message, 2);

/** Options every admin sub-command takes. */
export const CLIENT_OPTIONS = {
  config: { type: 'string' },
  admin: { type: 'string' },
  token: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean' },
} as const satisfies ParseArgsConfig['options'];

export const CLIENT_OPTIONS_USAGE = `options of hosts and resolve:
  --config FILE    where listen.admin and the key are (default $EDGEWAY_CONFIG or /etc/edgeway/config.yaml)
  --admin ADDR     HOST:PORT, http://HOST:PORT or unix:/path, instead of the config's listen.admin
  --token TOKEN    the bearer token to send (default $EDGEWAY_TOKEN, else a 60 s platform token
                   signed with the configured key)
  --json           print the API's JSON as is (for scripts)`;

/** parseArgs with usage errors as CliError (exit 2). */
export function parseCommand<O extends ParseArgsConfig['options']>(argv: string[], options: O) {
  try {
    return parseArgs({ args: argv, options: { ...CLIENT_OPTIONS, ...options }, strict: true, allowPositionals: true });
  } catch (e) {
    throw usageError((e as Error).message);
  }
}

export type AdminTarget =
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number }
  | { readonly kind: 'unix'; readonly path: string };

/** How an address is named in messages: `127.0.0.1:9900`, `[::1]:9900`, `unix:/run/edgeway/admin.sock`. */
export function describeTarget(t: AdminTarget): string {
  if (t.kind === 'unix') return `unix:${t.path}`;
  return t.host.includes(':') ? `[${t.host}]:${t.port}` : `${t.host}:${t.port}`;
}

/** `--admin`: `unix:/path`, `HOST:PORT` or `http://HOST:PORT[/]`. */
export function parseAdminOption(text: string): AdminTarget {
  if (text.startsWith('unix:')) {
    const path = text.slice('unix:'.length);
    if (path.startsWith('/') && path.length > 1) return { kind: 'unix', path };
  } else {
    let hostPort = text;
    if (/^https?:\/\//i.test(text)) {
      // The admin API speaks plain HTTP (loopback or a unix socket); https here is a mistake.
      const m = /^http:\/\/([^/?#]+)\/?$/i.exec(text);
      hostPort = m === null ? '' : m[1]!;
    }
    const hp = parseHostPort(hostPort);
    if (hp !== undefined && hp.port !== 0) return { kind: 'tcp', host: hp.host, port: hp.port };
  }
  throw usageError(`--admin: expected HOST:PORT, http://HOST:PORT or unix:/absolute/path, got ${JSON.stringify(text)}`);
}

/** The config's `listen.admin` as something to connect to: a wildcard listen address is reached on loopback. */
export function targetFromConfig(listen: ListenAddress, file: string): AdminTarget {
  if (listen.kind === 'unix') return { kind: 'unix', path: listen.path };
  if (listen.port === 0) throw usageError(`${file}: listen.admin has port 0 (any free port); pass --admin with the address edgeway logged`);
  const host = listen.host === '0.0.0.0' ? '127.0.0.1' : listen.host === '::' ? '::1' : listen.host;
  return { kind: 'tcp', host, port: listen.port };
}

async function loadClientConfig(file: string | undefined): Promise<Config> {
  try {
    return await loadConfig(file ?? process.env['EDGEWAY_CONFIG'] ?? '/etc/edgeway/config.yaml');
  } catch (e) {
    if (isEdgewayError(e)) throw new CliError(e.message, 2);
    throw e;
  }
}

const MINTED_TTL_S = 60;

/** A platform token signed with the configured key; fails with a hint when there is no key to sign with. */
async function mintPlatformToken(cfg: Config): Promise<string> {
  const jwt = cfg.auth.jwt;
  const hint = 'pass --token or set EDGEWAY_TOKEN';
  // loadJwtKeys would create a missing default secret; a client must not invent
  // a key the running instance does not have.
  if (jwt.secret === undefined && jwt.secret_file === undefined && jwt.public_key_file === undefined && !existsSync(defaultSecretFile(cfg))) {
    throw new CliError(`cannot sign an admin token: ${defaultSecretFile(cfg)} does not exist (has edgeway run with this config?); ${hint}`, 1);
  }
  try {
    return signToken(await loadJwtKeys(cfg), jwt, { type: 'platform', scope: [ADMIN_SCOPE] }, MINTED_TTL_S);
  } catch (e) {
    throw new CliError(`cannot sign an admin token: ${(e as Error).message}; ${hint}`, 1);
  }
}

/** Reply of the admin API: status and parsed JSON body (undefined when empty, the text when not JSON). */
export interface ApiReply {
  readonly status: number;
  readonly body: unknown;
}

const TIMEOUT_MS = 30_000;
const UNREACHABLE_HINT: Readonly<Record<string, string>> = { ECONNREFUSED: 'is edgeway running?', ENOENT: 'is edgeway running?' };

export class AdminClient {
  constructor(readonly target: AdminTarget, readonly token: string) {}

  /** Any status comes back; only a failure to talk to the API at all throws. */
  call(method: string, path: string, body?: unknown): Promise<ApiReply> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const where = describeTarget(this.target);
    const headers: Record<string, string> = { authorization: `Bearer ${this.token}`, accept: 'application/json' };
    if (payload !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(Buffer.byteLength(payload));
    }
    const at = this.target.kind === 'unix'
      ? { socketPath: this.target.path, host: 'localhost' }
      : { host: this.target.host, port: this.target.port };
    return new Promise((resolve, reject) => {
      const req = request({ ...at, method, path, headers, agent: false, timeout: TIMEOUT_MS }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (err) => reject(new CliError(`the admin API at ${where} broke off its answer (${err.message})`, 1)));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown = text.length === 0 ? undefined : text;
          if (text.length > 0 && /json/i.test(res.headers['content-type'] ?? '')) {
            try {
              parsed = JSON.parse(text) as unknown;
            } catch {
              // kept as text: errorMessage shows it
            }
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
      });
      req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
      req.on('error', (err: NodeJS.ErrnoException) => {
        const code = err.code ?? err.message;
        const hint = UNREACHABLE_HINT[code];
        reject(new CliError(`cannot reach the admin API at ${where} (${code})${hint === undefined ? '' : `: ${hint}`}`, 1));
      });
      req.end(payload);
    });
  }

  /** `call`, with any non-2xx turned into a CliError carrying the API's error (exit 1). */
  async ok(method: string, path: string, body?: unknown): Promise<ApiReply> {
    const reply = await this.call(method, path, body);
    if (reply.status < 200 || reply.status > 299) throw new CliError(errorMessage(reply), 1);
    return reply;
  }
}

/** `404 not_found: no host entry for …`, from the contract's `{ error, message, field? }`. */
export function errorMessage(reply: ApiReply): string {
  const b = reply.body;
  if (typeof b === 'object' && b !== null && typeof (b as { error?: unknown }).error === 'string') {
    const { error, message, field } = b as { error: string; message?: unknown; field?: unknown };
    let text = `${reply.status} ${error}`;
    if (typeof message === 'string') text += `: ${message}`;
    // Field errors usually start with the field already; say it when they do not.
    if (typeof field === 'string' && !(typeof message === 'string' && message.includes(field))) text += ` (field ${field})`;
    return text;
  }
  const text = typeof b === 'string' ? b.trim().slice(0, 200) : '';
  return text.length > 0 ? `${reply.status}: ${text}` : `${reply.status} from the admin API`;
}

/**
 * The client for parsed options: address from `--admin` or the config,
 * token from `--token`, EDGEWAY_TOKEN or minted. The config is read only
 * when one of them needs it.
 */
export async function connect(values: { config?: string | undefined; admin?: string | undefined; token?: string | undefined }): Promise<AdminClient> {
  const given = values.token ?? process.env['EDGEWAY_TOKEN'];
  if (given !== undefined && given.trim() === '') throw usageError('the token given by --token or EDGEWAY_TOKEN is empty');
  const target = values.admin === undefined ? undefined : parseAdminOption(values.admin);
  let cfg: Config | undefined;
  if (target === undefined || given === undefined) cfg = await loadClientConfig(values.config);
  return new AdminClient(
    target ?? targetFromConfig(cfg!.listen.admin, cfg!.config_file),
    given?.trim() ?? (await mintPlatformToken(cfg!)),
  );
}
