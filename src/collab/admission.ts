// What an upgrade on a collab location must show before it joins a room
// (DESIGN.md "Collab relay (contract)", issue 6 points 1 and 2): a room name,
// an org, an allowed Origin. Refusals are close codes sent after the upgrade
// completed: y-websocket 3.x treats 4400-4499 as final and retries everything
// else forever, and an HTTP refusal would be retried forever too.

/** Close codes the relay uses (RFC 6455 §7.4 and the 4xxx private range). */
export const CLOSE = {
  GOING_AWAY: 1001,
  /** A text frame, or a message type the protocol does not have. */
  UNSUPPORTED: 1003,
  /** A binary message that does not decode (truncated or garbage). */
  INVALID: 1007,
  /** The room's store failed: nothing more is accepted (issue 6 point 3). */
  INTERNAL: 1011,
  /** The client's send buffer passed collab.send_buffer_limit_bytes. */
  TRY_AGAIN: 1013,
  BAD_ROOM: 4400,
  UNAUTHORIZED: 4401,
  FORBIDDEN: 4403,
} as const;

const ROOM = /^[A-Za-z0-9._~-]{1,200}$/;

/** The room of a subpath (`/name` or `/name?query`), or undefined: one segment of the contract's characters. */
export function roomOf(subpath: string): string | undefined {
  const q = subpath.indexOf('?');
  const path = q === -1 ? subpath : subpath.slice(0, q);
  if (path.charCodeAt(0) !== 47 /* '/' */) return undefined;
  const name = path.slice(1);
  return ROOM.test(name) ? name : undefined;
}

export function isRoomName(s: string): boolean {
  return ROOM.test(s);
}

/** `{org_id}/{room}`: orgs never share a room. */
export function roomKey(orgId: string, room: string): string {
  return `${orgId}/${room}`;
}

/**
 * Whether a browser page at `origin` may open the org's rooms: only the apex
 * and the org host itself, each with the port the client used (the Host's),
 * if any. A page in a user container (`uc-….org-….{domain}`) is same-site and
 * would otherwise ride a member's SameSite=Lax cookie. No Origin: a non-browser
 * client, allowed.
 */
export function originAllowed(origin: string | undefined, domain: string, orgId: string, hostHeader: string): boolean {
  if (origin === undefined) return true;
  const colon = hostHeader.lastIndexOf(':');
  const port = colon !== -1 && hostHeader.indexOf(']') < colon ? hostHeader.slice(colon) : '';
  const o = origin.toLowerCase();
  return o === `https://${domain}` || o === `https://${domain}${port}` || o === `https://org-${orgId}.${domain}${port}`;
}
