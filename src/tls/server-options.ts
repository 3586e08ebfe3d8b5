// The public listener's TLS settings, in one place. Everything but the
// certificate lives in the server's default context: contexts handed out by
// the SNI callback only contribute key and chain (see cert-store.ts).

import { randomBytes } from 'node:crypto';
import type { Server, TlsOptions } from 'node:tls';
import { EdgewayError } from '../errors.js';
import type { CertStore } from './cert-store.js';

/** Node's ticket key format: 16 bytes key name, 16 bytes HMAC key, 16 bytes AES key. */
export const TICKET_KEY_BYTES = 48;

/**
 * Node splits `ciphers` into the TLS 1.3 (`TLS_*`) and TLS 1.2 lists; the 1.3
 * suites are listed so that our order applies with honorCipherOrder (the
 * mandatory AES-128-GCM first, RFC 8446 §9.1) instead of OpenSSL's default
 * (AES-256 first). All three are AEAD. For 1.2, ECDHE only (forward secrecy) with AEAD only (RFC 9325 §4.2: no
 * CBC, no static RSA), ECDSA first for the P-256 leaves edgeway mints, RSA
 * variants for files-mode and ACME certificates that are RSA.
 */
const CIPHERS = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

/**
 * Resumable for an hour: browsers reopen connections to the same dev host all
 * the time. TLS 1.3 resumption still runs a fresh (EC)DHE exchange (psk_dhe_ke),
 * so a ticket key leak does not expose those sessions' traffic (RFC 8446 §2.2).
 */
const SESSION_TIMEOUT_S = 3600;

/**
 * Fixed so that a ticket issued by one worker (or before a restart with the
 * same keys) is accepted by another: OpenSSL refuses to resume a session whose
 * session id context differs, and Node's default derives it from argv.
 */
const SESSION_ID_CONTEXT = 'edgeway';

/** Options for tls.createServer / https.createServer. */
export function tlsServerOptions(store: CertStore, ticketKeys: Buffer): TlsOptions {
  if (ticketKeys.length !== TICKET_KEY_BYTES) {
    throw new EdgewayError('INTERNAL', `TLS ticket keys must be ${TICKET_KEY_BYTES} bytes, got ${ticketKeys.length}`);
  }
  const fallback = store.fallback;
  return {
    // The default context: served when the client sends no SNI (SNICallback
    // is not called then) and the basis every SNI context inherits from.
    key: fallback.keyPem,
    cert: fallback.certPem,
    // TLS 1.0/1.1 are deprecated by RFC 8996.
    minVersion: 'TLSv1.2',
    maxVersion: 'TLSv1.3',
    ciphers: CIPHERS,
    ecdhCurve: 'X25519:P-256:P-384',
    honorCipherOrder: true,
    ticketKeys,
    sessionTimeout: SESSION_TIMEOUT_S,
    sessionIdContext: SESSION_ID_CONTEXT,
    SNICallback: store.sniCallback,
    // edgeway speaks HTTP/1.1 (with websocket upgrades, which RFC 8441 would
    // need extra work for over h2); advertise nothing it cannot serve.
    ALPNProtocols: ['http/1.1'],
  };
}

/**
 * After store.setFallback(): clients without SNI use the server's default
 * context, which only setSecureContext replaces (SNI clients see the new
 * fallback at once). Ticket keys are passed again so resumption survives.
 */
export function refreshDefaultContext(server: Server, store: CertStore, ticketKeys: Buffer): void {
  server.setSecureContext(tlsServerOptions(store, ticketKeys));
}

/** 48 random bytes: generated once by the control plane and shared with every worker. */
export function newTicketKeys(): Buffer {
  return randomBytes(TICKET_KEY_BYTES);
}
