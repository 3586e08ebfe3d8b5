// Just enough RFC 6455 for the bench's websocket clients: a TLS connection to
// 127.0.0.1 with a chosen SNI/Host, the upgrade request written by hand (far
// lighter per socket than a full client library, so one process holds 10,000),
// a masked client frame, and the length of the next unmasked server frame.

import { randomBytes } from 'node:crypto';
import tls from 'node:tls';

export interface WsTarget {
  readonly port: number;
  /** Host header and SNI. */
  readonly host: string;
  readonly path: string;
  readonly cookie?: string;
}

/**
 * Connects, upgrades and resolves with the socket once the 101 has arrived
 * (rejects on any other answer or after 30 s). `session` resumes TLS: opening
 * thousands of sockets should not be bounded by full handshakes on the client.
 */
export function openWs(t: WsTarget, session?: Buffer): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port: t.port, servername: t.host, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'], ...(session ? { session } : {}) });
    let head = '';
    const fail = (e: Error): void => {
      s.destroy();
      reject(e);
    };
    const timer = setTimeout(() => fail(new Error('no 101 within 30 s')), 30_000);
    s.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    s.once('secureConnect', () => {
      const cookie = t.cookie ? `Cookie: edgeway_token=${t.cookie}\r\n` : '';
      s.write(
        `GET ${t.path} HTTP/1.1\r\nHost: ${t.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n${cookie}\r\n`,
      );
    });
    const onData = (d: Buffer): void => {
      head += d.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return head.length > 16_384 ? fail(new Error('upgrade answer head too long')) : undefined;
      clearTimeout(timer);
      s.off('data', onData);
      if (!head.startsWith('HTTP/1.1 101')) return fail(new Error(`upgrade answered: ${head.slice(0, head.indexOf('\r\n'))}`));
      if (end + 4 < head.length) s.unshift(Buffer.from(head.slice(end + 4), 'latin1'));
      s.removeAllListeners('error');
      s.on('error', () => s.destroy());
      resolve(s);
    };
    s.on('data', onData);
  });
}

/** A masked text frame carrying `payload` (< 126 bytes). */
export function clientFrame(payload: Buffer): Buffer {
  if (payload.length >= 126) throw new Error('clientFrame: payloads under 126 bytes only');
  const mask = randomBytes(4);
  const f = Buffer.allocUnsafe(6 + payload.length);
  f[0] = 0x81;
  f[1] = 0x80 | payload.length;
  mask.copy(f, 2);
  for (let i = 0; i < payload.length; i++) f[6 + i] = payload[i]! ^ mask[i & 3]!;
  return f;
}

/** Total length of the unmasked server frame at the start of `b` once its header is complete, else -1. */
export function serverFrameLength(b: Buffer): number {
  if (b.length < 2) return -1;
  const len = b[1]! & 0x7f;
  if (len < 126) return 2 + len;
  if (len === 126) return b.length < 4 ? -1 : 4 + b.readUInt16BE(2);
  return b.length < 10 ? -1 : 10 + Number(b.readBigUInt64BE(2));
}
