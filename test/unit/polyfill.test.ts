import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { installPolyfills, type Resolvers, withResolvers } from "../../src/util/polyfill.ts";

type MaybeWithResolvers = PromiseConstructor & { withResolvers?: unknown };

/** Calls the polyfill as a method of `ctor` (as Promise.withResolvers is called), or bare. */
function make<T>(ctor: PromiseConstructor | undefined): Resolvers<T> {
  return withResolvers.call(ctor) as Resolvers<T>;
}

/** Runs `fn` with Promise.withResolvers removed, then puts back exactly what was there. */
function withoutWithResolvers<R>(fn: () => R): R {
  const original = Object.getOwnPropertyDescriptor(Promise, "withResolvers");
  delete (Promise as MaybeWithResolvers).withResolvers;
  try {
    return fn();
  } finally {
    if (original) Object.defineProperty(Promise, "withResolvers", original);
    else delete (Promise as MaybeWithResolvers).withResolvers;
  }
}

describe("withResolvers", () => {
  it("resolves the promise through resolve", async () => {
    const r = make<number>(Promise);
    r.resolve(42);
    assert.equal(await r.promise, 42);
  });

  it("rejects the promise through reject", async () => {
    const r = make<number>(Promise);
    const err = new Error("boom");
    r.reject(err);
    await assert.rejects(r.promise, (e) => e === err);
  });

  it("works when called without a receiver", async () => {
    const r = make<string>(undefined);
    assert.ok(r.promise instanceof Promise, "r.promise instanceof Promise");
    r.resolve("bare");
    assert.equal(await r.promise, "bare");
  });

  it("adopts a promise passed to resolve", async () => {
    const r = make<string>(Promise);
    r.resolve(Promise.resolve("inner"));
    assert.equal(await r.promise, "inner");
  });

  it("settles only once", async () => {
    const r = make<number>(Promise);
    r.resolve(1);
    r.resolve(2);
    r.reject(new Error("late"));
    assert.equal(await r.promise, 1);
  });

  it("builds instances of the constructor it is called on", async () => {
    class SubPromise<T> extends Promise<T> {}
    const r = make<number>(SubPromise as PromiseConstructor);
    assert.ok(r.promise instanceof SubPromise, "r.promise instanceof SubPromise");
    r.resolve(7);
    assert.equal(await r.promise, 7);
  });

  it("returns a fresh promise on each call", () => {
    const a = make<number>(Promise);
    const b = make<number>(Promise);
    assert.notEqual(a.promise, b.promise);
    assert.notEqual(a.resolve, b.resolve);
  });
});

describe("installPolyfills", () => {
  it("Promise.withResolvers exists once the module is imported", () => {
    assert.equal(typeof (Promise as MaybeWithResolvers).withResolvers, "function");
  });

  it("is idempotent: leaves an existing Promise.withResolvers alone", () => {
    const before = Object.getOwnPropertyDescriptor(Promise, "withResolvers");
    assert.equal(installPolyfills(), false);
    assert.equal(installPolyfills(), false);
    assert.deepEqual(Object.getOwnPropertyDescriptor(Promise, "withResolvers"), before);
  });

  it("installs a working, non-enumerable Promise.withResolvers when it was deleted", async () => {
    const before = Object.getOwnPropertyDescriptor(Promise, "withResolvers");
    const r = withoutWithResolvers(() => {
      assert.equal(typeof (Promise as MaybeWithResolvers).withResolvers, "undefined");
      assert.equal(installPolyfills(), true);
      assert.equal(installPolyfills(), false, "a second call must not install again");
      const desc = Object.getOwnPropertyDescriptor(Promise, "withResolvers");
      assert.ok(desc, "desc");
      assert.equal(desc.value, withResolvers);
      assert.equal(desc.enumerable, false);
      assert.equal(desc.writable, true);
      assert.equal(desc.configurable, true);
      assert.ok(
        !Object.keys(Promise).includes("withResolvers"),
        '!Object.keys(Promise).includes("withResolvers")',
      );
      const P = Promise as PromiseConstructor & { withResolvers: <T>() => Resolvers<T> };
      return P.withResolvers<string>();
    });
    assert.deepEqual(Object.getOwnPropertyDescriptor(Promise, "withResolvers"), before, "original restored");
    r.resolve("installed");
    assert.equal(await r.promise, "installed");
  });
});
