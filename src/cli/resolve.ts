// `edgeway resolve URL [--sni NAME]` (DESIGN.md "Command line"): asks a running
// instance which entry and location a URL reaches and why (`GET /v1/resolve`).
// The readable form is the answer as `key: value` lines (nested objects as
// dotted keys), except that the matched entry, which the API returns whole,
// is summed up on one line (`hosts get` shows it in full); a field the API adds
// later shows up without a change here. `--json` prints the answer as is.
// A URL that would get 404 or 421 is an answer, not a failure: exit 0, with
// `decision`, `status` and `reason` saying why.

import { connect, parseCommand, usageError } from './admin-client.js';
import { expiresText, flatten, isObject, keyValues, scalar } from './format.js';
import { asJson } from './hosts.js';

export const RESOLVE_USAGE = `  edgeway resolve URL [--sni NAME] [--json]
                                         which entry and location URL reaches, and why (or why 404/421);
                                         --sni: the TLS server name, when it differs from the URL's host`;

export async function resolveCommand(argv: string[]): Promise<string> {
  const { values, positionals } = parseCommand(argv, { sni: { type: 'string' } });
  if (positionals.length !== 1 || positionals[0] === '') throw usageError('resolve needs exactly one URL');
  let path = `/v1/resolve?url=${encodeURIComponent(positionals[0]!)}`;
  if (values.sni !== undefined) path += `&sni=${encodeURIComponent(values.sni)}`;
  const { body } = await (await connect(values)).ok('GET', path);
  return values.json === true ? asJson(body) : resolveView(body);
}

function resolveView(body: unknown): string {
  if (!isObject(body)) return keyValues(flatten(body));
  const pairs: [string, string][] = [];
  for (const [k, v] of Object.entries(body)) {
    if (k === 'entry' && isObject(v)) pairs.push(['entry', entrySummary(v)]);
    else pairs.push(...flatten({ [k]: v }));
  }
  return keyValues(pairs);
}

/** `org-….example.test (version 3; expires in 25s)`; how it matched is in `reason`. */
function entrySummary(e: Record<string, unknown>): string {
  const details = e['version'] === undefined ? [] : [`version ${scalar(e['version'])}`];
  if (typeof e['expires_at'] === 'string') details.push(`expires ${expiresText(e['expires_at'])}`);
  return `${scalar(e['host'])}${details.length === 0 ? '' : ` (${details.join('; ')})`}`;
}
