// What edgeway's request logic reads of a client request: the fields the
// access gate, the header filter, routing and the access log use. node:http's
// IncomingMessage satisfies it as is; the fast lane (src/server/fast-lane.ts,
// issue 4) builds one small object per request instead of an IncomingMessage,
// so both paths share the same decisions instead of two copies of them.

export interface RequestHeadersView {
  readonly host?: string | undefined;
  readonly cookie?: string | undefined;
  readonly authorization?: string | undefined;
  readonly accept?: string | undefined;
  readonly 'transfer-encoding'?: string | undefined;
}

export interface RequestView {
  readonly method?: string | undefined;
  /** The request target; routing may replace it with its canonical form. */
  url?: string | undefined;
  readonly headers: RequestHeadersView;
  /** Names and values as received, in order (`[name, value, name, value, …]`). */
  readonly rawHeaders: readonly string[];
  /** TLSSocket's `servername` is the SNI the client sent (false or null without one). */
  readonly socket: { readonly remoteAddress?: string | undefined; readonly encrypted?: boolean; readonly servername?: string | false | null };
}
