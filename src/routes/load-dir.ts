// Static host entries from `routes/*.yaml` (DESIGN.md "Host entries": source
// 'static', untouchable through the admin API). Read at start and on SIGHUP.
//
// `{domain}` in a `host` value is replaced by the configured domain, so the
// shipped examples (`host: "{domain}"`, `host: "api.{domain}"`) work unchanged
// with any domain. A static `root` is relative to the routes directory and
// resolves to an absolute path that must be an existing directory.

import { readdir, readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { LineCounter, parseDocument } from 'yaml';
import { EdgewayError, isEdgewayError } from '../errors.js';
import type { HostEntry, LocationSpec } from './types.js';
import { validateEntry } from './validate-entry.js';

const DOMAIN_PLACEHOLDER = '{domain}';

function routesError(file: string, field: string | undefined, expected: string): EdgewayError {
  const where = field === undefined ? '' : `${field}: `;
  return new EdgewayError('ROUTES_INVALID', `${file}: ${where}${expected}`, field === undefined ? undefined : { field });
}

/** Files to read: *.yaml and *.yml, sorted by name so load order (and errors) are stable. */
async function listFiles(dir: string): Promise<string[]> {
  let dirents;
  try {
    dirents = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new EdgewayError('ROUTES_INVALID', `${dir}: cannot read the routes directory`, { cause: err });
  }
  return dirents
    .filter((d) => (d.isFile() || d.isSymbolicLink()) && (d.name.endsWith('.yaml') || d.name.endsWith('.yml')))
    .map((d) => d.name)
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/** The file's YAML as plain data: one mapping or a list of them (an empty file holds none). */
async function parseFile(dir: string, file: string): Promise<{ items: unknown[]; isList: boolean }> {
  let text: string;
  try {
    text = await readFile(join(dir, file), 'utf8');
  } catch (err) {
    throw new EdgewayError('ROUTES_INVALID', `${file}: cannot read the file`, { cause: err });
  }
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  const first = doc.errors[0];
  if (first !== undefined) {
    const { line } = lineCounter.linePos(first.pos[0]);
    throw new EdgewayError('ROUTES_INVALID', `${file}: line ${line}: ${first.message.split('\n')[0]}`);
  }
  let data: unknown;
  try {
    data = doc.toJS(); // throws on alias bombs (more than 100 alias expansions)
  } catch (err) {
    throw new EdgewayError('ROUTES_INVALID', `${file}: ${(err as Error).message}`, { cause: err });
  }
  if (data === null || data === undefined) return { items: [], isList: false };
  return Array.isArray(data) ? { items: data, isList: true } : { items: [data], isList: false };
}

function substituteDomain(raw: unknown, domain: string): unknown {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return raw;
  const host = (raw as Record<string, unknown>).host;
  if (typeof host !== 'string' || !host.includes(DOMAIN_PLACEHOLDER)) return raw;
  return { ...raw, host: host.replaceAll(DOMAIN_PLACEHOLDER, domain) };
}

/** Replaces each static root by its absolute path, checking it is a directory. */
async function resolveRoots(entry: HostEntry, dir: string, file: string, prefix: string): Promise<HostEntry> {
  if (!entry.locations.some((l) => l.static !== undefined)) return entry;
  const locations: LocationSpec[] = [];
  for (const [i, loc] of entry.locations.entries()) {
    if (loc.static === undefined) {
      locations.push(loc);
      continue;
    }
    const root = resolve(dir, loc.static.root);
    const isDir = await stat(root).then((s) => s.isDirectory(), () => false);
    if (!isDir) throw routesError(file, `${prefix}locations[${i}].static.root`, `expected an existing directory (${root})`);
    locations.push(Object.freeze({ ...loc, static: Object.freeze({ ...loc.static, root }) }));
  }
  return Object.freeze({ ...entry, locations: Object.freeze(locations) });
}

/**
 * Every host entry in `dir` (not recursive), with source 'static'. A missing
 * directory means no static routes. Errors name the file and the field, e.g.
 * `api.yaml: locations[0].upstream: expected an http or https URL …`; in a file
 * holding a list, the field starts with the item's index (`[1].host`).
 */
export async function loadRoutesDir(dir: string, domain: string): Promise<HostEntry[]> {
  const absDir = resolve(dir);
  const entries: HostEntry[] = [];
  const fileOf = new Map<string, string>();
  for (const file of await listFiles(absDir)) {
    const { items, isList } = await parseFile(absDir, file);
    for (const [n, raw] of items.entries()) {
      const prefix = isList ? `[${n}].` : '';
      let entry: HostEntry;
      try {
        entry = validateEntry(substituteDomain(raw, domain), { source: 'static' });
      } catch (err) {
        if (!isEdgewayError(err) || err.field === undefined) throw err;
        const expected = err.message.startsWith(`${err.field}: `) ? err.message.slice(err.field.length + 2) : err.message;
        throw routesError(file, prefix + err.field, expected);
      }
      const other = fileOf.get(entry.host);
      if (other !== undefined) throw routesError(file, `${prefix}host`, `'${entry.host}' is already defined in ${other}`);
      fileOf.set(entry.host, file);
      entries.push(await resolveRoots(entry, absDir, file, prefix));
    }
  }
  return entries;
}
