// `edgeway hosts list|get|put|rm` (DESIGN.md "Command line"): the host-entry
// endpoints of a running instance's admin API. Returns what to print; failures
// are CliErrors (the API's own error message, exit 1; usage, exit 2).

import { readFile } from 'node:fs/promises';
import process from 'node:process';
import { parseYaml } from '../config/load.js';
import { isEdgewayError } from '../errors.js';
import { CliError, connect, parseCommand, usageError, type AdminClient } from './admin-client.js';
import { accessText, expiresText, isObject, keyValues, locationsSummary, scalar, table, targetText } from './format.js';

export const HOSTS_USAGE = `  edgeway hosts list [--json]            host entries visible to the token
  edgeway hosts get HOST [--json]        one entry, with version and expires_at
  edgeway hosts put [HOST] --file FILE   create or replace from a JSON or YAML file (- for stdin);
                                         HOST defaults to the file's host
  edgeway hosts rm HOST                  delete an entry`;

type Obj = Record<string, unknown>;

const hostPath = (host: string): string => `/v1/hosts/${encodeURIComponent(host)}`;

/** Fields the API adds to what it returns; dropped from a file so that `get --json` output can be put back as is. */
const READ_ONLY = ['version', 'expires_at', 'certificate'] as const;

export async function hostsCommand(argv: string[]): Promise<string> {
  const { values, positionals } = parseCommand(argv, { file: { type: 'string', short: 'f' } });
  const [action, host, ...extra] = positionals;
  if (extra.length > 0) throw usageError(`unexpected argument ${JSON.stringify(extra[0])}`);
  const needsHost = (): string => {
    if (host === undefined) throw usageError(`hosts ${action} needs a HOST`);
    return host;
  };
  if (values.file !== undefined && action !== 'put') throw usageError('--file goes with hosts put');
  const json = values.json === true;

  switch (action) {
    case 'list': {
      if (host !== undefined) throw usageError(`unexpected argument ${JSON.stringify(host)}`);
      const { body } = await (await connect(values)).ok('GET', '/v1/hosts');
      return json ? asJson(body) : listTable(body);
    }
    case 'get': {
      const h = needsHost();
      const { body } = await (await connect(values)).ok('GET', hostPath(h));
      return json ? asJson(body) : entryView(body);
    }
    case 'put': {
      if (values.file === undefined) throw usageError('hosts put needs --file FILE (or --file - for stdin)');
      const entry = await readEntry(values.file);
      const target = host ?? (typeof entry['host'] === 'string' ? entry['host'] : undefined);
      if (target === undefined) throw usageError('hosts put needs a HOST, or a host in the file');
      return put(await connect(values), target, entry, json);
    }
    case 'rm': {
      const h = needsHost();
      await (await connect(values)).ok('DELETE', hostPath(h));
      return json ? '' : `removed ${h}\n`;
    }
    case undefined:
      throw usageError('hosts needs one of list, get, put, rm');
    default:
      throw usageError(`unknown hosts command ${JSON.stringify(action)} (list, get, put, rm)`);
  }
}

async function put(client: AdminClient, host: string, entry: Obj, json: boolean): Promise<string> {
  const { status, body } = await client.ok('PUT', hostPath(host), entry);
  if (json) return asJson(body);
  const b = isObject(body) ? body : {};
  const lease = typeof b['expires_at'] === 'string' ? `, expires ${expiresText(b['expires_at'])}` : '';
  return `${status === 201 ? 'created' : 'replaced'} ${scalar(b['host'] ?? host)} (version ${scalar(b['version'])}${lease})\n`;
}

export function asJson(body: unknown): string {
  return body === undefined ? '' : `${JSON.stringify(body, null, 2)}\n`;
}

/** One entry from a JSON or YAML file (YAML is a superset of JSON: one parser reads both). */
async function readEntry(file: string): Promise<Obj> {
  const label = file === '-' ? 'stdin' : file;
  let text: string;
  try {
    text = file === '-' ? await readStdin() : await readFile(file, 'utf8');
  } catch (e) {
    throw new CliError(`${label}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, 1);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text, label);
  } catch (e) {
    if (isEdgewayError(e)) throw new CliError(e.message, 1);
    throw e;
  }
  if (!isObject(doc)) throw new CliError(`${label}: expected one host entry (a mapping with locations)`, 1);
  const entry = { ...doc };
  for (const k of READ_ONLY) delete entry[k];
  return entry;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function listTable(body: unknown): string {
  if (!Array.isArray(body)) throw new CliError('the admin API did not answer with a list of entries', 1);
  if (body.length === 0) return 'no host entries\n';
  const rows = body.filter(isObject).map((e) => [
    scalar(e['host']),
    scalar(e['source']),
    accessText(e['access'], 'default'),
    locationsSummary(e['locations']),
    scalar(e['version']),
    expiresText(e['expires_at']),
  ]);
  return table(['host', 'source', 'access', 'locations', 'version', 'expires'], rows);
}

function entryView(body: unknown): string {
  if (!isObject(body)) throw new CliError('the admin API did not answer with an entry', 1);
  const lease = body['lease_ttl_s'] === undefined ? '-' : `${scalar(body['lease_ttl_s'])}s`;
  const expires = typeof body['expires_at'] === 'string' ? `${body['expires_at']} (${expiresText(body['expires_at'])})` : '-';
  const head = keyValues([
    ['host', scalar(body['host'])],
    ['source', scalar(body['source'])],
    ['access', accessText(body['access'], 'default')],
    ['version', scalar(body['version'])],
    ['lease', lease],
    ['expires', expires],
  ]);
  const locations = Array.isArray(body['locations']) ? body['locations'].filter(isObject) : [];
  const rows = locations.map((l) => [scalar(l['path']), targetText(l), accessText(l['access'], '-'), locationOptions(l)]);
  return `${head}\n${table(['path', 'target', 'access', 'options'], rows)}`;
}

function locationOptions(l: Obj): string {
  const out: string[] = [];
  if (l['strip_prefix'] === true) out.push('strip_prefix');
  if (l['timeout_ms'] !== undefined) out.push(`timeout ${scalar(l['timeout_ms'])}ms`);
  if (isObject(l['static']) && l['static']['spa'] === true) out.push('spa');
  return out.length === 0 ? '-' : out.join(', ');
}
