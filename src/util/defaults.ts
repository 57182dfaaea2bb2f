// Option defaults in one place per component: each writes a frozen `*_DEFAULTS` table beside its options
// type and resolves its options with withDefaults, so its body reads resolved values (test/unit/defaults.test.ts
// finds an inline `opts.x ?? literal`).

/** The defaults table of options `O` for the keys `K` it fills. */
export type DefaultsOf<O, K extends keyof O> = { readonly [P in K]-?: Exclude<O[P], undefined> };

/** Options `O` with the keys of its defaults table `D` always set. */
export type WithDefaults<O, D> = Omit<O, keyof D> & {
  readonly [P in keyof D]-?: P extends keyof O ? Exclude<O[P], undefined> : D[P];
};

/** `opts` over `defaults`: an option that is unset or undefined takes its default (as `opts.x ?? d` did). */
export function withDefaults<D extends object, O extends object>(defaults: D, opts: O): WithDefaults<O, D> {
  const set = Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined));
  return { ...defaults, ...set } as WithDefaults<O, D>;
}
