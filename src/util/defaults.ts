// Option defaults in one place per component: each writes a frozen `*_DEFAULTS` table beside its options
// type and resolves its options with withDefaults, so its body reads resolved values (test/unit/defaults.test.ts
// finds an inline `opts.x ?? literal`).

/** The defaults table of options `O` for the keys `K` it fills. */
export type DefaultsOf<O, K extends keyof O> = { readonly [P in K]-?: Exclude<O[P], undefined> };

/** Options `O` with the keys of its defaults table `D` always set. */
export type WithDefaults<O, D> = Omit<O, keyof D> & {
  readonly [P in keyof D]-?: P extends keyof O ? Exclude<O[P], undefined> : D[P];
};

/**
 * A copy of `opts` in which each option of `defaults` that is unset (undefined or null) takes its default,
 * exactly as `opts.x ?? default` would; options without a default are copied as they are.
 */
export function withDefaults<D extends object, O extends object>(defaults: D, opts: O): WithDefaults<O, D> {
  const set = opts as unknown as Record<string, unknown>;
  const out: Record<string, unknown> = { ...set };
  for (const [k, d] of Object.entries(defaults)) out[k] = set[k] ?? d;
  return out as unknown as WithDefaults<O, D>;
}
