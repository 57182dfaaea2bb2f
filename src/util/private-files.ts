// Files that hold secrets and the directories around them (docs/operations.md, "File modes"): secrets are
// written 0600 and their directories made 0700, whatever modes they had before (a file that existed is
// replaced, not rewritten in place, so it never holds the new secret under its old mode); a child
// process is handed its secrets in such a file, never in its environment (which others may read, e.g.
// through /proc/<pid>/environ or a crash report, and which its own children inherit).

import {
  chmodSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";

const HANDOFF_PREFIX = "orderer-secret-";

/** Mode of a file that holds a secret. */
export const PRIVATE_FILE_MODE = 0o600;
/** Mode of a directory that holds secrets or a replica's data. */
export const PRIVATE_DIR_MODE = 0o700;

/** Creates `dir` (and missing parents) 0700, or makes an existing one 0700. */
export function privateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  chmodSync(dir, PRIVATE_DIR_MODE);
}

/**
 * Makes an existing directory and the regular files directly in it private (0700 and 0600): a replica's
 * data directory made by an older version or another umask.
 */
export function makePrivate(dir: string): void {
  privateDir(dir);
  for (const e of readdirSync(dir, { withFileTypes: true }))
    if (e.isFile()) chmodSync(join(dir, e.name), PRIVATE_FILE_MODE);
}

/** Writes `text` to a new file of mode 0600 at `path`, replacing whatever was there (a symlink too). */
export function writePrivateFile(path: string, text: string): void {
  rmSync(path, { force: true });
  writeFileSync(path, text, { mode: PRIVATE_FILE_MODE, flag: "wx" });
  chmodSync(path, PRIVATE_FILE_MODE); // a umask may have narrowed it; never wider
}

/** The mode bits of a path (tests, checks). */
export function modeOf(path: string): number {
  return lstatSync(path).mode & 0o777;
}

/**
 * Hands `payload` (JSON) to a child process: a 0600 file in a new 0700 directory; the child names it in
 * an environment variable and reads it with takeHandOff, which removes it. `remove` removes it too
 * (the child never started).
 */
export function handOff(payload: unknown): { readonly path: string; readonly remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), HANDOFF_PREFIX));
  chmodSync(dir, PRIVATE_DIR_MODE);
  const path = join(dir, "config.json");
  writePrivateFile(path, JSON.stringify(payload));
  return { path, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Reads and removes the file a parent handed over in `path` (see handOff), and its directory. */
export function takeHandOff(path: string): unknown {
  const text = readFileSync(path, "utf8");
  rmSync(path, { force: true });
  const dir = dirname(path);
  if (basename(dir).startsWith(HANDOFF_PREFIX))
    try {
      rmdirSync(dir);
    } catch {
      // not empty, or gone: not ours to remove
    }
  return JSON.parse(text);
}
