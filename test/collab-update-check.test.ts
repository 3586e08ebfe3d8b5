// checkUpdate (src/collab/update-check.ts) against Yjs itself: every update
// Yjs writes passes, and nothing it passes can make Yjs's reading throw after
// the structs went in (issue 6 points 3 and 4: a bad delete set). What only
// integrating can refuse is Room.apply's case (test/collab-room.test.ts).

import t from 'tap';
import * as Y from 'yjs';
import { MalformedUpdate, checkUpdate } from '../src/collab/update-check.js';

/** Updates of every struct and content kind Yjs writes in format v1. */
function samples(): Uint8Array[] {
  const out: Uint8Array[] = [];
  const doc = new Y.Doc({ gc: true });
  doc.clientID = 300_000; // a client id of several varint bytes
  doc.on('update', (u: Uint8Array) => out.push(u));
  const map = doc.getMap('m');
  map.set('n', 1);
  map.set('neg', -123456789);
  map.set('f64', 0.1); // not a float32: lib0 writes 8 bytes
  map.set('f32', 0.5);
  map.set('big', 2n ** 60n);
  map.set('s', 'héllo ✓');
  map.set('t', true);
  map.set('u', null);
  map.set('o', { a: [1, 'x', { b: false }], c: new Uint8Array([1, 2, 3]) });
  map.set('n', 2); // overwrite: a delete set
  const text = doc.getText('t');
  text.insert(0, 'hello world');
  text.format(0, 5, { bold: true });
  text.insertEmbed(5, { image: 'x.png' });
  text.delete(2, 3);
  const arr = doc.getArray<unknown>('a');
  arr.insert(0, [new Uint8Array([9, 8]), 'a', 3]);
  arr.insert(1, [new Y.Map(), new Y.Array(), new Y.Text()]);
  arr.delete(0, 1);
  const xml = doc.getXmlFragment('x');
  const el = new Y.XmlElement('p');
  el.setAttribute('class', 'c');
  el.insert(0, [new Y.XmlText('in p')]);
  xml.insert(0, [el, new Y.XmlHook('hook') as unknown as Y.XmlText]); // Yjs's types leave hooks out of insert()
  const late = out.length; // the next update's structs start far past out[0]'s: merged, a Skip fills the gap
  arr.push([new Y.Doc({ guid: 'sub', meta: { k: 1 } })]);
  const gone = doc.getArray<Y.Map<unknown>>('g');
  const inner = new Y.Map<unknown>();
  gone.insert(0, [inner]);
  inner.set('x', 1);
  inner.set('y', 'z');
  gone.delete(0, 1); // the map's own items are collected: GC structs
  // Everything at once, with GC structs for what was deleted, and a merge (Skip structs for the gap).
  out.push(Y.encodeStateAsUpdate(doc));
  const other = new Y.Doc();
  other.clientID = 7;
  other.getMap('m').set('k', 'v');
  out.push(Y.mergeUpdates([out[0]!, Y.encodeStateAsUpdate(other), out[late]!]));
  out.push(Y.encodeStateAsUpdate(new Y.Doc())); // empty
  return out;
}

function refuses(u: Uint8Array): boolean {
  try {
    checkUpdate(u);
    return false;
  } catch (err) {
    if (err instanceof MalformedUpdate) return true;
    throw err;
  }
}

function decodes(u: Uint8Array): boolean {
  try {
    Y.decodeUpdate(u);
    return true;
  } catch {
    return false;
  }
}

/** Applies to a fresh doc: 'ok', 'refused' (threw with nothing in the doc) or 'half' (threw after structs went in). */
function applyFresh(u: Uint8Array): 'ok' | 'refused' | 'half' {
  const doc = new Y.Doc();
  let changed = false;
  doc.on('afterTransaction', (tr: Y.Transaction) => {
    changed = tr.afterState.size > 0 || tr.deleteSet.clients.size > 0;
  });
  try {
    Y.applyUpdate(doc, u);
    return 'ok';
  } catch {
    return changed ? 'half' : 'refused';
  }
}

