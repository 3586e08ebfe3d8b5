// `edgeway token` (DESIGN.md "Command line"): signs a token with the configured
// secret, for development and tests. It loads the keys the way the running
// appliance does, so with the default config it creates, or reuses, the same
// `<data_dir>/jwt.secret` and its tokens verify against that instance.

import { parseArgs } from 'node:util';
import type { Config } from '../config/types.js';
import { ADMIN_SCOPE, signToken, type TokenClaims } from '../auth/jwt.js';
import { loadJwtKeys } from '../auth/keys.js';
import { isUuid } from '../hosts/hostname.js';
import { parseCidr } from '../admin/upstream-policy.js';

export const TOKEN_USAGE = `usage: edgeway token (--platform | --org ORG_ID [--allowed-upstream CIDR]... | --user USER_ID [--scope SCOPE]...) [--ttl SECONDS]
  --platform              a platform token (scope edge:admin): may manage anything
  --org ORG_ID            an organization token for that org (a UUID)
  --allowed-upstream CIDR with --org: limit the org's upstreams (repeatable)
  --user USER_ID          a user token with that subject
  --scope SCOPE           with --user: a scope, e.g. org:<org_id>:member (repeatable)
  --ttl SECONDS           lifetime, default 3600`;

const DEFAULT_TTL_S = 3600;
const DIGITS = /^[1-9]\d{0,9}$/;

function usage(problem: string): Error {
  return new Error(`${problem}\n${TOKEN_USAGE}`);
}

const OPTIONS = {
  platform: { type: 'boolean' },
  org: { type: 'string' },
  'allowed-upstream': { type: 'string', multiple: true },
  user: { type: 'string' },
  scope: { type: 'string', multiple: true },
  ttl: { type: 'string' },
  // main may pass its own --config through; it is already loaded into `cfg`.
  config: { type: 'string' },
} as const;

/** Claims and lifetime from the arguments after `token`; throws a usage Error. */
export function parseTokenArgs(argv: string[]): { claims: TokenClaims; ttl: number } {
  let values;
  try {
    ({ values } = parseArgs({ args: argv, options: OPTIONS, strict: true, allowPositionals: false }));
  } catch (e) {
    throw usage((e as Error).message);
  }

  const kinds = [values.platform === true, values.org !== undefined, values.user !== undefined].filter(Boolean).length;
  if (kinds !== 1) throw usage('give exactly one of --platform, --org, --user');
  if (values['allowed-upstream'] !== undefined && values.org === undefined) throw usage('--allowed-upstream goes with --org');
  if (values.scope !== undefined && values.user === undefined) throw usage('--scope goes with --user');

  let ttl = DEFAULT_TTL_S;
  if (values.ttl !== undefined) {
    if (!DIGITS.test(values.ttl)) throw usage('--ttl must be a positive whole number of seconds');
    ttl = Number(values.ttl);
  }

  let claims: TokenClaims;
  if (values.platform === true) {
    claims = { type: 'platform', scope: [ADMIN_SCOPE] };
  } else if (values.org !== undefined) {
    const org = values.org.toLowerCase();
    if (!isUuid(org)) throw usage('--org must be a UUID');
    const cidrs = values['allowed-upstream'];
    for (const c of cidrs ?? []) {
      if (parseCidr(c) === undefined) throw usage(`--allowed-upstream ${JSON.stringify(c)} is not a CIDR`);
    }
    claims = cidrs === undefined
      ? { type: 'organization_token', organization_id: org }
      : { type: 'organization_token', organization_id: org, allowed_upstreams: cidrs };
  } else {
    const sub = values.user!;
    if (sub.length === 0) throw usage('--user must not be empty');
    claims = { type: 'user', sub, scope: values.scope ?? [] };
  }
  return { claims, ttl };
}

/** `edgeway token …`: returns the signed token (main prints it). */
export async function tokenCommand(argv: string[], cfg: Config): Promise<string> {
  const { claims, ttl } = parseTokenArgs(argv);
  const keys = await loadJwtKeys(cfg);
  return signToken(keys, cfg.auth.jwt, claims, ttl);
}
