// Reads the config file, parses it strictly and returns a deeply frozen Config.
// Everything here fails with CONFIG_INVALID (exit 2 at start, keep the old
// config on SIGHUP); parse errors carry FILE:LINE:COLUMN like a compiler's,
// because an operator fixes them in an editor.

import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { parseDocument, type YAMLError } from 'yaml';
import { EdgewayError } from '../errors.js';
import type { Config } from './types.js';
import { validateConfig } from './validate.js';

export async function loadConfig(file: string): Promise<Config> {
  const path = resolve(file);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new EdgewayError('CONFIG_INVALID', `${path}: cannot read the config file (${why})`, { cause: err });
  }
  return deepFreeze(validateConfig(parseYaml(text, path), path));
}

/** Parses one YAML document; duplicate keys, several documents and unknown tags are errors. */
export function parseYaml(text: string, path: string): unknown {
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: true });
  const problems = [...doc.errors, ...doc.warnings];
  if (problems.length > 0) {
    throw new EdgewayError('CONFIG_INVALID', problems.map((e) => describe(e, path)).join('\n'));
  }
  try {
    return doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    // e.g. an alias to an anchor defined later: the document parses but does not resolve.
    throw new EdgewayError('CONFIG_INVALID', `${path}: ${(err as Error).message}`, { cause: err });
  }
}

function describe(e: YAMLError, path: string): string {
  const at = e.linePos?.[0];
  // With prettyErrors the message repeats the position and a source excerpt; keep the first clause.
  const what = e.message.split(' at line ')[0]!.split('\n')[0];
  return at ? `${path}:${at.line}:${at.col}: ${what} (${e.code})` : `${path}: ${what} (${e.code})`;
}

/** Object.freeze, recursively; already frozen objects are assumed done (and cycles end there). */
export function deepFreeze<T>(o: T): T {
  if (typeof o !== 'object' || o === null || Object.isFrozen(o)) return o;
  Object.freeze(o);
  for (const v of Object.values(o)) deepFreeze(v);
  return o;
}
