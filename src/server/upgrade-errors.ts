// Refusing a websocket upgrade before it is upgraded: the socket has no
// ServerResponse, so the answer is written raw. Bodies are built once per code
// at load, not per refusal. Upgrades never redirect (DESIGN.md "Tokens").

import type { Duplex } from 'node:stream';
import { ERRORS, type ErrorCode } from '../errors.js';
import { STATUS_CODES } from 'node:http';

const RAW = new Map<ErrorCode, Buffer>();
for (const code of Object.keys(ERRORS) as ErrorCode[]) {
  const { status, message } = ERRORS[code];
  const body = JSON.stringify({ error: code.toLowerCase(), message });
  RAW.set(
    code,
    Buffer.from(
      `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\n` +
        'Content-Type: application/json\r\n' +
        'Cache-Control: no-store\r\n' +
        'Connection: close\r\n' +
        `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    ),
  );
}

export function rawUpgradeError(socket: Duplex, code: ErrorCode): void {
  if (socket.writable) socket.end(RAW.get(code));
  else socket.destroy();
}
