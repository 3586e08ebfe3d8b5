// Opens every service edgeway serves itself. Each service adds one line here;
// a service that fails to open stops the start (exit 2 through main), since
// serving its locations with 503 would hide a broken data_dir.

import { openOAuth } from '../oauth/service.js';
import { openCollab } from '../collab/collab-service.js';
import type { ServiceDeps, ServiceSet } from './types.js';

export async function openServices(deps: ServiceDeps): Promise<ServiceSet> {
  const set: ServiceSet = {};
  try {
    set.oauth = await openOAuth(deps);
    set.collab = await openCollab(deps);
  } catch (err) {
    await closeServices(set);
    throw err;
  }
  return set;
}

export async function closeServices(set: ServiceSet): Promise<void> {
  await Promise.all(Object.values(set).map((s) => s.close()));
}
