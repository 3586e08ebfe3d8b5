// One ACME certificate order, end to end (RFC 8555 §7.1 "Overview"): account,
// new order, DNS-01 for every authorization, finalize with a CSR, download.
// acme-client speaks the protocol (JWS, nonces, polling); this file only
// decides the order of the steps, because acme-client's `auto()` removes each
// challenge as soon as its own authorization is done, and `{domain}` and
// `*.{domain}` share one challenge name whose clear-txt removes both values
// (DESIGN.md "Configuration"): every TXT record stays until every
// authorization of the order is final.

import https from 'node:https';
import { rootCertificates } from 'node:tls';
import { readFile } from 'node:fs/promises';
import * as acme from 'acme-client';
import type { AcmeConfig } from '../config/types.js';
import { EdgewayError } from '../errors.js';
import { challengeName, type Dns01Hook } from './dns01.js';

/** What a successful order yields: the leaf and its chain, and the key the CSR was made with. */
export interface Issued {
  readonly certPem: string;
  readonly keyPem: string;
}

/** Step names, so a failure says where it happened (`last_error` in /v1/certs). */
type Step = 'account' | 'order' | 'dns' | 'validation' | 'finalize' | 'download';

/**
 * Polling of authorizations and orders (acme-client's backoff): first look
 * after 0.5 s, doubling to 15 s, 12 looks (about 2 minutes): Let's Encrypt
 * validates DNS-01 within seconds; a CA slower than that is a failed order,
 * retried later by the manager.
 */
const BACKOFF = { backoffAttempts: 12, backoffMin: 500, backoffMax: 15_000 };

let httpConfigured = false;

/**
 * acme-client sends through one shared axios instance. Its own retry of
 * network errors (5 attempts, 75 s) would hide an ACME server that is down
 * from the manager's backoff: one quick retry, a timeout, and the extra CA
 * of `tls.acme.ca_file` (for Pebble, or a private CA) next to the public roots.
 */
async function configureHttp(cfg: AcmeConfig): Promise<void> {
  if (httpConfigured) return;
  const settings = (acme.axios.defaults as unknown as { acmeSettings: { retryMaxAttempts: number; retryDefaultDelay: number } }).acmeSettings;
  settings.retryMaxAttempts = 1;
  settings.retryDefaultDelay = 2;
  acme.axios.defaults.timeout = 30_000;
  // acme-client 5.4.0's retry interceptor turns a network error it gives up
  // on into `TypeError: Cannot read properties of undefined (reading
  // 'config')`, losing the cause (ECONNREFUSED, a timeout). Ahead of it, a
  // network error becomes a plain Error naming the cause, which that
  // interceptor passes through untouched (it only handles errors with a
  // request config); the manager's backoff does the retrying.
  const interceptors = acme.axios.interceptors.response as unknown as { handlers: unknown[] };
  acme.axios.interceptors.response.use(null, (error: { code?: string; message?: string; response?: unknown; config?: unknown }) => {
    if (error?.config !== undefined && error.response === undefined) {
      throw new Error(`${error.message ?? error.code ?? 'network error'}`);
    }
    throw error;
  });
  interceptors.handlers.unshift(interceptors.handlers.pop());
  if (cfg.ca_file !== undefined) {
    let extra: string;
    try {
      extra = await readFile(cfg.ca_file, 'utf8');
    } catch (e) {
      throw new EdgewayError('CONFIG_INVALID', `tls.acme.ca_file: cannot read ${cfg.ca_file}: ${(e as Error).message}`, { field: 'tls.acme.ca_file', cause: e });
    }
    if (!extra.includes('-----BEGIN CERTIFICATE-----')) {
      throw new EdgewayError('CONFIG_INVALID', `tls.acme.ca_file: no PEM certificate in ${cfg.ca_file}`, { field: 'tls.acme.ca_file' });
    }
    acme.axios.defaults.httpsAgent = new https.Agent({ ca: [...rootCertificates, extra], keepAlive: true });
  }
  httpConfigured = true;
}

function failed(step: Step, e: unknown): EdgewayError {
  if (e instanceof EdgewayError) return e;
  const err = e as { message?: string; code?: string };
  const why = problems(err.message) ?? err.message ?? err.code ?? String(e);
  return new EdgewayError('ACME_ORDER_FAILED', `${step}: ${why.slice(0, 500)}`, { cause: e });
}

/**
 * acme-client reports an invalid authorization as its whole JSON; the cause
 * is in its challenges' RFC 8555 §7.1.4 `error` problem documents (RFC 7807):
 * `<identifier>: <type> <detail>`.
 */
function problems(message: string | undefined): string | undefined {
  if (message === undefined || !message.startsWith('{')) return undefined;
  try {
    const authz = JSON.parse(message) as { identifier?: { value?: string }; challenges?: { error?: { type?: string; detail?: string } }[] };
    const errs = (authz.challenges ?? []).flatMap((c) => (c.error === undefined ? [] : [`${c.error.type ?? ''} ${c.error.detail ?? ''}`.trim()]));
    return errs.length === 0 ? undefined : `${authz.identifier?.value ?? '?'}: ${errs.join('; ')}`;
  } catch {
    return undefined;
  }
}

