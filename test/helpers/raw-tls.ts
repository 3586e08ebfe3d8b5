// A raw HTTP/1.1 client over TLS for the abuse tests: it writes exactly the
// bytes it is given (no client library normalizes them) and parses just enough
// of the answer to know its status and where it ends (Content-Length, or the
// connection closing).

import net from 'node:net';
import tls from 'node:tls';

/** One secure context for many connections: `ca` per connect would parse the PEM each time. */
export function clientContext(caPem: string): tls.SecureContext {
  return tls.createSecureContext({ ca: [caPem] });
}

export interface RawTarget {
  readonly port: number;
  readonly context: tls.SecureContext;
  readonly servername: string;
}

/** Opens a verified TLS connection to 127.0.0.1 (SNI `servername`); resolves once the handshake is done. */
export function connectTls(target: RawTarget, timeoutMs = 10_000): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({
      host: '127.0.0.1',
      port: target.port,
      servername: target.servername,
      secureContext: target.context,
      // The leaf names the host; the chain is what is checked here.
      checkServerIdentity: () => undefined,
    });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`TLS handshake took over ${timeoutMs} ms`));
    }, timeoutMs);
    s.once('secureConnect', () => {
      clearTimeout(timer);
      s.off('error', onError);
      resolve(s);
    });
    const onError = (err: Error): void => {
      clearTimeout(timer);
      reject(err);
    };
    s.once('error', onError);
  });
}

export interface RawResponse {
  /** Undefined when no status line arrived. */
  readonly status: number | undefined;
  readonly head: string;
  readonly body: Buffer;
  /** The server closed the connection (before or after a complete response). */
  readonly closed: boolean;
  /** A whole response (head and Content-Length body) arrived. */
  readonly complete: boolean;
  readonly ms: number;
}

interface Parsed {
  status: number | undefined;
  head: string;
  body: Buffer;
  complete: boolean;
}

/** Parses one response from the start of `buf`; `complete` when its end is known to have arrived. */
export function parseResponse(buf: Buffer, closed: boolean): Parsed {
  const end = buf.indexOf('\r\n\r\n');
  if (end === -1) {
    const line = buf.toString('latin1');
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(line);
    return { status: m ? Number(m[1]) : undefined, head: line, body: Buffer.alloc(0), complete: false };
  }
  const head = buf.subarray(0, end).toString('latin1');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(head);
  const status = m ? Number(m[1]) : undefined;
  const cl = /\r\ncontent-length:\s*(\d+)/i.exec(head);
  const rest = buf.subarray(end + 4);
  if (cl) {
    const n = Number(cl[1]);
    return { status, head, body: rest.subarray(0, n), complete: rest.length >= n };
  }
  // 1xx/204/304 have no body; otherwise a response without a length ends at close.
  const noBody = status !== undefined && (status < 200 || status === 204 || status === 304);
  return { status, head, body: rest, complete: noBody || closed };
}

/**
 * Reads one response from `socket` (already connected); resolves when it is
 * complete, when the socket closes, or after `timeoutMs`. Leaves the socket open
 * when the response completed and the server kept it.
 */
export function readResponse(socket: net.Socket, timeoutMs = 5_000): Promise<RawResponse> {
  const started = Date.now();
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let settled = false;
    const finish = (closed: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.off('error', onErr);
      const p = parseResponse(Buffer.concat(chunks), closed);
      resolve({ ...p, closed, ms: Date.now() - started });
    };
    const onData = (c: Buffer): void => {
      chunks.push(c);
      if (parseResponse(Buffer.concat(chunks), false).complete) finish(socket.destroyed);
    };
    const onClose = (): void => finish(true);
    const onErr = (): void => undefined; // 'close' follows
    const timer = setTimeout(() => finish(socket.destroyed), timeoutMs);
    socket.on('data', onData);
    socket.on('close', onClose);
    socket.on('error', onErr);
    if (socket.destroyed) finish(true);
  });
}

/** Connects, writes `data` as is, reads one response, closes. */
export async function rawExchange(target: RawTarget, data: string | Buffer, timeoutMs = 5_000): Promise<RawResponse> {
  const s = await connectTls(target);
  try {
    const reply = readResponse(s, timeoutMs);
    s.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data);
    return await reply;
  } finally {
    s.destroy();
  }
}

/** Resolves with how long after the call `socket` closed (or `limitMs` if it did not). */
export function closedWithin(socket: net.Socket, limitMs: number): Promise<{ closed: boolean; ms: number; data: Buffer }> {
  const started = Date.now();
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const onData = (c: Buffer): void => void chunks.push(c);
    const done = (closed: boolean): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      resolve({ closed, ms: Date.now() - started, data: Buffer.concat(chunks) });
    };
    const timer = setTimeout(() => done(false), limitMs);
    socket.on('data', onData);
    socket.on('error', () => undefined);
    socket.once('close', () => done(true));
    if (socket.destroyed) done(true);
  });
}

/** A plain TCP connection to 127.0.0.1:port (for handshakes that never start). */
export function connectTcp(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}
