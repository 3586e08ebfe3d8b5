#!/usr/bin/env node
// The `edgeway` executable. Its only job is to make signals that arrive while
// the rest of the program loads (about a quarter of a second) harmless: Node's
// default action for SIGHUP and SIGTERM is to exit, so a `systemctl reload`
// right after `start` would kill the service. They are remembered here and
// acted on once the appliance is up (src/cli/main.ts).

import process from 'node:process';

const received: NodeJS.Signals[] = [];
const listener = (s: NodeJS.Signals): void => {
  received.push(s);
};
for (const s of ['SIGHUP', 'SIGTERM', 'SIGINT'] as const) process.on(s, listener);

const { main } = await import('./cli/main.js');
main(process.argv.slice(2), { received, listener }).catch((err: unknown) => {
  process.stderr.write(`edgeway: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
