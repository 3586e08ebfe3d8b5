// GET /v1/activity and GET /metrics (DESIGN.md "Admin API"), read through the
// ActivitySource and MetricsSource seams (src/observe/types.ts). Until a source
// is wired in, the endpoint answers 503 service_unavailable.
//
// Activity follows tenancy: an organization token sees its own hosts and its
// own org's totals, a platform token everything (a pool manager finding idle
// orgs uses a platform token).
//
// /metrics needs a platform token. The contract lists it under the admin API,
// whose listener is loopback or a unix socket, and the numbers span every
// tenant (host counts, auth failures, upstream errors), so an org token may
// not read them either. Prometheus sends a bearer token with
// `authorization: { credentials_file: … }` (or `bearer_token_file`) in its
// scrape config; a long-lived platform token made with
// `edgeway token --platform --ttl …` serves. Leaving /metrics open only on a
// unix socket was the alternative, but a scraper rarely reaches a unix socket
// and one rule for every admin listener is easier to get right.

import type { ActivitySource, MetricsSource } from '../observe/types.js';
import { EdgewayError } from '../errors.js';
import type { HandlerResult, RequestContext, RouteSpec } from './router.js';
import { forbidden, isPlatformAdmin, type Tenancy } from './tenancy.js';

export interface ObserveApiDeps {
  readonly tenancy: Tenancy;
  readonly activity?: ActivitySource;
  readonly metrics?: MetricsSource;
}

function unavailable(what: string): EdgewayError {
  return new EdgewayError('SERVICE_UNAVAILABLE', `${what} is not available in this process`);
}

export function observeRoutes(deps: ObserveApiDeps): RouteSpec[] {
  const { tenancy } = deps;

  const activity = async (ctx: RequestContext): Promise<HandlerResult> => {
    const claims = ctx.claims!;
    if (!tenancy.mayUseApi(claims)) throw forbidden();
    if (deps.activity === undefined) throw unavailable('activity');
    const report = await deps.activity.activity();
    if (isPlatformAdmin(claims)) return { status: 200, body: report };
    return {
      status: 200,
      body: {
        hosts: report.hosts.filter((h) => tenancy.mayManage(claims, h.host)),
        orgs: report.orgs.filter((o) => tenancy.maySeeOrg(claims, o.org_id)),
      },
    };
  };

  const metrics = async (ctx: RequestContext): Promise<HandlerResult> => {
    if (!isPlatformAdmin(ctx.claims!)) throw forbidden();
    if (deps.metrics === undefined) throw unavailable('metrics');
    const text = await deps.metrics.metrics();
    return { status: 200, text, headers: { 'content-type': deps.metrics.contentType } };
  };

  return [
    { method: 'GET', path: '/v1/activity', auth: true, handler: activity },
    { method: 'GET', path: '/metrics', auth: true, handler: metrics },
  ];
}
