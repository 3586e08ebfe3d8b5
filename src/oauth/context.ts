// What every OAuth endpoint is handed: the store, the client authenticator,
// the user gate (authorize only), and the limits from `oauth` in the config.

import type { AccessGate } from '../auth/access-gate.js';
import type { Config } from '../config/types.js';
import type { Logger } from '../log.js';
import type { ClientAuthenticator } from './client-auth.js';
import type { ParamLimits } from './params.js';
import type { OAuthStore } from './store.js';

export interface OAuthContext {
  readonly cfg: Config;
  readonly log: Logger;
  readonly store: OAuthStore;
  readonly clients: ClientAuthenticator;
  readonly gate: AccessGate;
  readonly limits: ParamLimits;
}
