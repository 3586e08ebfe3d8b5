// The OAuth store on its own (src/oauth/store*.ts), with a clock the test
// moves: single use, replay and reuse revocation, the sweep, and the journal
// across reopen (compaction, a torn last line, an unreadable line).

import { appendFile, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { validateConfig } from '../src/config/validate.js';
import { createLogger } from '../src/log.js';
import { asOAuthError } from '../src/oauth/protocol-errors.js';
import { TooBusy, hashClientSecret, hashValue, verifyClientSecret } from '../src/oauth/secrets.js';
import { OAuthStore } from '../src/oauth/store.js';

const ORG = '7f3a0000-0000-4000-8000-000000000002';
const cfg = validateConfig({ domain: 'example.test' }, '/tmp/edgeway.yaml').oauth;
const log = createLogger('silent');

async function tempDir(t: { teardown(fn: () => unknown): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'edgeway-oauth-store-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const client = { id: 'c1', org: ORG, redirect_uris: ['https://x/cb'], scopes: ['read'], secret: null };
const codeFields = (gen: string) => ({ client: 'c1', gen, org: ORG, redirect_uri: 'https://x/cb', redirect_given: true, challenge: 'c'.repeat(43), scope: ['read'], sub: 'u1' });

t.test('codes are single use; a replay revokes the grant; the sweep keeps used codes while their grant lives', async (t) => {
  let now = 1_000_000_000;
  const store = await OAuthStore.open(await tempDir(t), cfg, log, { now: () => now });
  t.teardown(() => store.close());
  await store.putClient(client).durable;
  const gen = store.client('c1')!.gen;
  const { code, durable } = store.issueCode(codeFields(gen));
  await durable;
  const unused = store.issueCode(codeFields(gen));
  const take = store.takeCode(code);
  t.equal(take.kind, 'fresh');
  if (take.kind !== 'fresh') return;
  t.equal(store.takeCode(code).kind, 'replayed', 'a second presentation while the first is in flight');
  const issued = store.grantCode(take.hash, take.rec);
  await issued.durable;
  t.ok(store.live(issued.access_token));
  t.equal(store.takeCode('ewc_unknown').kind, 'unknown');

  now += 61_000;
  await store.maintain();
  t.ok(store.state.codes.has(take.hash), 'used code kept: a late replay must still revoke');
  t.notOk(store.state.codes.has(hashValue(unused.code)), 'expired unused code swept');
  t.ok(store.live(issued.access_token), 'the access token lives 1 h');

  const replay = store.takeCode(code);
  t.equal(replay.kind, 'replayed');
  if (replay.kind === 'replayed') await replay.durable;
  t.equal(store.live(issued.access_token), undefined, 'revoked by the replay');
  t.equal(store.takeRefresh(issued.refresh_token!, 'c1').kind, 'unknown');

  now += cfg.refresh_token_ttl_s * 1000;
  await store.maintain();
  t.equal(store.state.toks.size, 0);
  t.equal(store.state.fams.size, 0);
  t.equal(store.state.codes.size, 0, 'the used code leaves with its grant');
});

t.test('refresh rotation and reuse; client deletion and re-creation', async (t) => {
  let now = 1_000_000_000;
  const store = await OAuthStore.open(await tempDir(t), cfg, log, { now: () => now });
  t.teardown(() => store.close());
  await store.putClient({ ...client, secret: 'scrypt$x' }).durable;
  const c = store.client('c1')!;
  const g = store.grantClientCredentials(c, ['read']);
  await g.durable;
  t.equal(g.refresh_token, undefined);
  const { code } = store.issueCode(codeFields(c.gen));
  const take = store.takeCode(code);
  if (take.kind !== 'fresh') return t.fail('fresh');
  const first = store.grantCode(take.hash, take.rec);
  t.equal(store.takeRefresh(first.refresh_token!, 'other-client').kind, 'unknown', "another client's refresh token is unknown");
  const r1 = store.takeRefresh(first.refresh_token!, 'c1');
  if (r1.kind !== 'fresh') return t.fail('fresh');
  const second = store.rotate(r1.hash, r1.fam, ['read']);
  await second.durable;
  t.equal(store.live(first.refresh_token!), undefined, 'rotated away');
  const reuse = store.takeRefresh(first.refresh_token!, 'c1');
  t.equal(reuse.kind, 'reused');
  if (reuse.kind === 'reused') await reuse.durable;
  t.equal(store.live(second.access_token), undefined, 'the family is revoked');

  // Replacing in the same org keeps grants; another org, or delete + re-create, kills them.
  t.ok(store.live(g.access_token));
  t.equal(store.putClient({ ...client, secret: 'scrypt$y' }).created, false);
  t.ok(store.live(g.access_token), 'same org: the grant lives');
  await store.deleteClient('c1');
  t.equal(store.deleteClient('c1'), undefined);
  await store.putClient({ ...client, secret: 'scrypt$y' }).durable;
  t.equal(store.live(g.access_token), undefined, 're-created id: old grants stay dead');
  now += 3_600_001;
  await store.maintain();
  t.equal(store.state.fams.size, 0);
});

t.test('the journal: reopen replays, compaction keeps state, a torn or unreadable line is ignored', async (t) => {
  const dir = await tempDir(t);
  const store = await OAuthStore.open(dir, cfg, log, { compactBytes: 1 });
  await store.putClient(client).durable;
  const gen = store.client('c1')!.gen;
  const { code, durable } = store.issueCode(codeFields(gen));
  await durable;
  const burned = store.issueCode(codeFields(gen));
  const b = store.takeCode(burned.code);
  if (b.kind === 'fresh') await store.burnCode(b.hash);
  const g = store.grantClientCredentials(store.client('c1')!, ['read']);
  await g.durable;
  const revoked = store.grantClientCredentials(store.client('c1')!, ['read']);
  await store.revoke(store.live(revoked.access_token)!);
  await store.maintain(); // over compactBytes: snapshot + a new generation
  const files = (await readdir(join(dir, 'oauth'))).sort();
  t.strictSame(files.filter((f) => f.startsWith('journal-')).length, 1, 'older journals removed');
  t.ok(files.includes('snapshot.jsonl'));
  const after = store.grantClientCredentials(store.client('c1')!, ['read']);
  await after.durable;
  await store.close();

  const journal = join(dir, 'oauth', files.find((f) => f.startsWith('journal-'))!);
  t.match(await readFile(journal, 'utf8'), /"o":"grant"/, 'the grant after the compaction is in the new journal');
  await appendFile(journal, '{"o":"client","c":{"id":"torn"');
  const reopened = await OAuthStore.open(dir, cfg, log);
  t.ok(reopened.live(g.access_token), 'before the compaction');
  t.ok(reopened.live(after.access_token), 'after the compaction');
  t.equal(reopened.live(revoked.access_token), undefined, 'revocation kept');
  t.equal(reopened.takeCode(burned.code).kind, 'replayed', 'burned code kept');
  t.equal(reopened.takeCode(code).kind, 'fresh', 'unused code kept');
  t.equal(reopened.client('torn'), undefined, 'torn line ignored');
  await reopened.close();

  const latest = join(dir, 'oauth', (await readdir(join(dir, 'oauth'))).filter((f) => f.startsWith('journal-')).sort().at(-1)!);
  await appendFile(latest, 'not json\n{"o":"client-del","id":"c1"}\n');
  const again = await OAuthStore.open(dir, cfg, log);
  t.ok(again.client('c1'), 'nothing after an unreadable line is applied');
  await again.close();
});

t.test('client secrets: scrypt with a bounded queue, so a flood of wrong secrets cannot take the thread pool', async (t) => {
  const stored = await hashClientSecret('right-secret-0123456789abcdef0123456789');
  t.match(stored, /^scrypt\$16384\$8\$1\$/);
  t.equal(await verifyClientSecret('right-secret-0123456789abcdef0123456789', stored), true);
  t.equal(await verifyClientSecret('wrong', stored), false);
  t.equal(await verifyClientSecret('x', 'bcrypt$whatever'), false, 'an unknown format never verifies');
  // Cheap parameters (read from the stored string) make the queue's bound reachable quickly.
  const cheap = `scrypt$2$1$1$${Buffer.alloc(16).toString('base64url')}$${'A'.repeat(43)}`;
  const results = await Promise.allSettled(Array.from({ length: 300 }, () => verifyClientSecret('guess', cheap)));
  const busy = results.filter((r) => r.status === 'rejected' && r.reason instanceof TooBusy).length;
  t.equal(busy, 300 - 2 - 256, 'two running, 256 queued, the rest refused at once');
  t.ok(results.every((r) => r.status === 'rejected' || r.value === false));
  const e = asOAuthError(new TooBusy('x'));
  t.equal(e.code, 'temporarily_unavailable');
  t.equal(e.status, 503);
  t.equal(asOAuthError(new Error('disk')).code, 'server_error');
  t.equal(await verifyClientSecret('guess', cheap), false, 'the queue drained');
});