export class AcmeOrderer {
  private accountKnown = false;
  private client: acme.Client;

  private constructor(
    private readonly cfg: AcmeConfig,
    private accountKeyPem: string,
    private readonly dns: Dns01Hook,
    /** Replaces a deactivated account's key with a new one (acme-store.ts). */
    private readonly newAccountKey: () => Promise<string>,
  ) {
    this.client = this.newClient();
  }

  static async open(cfg: AcmeConfig, accountKeyPem: string, dns: Dns01Hook, newAccountKey: () => Promise<string>): Promise<AcmeOrderer> {
    await configureHttp(cfg);
    return new AcmeOrderer(cfg, accountKeyPem, dns, newAccountKey);
  }

  private newClient(): acme.Client {
    return new acme.Client({ directoryUrl: this.cfg.directory_url, accountKey: this.accountKeyPem, ...BACKOFF });
  }

  /**
   * Obtains a certificate for `names` (wildcards allowed). Throws an
   * EdgewayError (ACME_ORDER_FAILED naming the step, or ACME_DNS_FAILED) on any
   * failure; TXT records it set are cleared whatever happens.
   */
  async order(names: readonly string[]): Promise<Issued> {
    try {
      return await this.attempt(names);
    } catch (e) {
      // Start the next attempt from scratch: acme-client caches the directory
      // (a garbage one would stay forever) and the account URL (the CA may
      // have lost the account).
      this.client = this.newClient();
      this.accountKnown = false;
      throw e;
    }
  }

  private async attempt(names: readonly string[]): Promise<Issued> {
    await this.step('account', () => this.ensureAccount());
    let order = await this.step('order', () => this.client.createOrder({ identifiers: names.map((value) => ({ type: 'dns', value })) }));
    const authzs = await this.step('order', () => this.client.getAuthorizations(order));
    // Every (name, value) pair, also when two share a name: an exec hook may
    // remove only the value it is given, a webhook's clear-txt removes all.
    const published: [string, string][] = [];
    try {
      const pending: { authz: acme.Authorization; challenge: acme.Authorization['challenges'][number] }[] = [];
      for (const authz of authzs) {
        // A still-valid authorization of this account needs no new proof (RFC 8555 §7.1.4).
        if (authz.status === 'valid') continue;
        const challenge = authz.challenges.find((c) => c.type === 'dns-01');
        if (challenge === undefined) throw new EdgewayError('ACME_ORDER_FAILED', `order: no dns-01 challenge offered for ${authz.identifier.value}`);
        const value = await this.step('order', () => this.client.getChallengeKeyAuthorization(challenge));
        const fqdn = challengeName(authz.identifier.value);
        await this.dns.set(fqdn, value);
        published.push([fqdn, value]);
        pending.push({ authz, challenge });
      }
      if (pending.length > 0 && this.cfg.dns01.propagation_wait_s > 0) {
        await new Promise((r) => setTimeout(r, this.cfg.dns01.propagation_wait_s * 1000).unref());
      }
      await this.step('validation', async () => {
        await Promise.all(pending.map((p) => this.client.completeChallenge(p.challenge)));
        await Promise.all(pending.map((p) => this.client.waitForValidStatus(p.authz)));
      });
    } finally {
      // Every authorization is final here (valid, invalid, or the order gave up):
      // only now may a shared challenge name be cleared.
      for (const [fqdn, value] of published) {
        await this.dns.clear(fqdn, value).catch(() => undefined);
      }
    }
    const keyPem = (await acme.crypto.createPrivateEcdsaKey('P-256')).toString();
    const [, csr] = await acme.crypto.createCsr({ altNames: [...names] }, keyPem);
    order = await this.step('finalize', () => this.client.finalizeOrder(order, csr));
    const certPem = await this.step('download', () => this.client.getCertificate(order));
    return { certPem, keyPem };
  }

  /**
   * newAccount with an existing key returns that account (RFC 8555 §7.3.1).
   * Done once, and again after any failed order: that also recovers from a CA
   * that lost or expired the account (a Pebble restart, a deactivation), where
   * a stale account URL would otherwise fail every order forever.
   */
  private async ensureAccount(): Promise<void> {
    if (this.accountKnown) return;
    const api = (this.client as unknown as { api: { accountUrl: string | null } }).api;
    const contact = this.cfg.email === undefined ? {} : { contact: [`mailto:${this.cfg.email}`] };
    try {
      await this.client.createAccount({ termsOfServiceAgreed: true, ...contact });
    } catch (e) {
      if (/deactivated/i.test((e as Error).message ?? '')) {
        // The CA (or the operator) deactivated this account: a new key is the
        // only way back (RFC 8555 §7.3.6). The next attempt registers it.
        this.accountKeyPem = await this.newAccountKey();
        throw new EdgewayError('ACME_ORDER_FAILED', `account: ${(e as Error).message}; registering a new account key`, { cause: e });
      }
      // For an existing account acme-client follows up with an update that
      // some CAs (Pebble) refuse when nothing changes; the account URL is known by then.
      if (api.accountUrl === null) throw e;
    }
    this.accountKnown = true;
  }

  private async step<T>(step: Step, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      throw failed(step, e);
    }
  }
}
