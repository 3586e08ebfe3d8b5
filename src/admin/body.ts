// JSON request bodies for the admin API (DESIGN.md "Admin API": JSON in, body
// over 1 MiB is 413). The limit is enforced while reading: a declared
// Content-Length over it is refused before a byte is read, and a chunked body
// that grows past it stops being read at once; nothing past the limit is
// buffered. The caller then answers and closes the connection (see
// `mustClose`), since the rest of that body is never going to be read.

import type { IncomingMessage } from 'node:http';
import { EdgewayError } from '../errors.js';

export const MAX_BODY_BYTES = 1024 * 1024;

/** Set on a request whose body was abandoned part-way: the connection cannot be reused. */
const ABANDONED = Symbol('edgeway.bodyAbandoned');

export function mustClose(req: IncomingMessage): boolean {
  return (req as IncomingMessage & { [ABANDONED]?: boolean })[ABANDONED] === true;
}

function abandon(req: IncomingMessage): void {
  (req as IncomingMessage & { [ABANDONED]?: boolean })[ABANDONED] = true;
}

/** `application/json`, optionally with parameters (`; charset=utf-8`). */
export function isJsonContentType(header: string | undefined): boolean {
  if (header === undefined) return false;
  const semi = header.indexOf(';');
  const type = (semi === -1 ? header : header.slice(0, semi)).trim().toLowerCase();
  return type === 'application/json';
}

/**
 * Reads and parses the request body as JSON. Throws EdgewayError
 * UNSUPPORTED_MEDIA_TYPE, PAYLOAD_TOO_LARGE or INVALID_JSON.
 */
export async function readJsonBody(req: IncomingMessage, limit = MAX_BODY_BYTES): Promise<unknown> {
  if (!isJsonContentType(req.headers['content-type'])) {
    abandon(req);
    throw new EdgewayError('UNSUPPORTED_MEDIA_TYPE');
  }
  const encoding = req.headers['content-encoding'];
  if (encoding !== undefined && encoding.trim().toLowerCase() !== 'identity') {
    abandon(req);
    throw new EdgewayError('UNSUPPORTED_MEDIA_TYPE', 'compressed request bodies are not accepted');
  }
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) {
    abandon(req);
    throw new EdgewayError('PAYLOAD_TOO_LARGE');
  }

  const text = (await collect(req, limit)).toString('utf8');
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new EdgewayError('INVALID_JSON');
  }
}

/**
 * Reads a binary body of `contentType` (the collab state PUT: one Yjs update),
 * with the same limit and refusals as JSON bodies.
 */
export async function readBytesBody(req: IncomingMessage, contentType: string, limit = MAX_BODY_BYTES): Promise<Buffer> {
  const header = req.headers['content-type'];
  const type = header === undefined ? '' : header.split(';')[0]!.trim().toLowerCase();
  const encoding = req.headers['content-encoding'];
  if (type !== contentType || (encoding !== undefined && encoding.trim().toLowerCase() !== 'identity')) {
    abandon(req);
    throw new EdgewayError('UNSUPPORTED_MEDIA_TYPE', `expected ${contentType}, uncompressed`);
  }
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) {
    abandon(req);
    throw new EdgewayError('PAYLOAD_TOO_LARGE');
  }
  return collect(req, limit);
}

function collect(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = (): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('aborted', onAborted);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) {
        cleanup();
        chunks.length = 0;
        abandon(req);
        req.pause();
        reject(new EdgewayError('PAYLOAD_TOO_LARGE'));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => {
      cleanup();
      resolve(Buffer.concat(chunks, size));
    };
    const onError = (err: Error): void => {
      cleanup();
      abandon(req);
      reject(new EdgewayError('BAD_REQUEST', 'the request body could not be read', { cause: err }));
    };
    const onAborted = (): void => onError(new Error('aborted'));
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('aborted', onAborted);
  });
}
