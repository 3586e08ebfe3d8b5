// DNS-01 hooks (DESIGN.md "Configuration": the webhook and exec protocols).
// RFC 8555 §8.4: the TXT record `_acme-challenge.<name>.` carries
// base64url(SHA-256(key authorization)); acme-client computes that value, a
// hook only publishes and removes it. A hook failure is an ACME_DNS_FAILED
// error naming the hook and the cause, never the value (it is not a secret,
// but nothing gains from logging it either).

import { execFile } from 'node:child_process';
import type { AcmeConfig } from '../config/types.js';
import { EdgewayError } from '../errors.js';

/** How long one hook call may take: a DNS API that hangs must not stall every order behind it. */
const HOOK_TIMEOUT_MS = 30_000;

export interface Dns01Hook {
  /** Adds `value` at `fqdn` (`_acme-challenge.<name>.`, with the trailing dot). Several values may share a name. */
  set(fqdn: string, value: string): Promise<void>;
  /** Removes every value at `fqdn` (pebble-challtestsrv's clear-txt semantics). */
  clear(fqdn: string, value: string): Promise<void>;
}

/** `_acme-challenge.<name>.` for an identifier; a wildcard's authorization is for its base name (RFC 8555 §7.1.3). */
export function challengeName(identifier: string): string {
  return `_acme-challenge.${identifier.replace(/^\*\./, '')}.`;
}

/** POST {host, value} to <url>/set-txt and {host} to <url>/clear-txt (pebble-challtestsrv's management API). */
class WebhookHook implements Dns01Hook {
  constructor(private readonly base: string) {}

  set(fqdn: string, value: string): Promise<void> {
    return this.post('set-txt', { host: fqdn, value });
  }

  clear(fqdn: string): Promise<void> {
    return this.post('clear-txt', { host: fqdn });
  }

  private async post(op: string, body: Record<string, string>): Promise<void> {
    const url = `${this.base.replace(/\/+$/, '')}/${op}`;
    const shown = forDisplay(url);
    let status: number;
    try {
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(HOOK_TIMEOUT_MS),
      });
      status = res.status;
      await res.arrayBuffer().catch(() => undefined);
    } catch (e) {
      // fetch() says only "fetch failed"; the reason (ECONNREFUSED, a timeout) is in its cause.
      type Cause = { code?: string; message?: string; errors?: { code?: string }[] };
      const c = (e as { cause?: Cause }).cause;
      const cause = c?.code ?? c?.errors?.[0]?.code ?? c?.message ?? (e as Error).message;
      throw new EdgewayError('ACME_DNS_FAILED', `DNS webhook ${op} at ${shown} unreachable: ${cause}`, { cause: e });
    }
    if (status < 200 || status > 299) {
      throw new EdgewayError('ACME_DNS_FAILED', `DNS webhook ${op} at ${shown} answered HTTP ${status}`);
    }
  }
}

/** The URL without user info or query, which may carry a DNS API's credentials: errors reach logs and /v1/certs. */
export function forDisplay(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return '(the configured URL)';
  }
}

/** Runs `<command> set|clear <fqdn> <value>` without a shell; exit 0 is success. */
class ExecHook implements Dns01Hook {
  constructor(private readonly command: string) {}

  set(fqdn: string, value: string): Promise<void> {
    return this.run('set', fqdn, value);
  }

  clear(fqdn: string, value: string): Promise<void> {
    return this.run('clear', fqdn, value);
  }

  private run(op: string, fqdn: string, value: string): Promise<void> {
    return new Promise((resolve, reject) => {
      execFile(this.command, [op, fqdn, value], { timeout: HOOK_TIMEOUT_MS }, (err, _stdout, stderr) => {
        if (err === null) return resolve();
        const why = err.killed ? 'timed out' : typeof err.code === 'number' ? `exit ${err.code}` : String(err.code ?? err.message);
        const tail = stderr.trim().split('\n').slice(-1)[0]?.slice(0, 200) ?? '';
        reject(new EdgewayError('ACME_DNS_FAILED', `DNS command ${this.command} ${op} ${fqdn} failed (${why})${tail ? `: ${tail}` : ''}`, { cause: err }));
      });
    });
  }
}

export function openDns01Hook(cfg: AcmeConfig): Dns01Hook {
  // validate.ts requires url (webhook) or command (exec) when tls.mode is acme.
  return cfg.dns01.provider === 'exec' ? new ExecHook(cfg.dns01.command!) : new WebhookHook(cfg.dns01.url!);
}