t.test('every update Yjs writes passes, and Yjs reads each the same way', async (t) => {
  const all = samples();
  t.ok(all.length > 20, `${all.length} updates`);
  const kinds = new Set<string>();
  for (const u of all) for (const s of Y.decodeUpdate(u).structs) kinds.add(s instanceof Y.Item ? s.content.constructor.name : s.constructor.name);
  // ContentJSON is left out: Yjs reads it from old documents but no longer writes it.
  const every = ['GC', 'Skip', 'ContentAny', 'ContentBinary', 'ContentDeleted', 'ContentDoc', 'ContentEmbed', 'ContentFormat', 'ContentString', 'ContentType'];
  t.same(every.filter((k) => !kinds.has(k)), [], `the samples hold every struct and content kind: ${[...kinds].sort().join(', ')}`);
  for (const [i, u] of all.entries()) {
    t.doesNotThrow(() => checkUpdate(u), `sample ${i} (${u.length} bytes)`);
    t.equal(applyFresh(u), 'ok', `Yjs applies sample ${i}`);
  }
});

t.test('cut short anywhere: refused, and nothing checkUpdate accepts is half applied by Yjs', async (t) => {
  let refused = 0;
  let cases = 0;
  for (const u of samples()) {
    for (let len = 0; len < u.length; len++) {
      const cut = u.slice(0, len); // a copy: nothing behind its end for Yjs to read
      cases++;
      if (refuses(cut)) refused++;
      else if (applyFresh(cut) === 'half') t.fail(`accepted a cut of ${len}/${u.length} bytes that Yjs half applies`);
    }
  }
  t.ok(refused > cases * 0.9, `${refused} of ${cases} cuts refused`);
  // The case the check exists for: a delete set cut short after good structs.
  const doc = new Y.Doc();
  doc.getMap('m').set('a', 1);
  doc.getMap('m').set('a', 2);
  const full = Y.encodeStateAsUpdate(doc);
  const cut = full.slice(0, full.length - 1);
  t.equal(applyFresh(cut), 'half', 'Yjs alone applies the structs of an update whose delete set is cut short, then throws');
  t.ok(refuses(cut), 'checkUpdate refuses it first');
});

t.test('random byte changes: nothing Yjs reads is refused; nothing accepted that Yjs cannot read is half applied', async (t) => {
  // A fixed seed: the same cases every run (xorshift32).
  let seed = 0x2545f491;
  const rand = (n: number): number => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) % n;
  };
  let accepted = 0;
  let wrong = 0;
  let missed = 0;
  let integrating = 0;
  const all = samples();
  for (let k = 0; k < 20_000; k++) {
    const u = all[rand(all.length)]!.slice();
    for (let flips = 1 + rand(3); flips > 0; flips--) u[rand(u.length)] = rand(256);
    const ok = !refuses(u);
    const decoded = decodes(u);
    if (!decoded && ok && applyFresh(u) === 'half') wrong++; // accepted, Yjs's reader throws on it, yet applying it throws after applying some
    if (decoded && !ok) missed++; // Yjs reads it; checkUpdate refused it
    if (ok) {
      accepted++;
      if (decoded && applyFresh(u) === 'half') integrating++;
    }
  }
  t.equal(wrong, 0, `of ${accepted} accepted changed updates, none that Yjs cannot read throws after applying part of it`);
  t.equal(missed, 0, 'nothing Yjs reads to its end (and Yjs only reads inside the bytes: these are copies) is refused');
  t.ok(accepted > 1000, 'and many changed updates were accepted (the check is not simply refusing everything)');
  t.ok(integrating > 0, `${integrating} of them Yjs reads whole and still throws on while integrating: Room.apply's case (test/collab-room.test.ts)`);
});

t.test('unknown content and type refs, bad any values, huge counts: refused without reading past the end', async (t) => {
  const bad: [string, number[]][] = [
    ['content ref 11', [1, 1, 5, 0, 11, 1, 1, 0x61, 0]],
    ['type ref 7', [1, 1, 5, 0, 7, 1, 1, 0x61, 7, 0]],
    ['any type 115', [1, 1, 5, 0, 8, 1, 1, 0x61, 1, 115, 0]],
    ['struct count 2^40', [1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20, 5, 0]],
    ['varint past 2^53', [1, 1, 5, 0, 8, 1, 1, 0x61, 1, 125, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0]],
  ];
  for (const [name, bytes] of bad) t.ok(refuses(new Uint8Array(bytes)), name);
  const good = new Uint8Array([1, 1, 5, 0, 8, 1, 1, 0x61, 1, 125, 0x05, 0]);
  t.doesNotThrow(() => checkUpdate(good), 'the same any-content struct with a small integer is read');
  t.equal(applyFresh(good), 'ok', 'and Yjs applies it');
});
