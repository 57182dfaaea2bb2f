// Loaded first by every entry point. Node 20 lacks Promise.withResolvers (ES2024), which libp2p 3 uses.

export interface Resolvers<T> {
  promise: Promise<T>;
  resolve: (value: T | PromiseLike<T>) => void;
  reject: (reason?: unknown) => void;
}

/** The spec's behaviour: a fresh promise with its resolve and reject functions. */
export function withResolvers<T>(this: PromiseConstructor | undefined): Resolvers<T> {
  const Ctor: PromiseConstructor = typeof this === "function" ? this : Promise;
  let resolve!: (value: T | PromiseLike<T>) => void;
  let reject!: (reason?: unknown) => void;
  const promise = new Ctor<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

type WithResolversCtor = PromiseConstructor & { withResolvers?: <T>() => Resolvers<T> };

/** Installs the polyfill when missing; returns true when it had to. Idempotent. */
export function installPolyfills(): boolean {
  const P = Promise as WithResolversCtor;
  if (typeof P.withResolvers === "function") return false;
  Object.defineProperty(Promise, "withResolvers", {
    value: withResolvers,
    writable: true,
    configurable: true,
    enumerable: false,
  });
  return true;
}

installPolyfills();
