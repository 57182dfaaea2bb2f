// Waiting in tests: poll a condition until it holds or a deadline passes, then fail with what was
// awaited. One helper, one argument order (what, condition, options), for every suite.

import { setTimeout as sleep } from "node:timers/promises";

export interface WaitOptions {
  /** Give up after this long (default 10 s). */
  readonly timeoutMs?: number;
  /** Poll this often (default 10 ms). */
  readonly intervalMs?: number;
}

/** Resolves once `cond` holds; throws "timed out after … waiting for <what>" otherwise. */
export async function waitFor(
  what: string,
  cond: () => boolean | Promise<boolean>,
  o: WaitOptions = {},
): Promise<void> {
  const timeoutMs = o.timeoutMs ?? 10_000;
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(o.intervalMs ?? 10);
  }
}

/**
 * Resolves to the first value `fn` returns other than undefined. Errors `fn` throws meanwhile count as
 * "not yet" (a replica still starting); the last one is named if the deadline passes.
 */
export async function waitForValue<T>(
  what: string,
  fn: () => T | undefined | Promise<T | undefined>,
  o: WaitOptions = {},
): Promise<T> {
  const timeoutMs = o.timeoutMs ?? 10_000;
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ""}`,
      );
    await sleep(o.intervalMs ?? 10);
  }
}
