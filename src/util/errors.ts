// The one base of the project's errors: a stable machine-readable `code` beside the human message,
// and the underlying `cause` when there is one. Each layer narrows `code` to its own union; how a code
// maps to an HTTP status is the API layer's business (src/node/api/statuses.ts), not the error's.

export class OrdererError<C extends string = string> extends Error {
  readonly code: C;

  constructor(code: C, message: string, options?: { readonly cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.name = new.target.name;
  }
}

/** The code of any of the project's errors, or of a system error (`ENOENT`, ...); otherwise undefined. */
export function errorCode(err: unknown): string | undefined {
  if (err instanceof OrdererError) return err.code;
  const sys = (err as { code?: unknown } | null)?.code;
  return typeof sys === "string" ? sys : undefined;
}
