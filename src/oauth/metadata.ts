// Authorization server metadata (RFC 8414 §2, §3) at
// `/.well-known/oauth-authorization-server` of any host with an oauth
// location (DESIGN.md "OAuth2"; the route table sends that exact path to the
// host's oauth location, src/routes/table.ts). It lists every endpoint, grant
// and client authentication method, and S256 as the only PKCE method, so a
// client following it cannot choose anything edgeway refuses.

import type { ServerResponse } from 'node:http';
import type { Issuer } from './issuer.js';

export const METADATA_PATH = '/.well-known/oauth-authorization-server';

const texts = new WeakMap<Issuer, string>();

export function metadataOf(iss: Issuer): Record<string, unknown> {
  return {
    issuer: iss.issuer,
    authorization_endpoint: `${iss.base}/authorize`,
    token_endpoint: `${iss.base}/token`,
    introspection_endpoint: `${iss.base}/introspect`,
    revocation_endpoint: `${iss.base}/revoke`,
    // Not an RFC 8414 name (§2 allows more): edgeway's bearer-token check.
    authenticate_endpoint: `${iss.base}/authenticate`,
    response_types_supported: ['code'],
    response_modes_supported: ['query'],
    grant_types_supported: ['authorization_code', 'refresh_token', 'client_credentials'],
    token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'none'],
    introspection_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
    revocation_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'none'],
    code_challenge_methods_supported: ['S256'],
    // RFC 9207: every authorization response carries `iss`.
    authorization_response_iss_parameter_supported: true,
  };
}

export function sendMetadata(res: ServerResponse, iss: Issuer): void {
  let text = texts.get(iss);
  if (text === undefined) texts.set(iss, (text = JSON.stringify(metadataOf(iss))));
  res.writeHead(200, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    // Public and the same for everyone; clients may keep it a few minutes.
    'cache-control': 'public, max-age=300',
  });
  res.end(text);
}
