// One error base for the whole source: every error class of src/ descends from OrdererError, so a caller
// finds a code on any of them (errorCode), and a cause survives where there is one.

import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { CounterError } from "../../src/bft/errors.ts";
import { CliError } from "../../src/cli/errors.ts";
import { CoordError } from "../../src/coord/errors.ts";
import { API_ERROR_STATUS } from "../../src/node/api/statuses.ts";
import { ApiError } from "../../src/ordering/errors.ts";
import { StoreError } from "../../src/storage/level-store.ts";
import { CodecError } from "../../src/transport/codec.ts";
import { TransportConfigError } from "../../src/transport/transport.ts";
import { errorCode, OrdererError } from "../../src/util/errors.ts";

const SRC = fileURLToPath(new URL("../../src/", import.meta.url));

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : [],
  );
}

describe("errors", () => {
  it("every error class of src/ extends OrdererError or another error class of src/", () => {
    const classes = new Map<string, { base: string; file: string }>();
    for (const f of sources(SRC))
      for (const m of readFileSync(f, "utf8").matchAll(/class (\w+) extends (\w+)/g))
        if (/Error$/.test(m[1] as string) || /Error$/.test(m[2] as string))
          classes.set(m[1] as string, { base: m[2] as string, file: relative(SRC, f) });
    assert.ok(classes.size >= 15, `found ${classes.size} error classes`);
    const bad: string[] = [];
    for (const [name, { base, file }] of classes) {
      let b = base;
      for (let hops = 0; b !== "OrdererError" && hops < 10; hops++) b = classes.get(b)?.base ?? "Error";
      if (name !== "OrdererError" && b !== "OrdererError") bad.push(`${file}: ${name} extends ${base}`);
    }
    assert.deepEqual(bad, []);
  });

  it("a code, a name and a cause on every kind", () => {
    const cause = new Error("disk gone");
    const cases: [OrdererError, string, string][] = [
      [new CodecError("TRUNCATED", "short"), "TRUNCATED", "CodecError"],
      [new CounterError("NOT_INCREASING", "no"), "NOT_INCREASING", "CounterError"],
      [new CoordError("NONODE", "missing", "/a"), "NONODE", "CoordError"],
      [new CliError("BAD_ARGUMENT", "bad"), "BAD_ARGUMENT", "CliError"],
      [new TransportConfigError("ids"), "TRANSPORT_CONFIG", "TransportConfigError"],
      [new StoreError("cannot open", { cause }), "STORE_FAILED", "StoreError"],
      [new ApiError("TIMEOUT", "late"), "TIMEOUT", "ApiError"],
    ];
    for (const [e, code, name] of cases) {
      assert.ok(e instanceof OrdererError && e instanceof Error, `${name} is an OrdererError`);
      assert.equal(e.code, code);
      assert.equal(e.name, name);
      assert.equal(errorCode(e), code);
    }
    assert.equal(new StoreError("cannot open", { cause }).cause, cause);
    assert.equal(errorCode(Object.assign(new Error("x"), { code: "ENOENT" })), "ENOENT");
    assert.equal(errorCode(new Error("plain")), undefined);
  });

  it("API codes become HTTP statuses in the API layer only", () => {
    assert.equal(API_ERROR_STATUS.TIMEOUT, 504);
    assert.equal(API_ERROR_STATUS.NO_QUORUM, 503);
    assert.equal("status" in new ApiError("MALFORMED", "x"), false);
  });
});
