// GET /v1/certs (DESIGN.md "Admin API"): the certificates edgeway holds or is
// obtaining, with names, issuer, not-after, state and last error (issue 5).
// A platform token sees all; an org token only the certificates that carry
// its org's wildcard (an org may not learn which other orgs exist).

import type { CertReport } from '../acme/cert-manager.js';
import type { HandlerResult, RequestContext, RouteSpec } from './router.js';
import { forbidden, isPlatformAdmin, type Tenancy } from './tenancy.js';

export interface CertReporter {
  certReport(): Promise<CertReport[]>;
}

export function certsRoute(reporter: CertReporter, tenancy: Tenancy): RouteSpec {
  const handler = async (ctx: RequestContext): Promise<HandlerResult> => {
    const claims = ctx.claims!;
    if (!tenancy.mayUseApi(claims)) throw forbidden();
    const rows = await reporter.certReport();
    const visible = isPlatformAdmin(claims) ? rows : rows.filter((r) => r.orgs.some((o) => tenancy.maySeeOrg(claims, o)));
    return { status: 200, body: visible };
  };
  return { method: 'GET', path: '/v1/certs', auth: true, handler };
}
