// One pino logger for the process. JSON lines on stdout, which journald keeps
// under systemd. Redaction is configured once here (pino compiles the paths
// once), so credentials never reach a log whatever a caller passes in
// (DESIGN.md "Tokens": tokens, cookies and these parameters never appear in logs).

import { pino, type Logger } from 'pino';

export type { Logger };

const REDACT_PATHS = [
  'token',
  'authorization',
  'cookie',
  'secret',
  '*.token',
  '*.authorization',
  '*.cookie',
  '*.secret',
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  'headers.cookie',
  'headers["set-cookie"]',
];

export function createLogger(level: string, name = 'edgeway'): Logger {
  return pino({
    name,
    level,
    base: { pid: process.pid },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  });
}

/**
 * Strips the query string from a request target before it is logged: query
 * parameters may carry `edgeway_token`, `code`, `state`, `access_token`.
 */
export function pathForLog(url: string | undefined): string {
  if (url === undefined) return '';
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}
