// `edgeway certs` (issue 5): GET /v1/certs of a running instance as a table,
// one row per certificate: names, state, issuer, not-after, and the last
// error when an order failed (ACME mode), so an operator sees at a glance
// which org is still pending and why. `--json` prints the answer as is.

import { connect, parseCommand, usageError } from './admin-client.js';
import { clean, expiresText, isObject, scalar, table } from './format.js';
import { asJson } from './hosts.js';

export const CERTS_USAGE = `  edgeway certs [--json]                 certificates: names, state, issuer, not-after, last error`;

export async function certsCommand(argv: string[]): Promise<string> {
  const { values, positionals } = parseCommand(argv, {});
  if (positionals.length > 0) throw usageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
  const { body } = await (await connect(values)).ok('GET', '/v1/certs');
  return values.json === true ? asJson(body) : certsTable(body);
}

function certsTable(body: unknown): string {
  const rows = (Array.isArray(body) ? body : []).filter(isObject).map((c) => {
    const names = Array.isArray(c['names']) ? c['names'].map(scalar).join(',') : '';
    const err = isObject(c['last_error']) ? `${scalar(c['last_error']['code'])}: ${scalar(c['last_error']['message'])}` : '-';
    const notAfter = typeof c['not_after'] === 'string' ? `${c['not_after']} (${expiresText(c['not_after'])})` : '-';
    return [names, scalar(c['state']), c['issuer'] == null ? '-' : scalar(c['issuer']), notAfter, clean(err)];
  });
  if (rows.length === 0) return 'no certificates\n';
  return table(['NAMES', 'STATE', 'ISSUER', 'NOT AFTER', 'LAST ERROR'], rows);
}
