// Crash-safe file replacement: readers see the old file or the new one, never a
// torn mix. Used for keys and certificates here, and by the route snapshot and
// other state under data_dir.
//
// The sequence is the one POSIX makes durable: write a temp file in the same
// directory (rename(2) is atomic only within one filesystem), fsync it so the
// data is on disk before the name points at it, rename over the target, then
// fsync the directory so the rename itself survives a power loss.

import { randomBytes } from 'node:crypto';
import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** Filesystems that cannot fsync a directory (some FUSE and network mounts) report these. */
const DIR_FSYNC_UNSUPPORTED = new Set(['EINVAL', 'ENOTSUP', 'EISDIR', 'EPERM']);

function errorCode(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e ? String((e as { code: unknown }).code) : undefined;
}

/**
 * Replaces `path` with `data` atomically. When `mode` is given the file gets
 * exactly that mode (set with fchmod before the rename, so the secret never
 * exists under its final name with looser permissions and the umask cannot
 * widen or narrow it); otherwise the usual 0666 & ~umask applies.
 */
export async function writeFileAtomic(
  path: string,
  data: string | Uint8Array,
  mode?: number,
  opts: { readonly durable?: boolean } = {},
): Promise<void> {
  // durable: false keeps the atomicity (old file or new, never a torn mix)
  // and skips the fsyncs, for files that are verified on load and cheap to
  // recreate (self-signed leaves).
  const durable = opts.durable ?? true;
  const dir = dirname(path);
  // Dot-prefixed and random: invisible to directory scans that skip dotfiles
  // (files mode, routes/) and never shared between concurrent writers.
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  // 'wx' (O_EXCL): never follow a planted symlink or reuse an existing file.
  // With an explicit mode it is created 0600 first, so secret data is never
  // readable by others even briefly, then widened to `mode` if asked.
  const fh = await open(tmp, 'wx', mode === undefined ? 0o666 : 0o600);
  let renamed = false;
  try {
    try {
      await fh.writeFile(data);
      if (mode !== undefined) await fh.chmod(mode);
      if (durable) await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
    renamed = true;
  } finally {
    if (!renamed) await unlink(tmp).catch(() => undefined);
  }
  if (durable) await fsyncDir(dir);
}

/** Makes a rename or create in `dir` durable. */
export async function fsyncDir(dir: string): Promise<void> {
  let dh;
  try {
    dh = await open(dir, 'r');
    await dh.sync();
  } catch (e) {
    if (!DIR_FSYNC_UNSUPPORTED.has(errorCode(e) ?? '')) throw e;
  } finally {
    await dh?.close();
  }
}
