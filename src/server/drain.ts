// SIGTERM: stop accepting, let in-flight requests finish within a deadline,
// close websockets with 1001 (RFC 6455 §7.4.1 "going away"), then cut what is
// left. Idle keep-alive connections are closed at once and again as requests
// finish (their responses carry `Connection: close` once draining is set), so
// no client is left holding a connection that will be reset under it.

import type { Server } from 'node:http';

function closed(server: Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve();
    server.close(() => resolve());
  });
}

/** Connections a server holds outside node:http's tracking (the fast lane, src/server/fast-lane.ts). */
export interface OwnConnections {
  closeIdle(): void;
  closeAll(): void;
}

/** Resolves true when everything finished before the deadline, false when it had to cut connections. */
export async function drainServers(servers: readonly Server[], deadlineMs: number, own?: OwnConnections): Promise<boolean> {
  const all = Promise.all(servers.map(closed));
  const closeIdle = (): void => {
    for (const s of servers) s.closeIdleConnections();
    own?.closeIdle();
  };
  closeIdle();
  const sweep = setInterval(closeIdle, 50);
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), deadlineMs);
  });
  const clean = await Promise.race([all.then(() => true as const), deadline]);
  clearInterval(sweep);
  clearTimeout(timer);
  if (!clean) {
    for (const s of servers) s.closeAllConnections();
    own?.closeAll();
    await all;
  }
  return clean;
}
