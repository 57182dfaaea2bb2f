// What the package offers users: its exports (orderer/client, orderer/coord-client, orderer/recipes)
// are built from modules of src/, and each bundles for the browser with no Node built-in.

import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { buildSync } from "esbuild";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const pkg = JSON.parse(readFileSync(`${ROOT}package.json`, "utf8")) as {
  exports: Record<string, string | { types: string; default: string }>;
  bin: Record<string, string>;
  files: string[];
};

/** The source module a dist/ path is compiled from. */
const sourceOf = (distPath: string): string =>
  distPath
    .replace(/^\.\/dist\//, "src/")
    .replace(/\.js$/, ".ts")
    .replace(/\.d\.ts$/, ".ts");

describe("the package", () => {
  it("exports the clients from modules that the build compiles (types beside each)", () => {
    const clients = Object.entries(pkg.exports).filter(([k]) => k !== "./package.json");
    assert.deepEqual(
      clients.map(([k]) => k),
      ["./client", "./coord-client", "./recipes"],
    );
    for (const [name, target] of clients) {
      assert.equal(typeof target, "object", `${name} names its types and its module`);
      const t = target as { types: string; default: string };
      assert.match(t.default, /^\.\/dist\/.+\.js$/, `${name} points into dist/`);
      assert.equal(t.types, t.default.replace(/\.js$/, ".d.ts"), `${name}'s types sit beside it`);
      assert.ok(existsSync(`${ROOT}${sourceOf(t.default)}`), `${name}: ${sourceOf(t.default)} exists`);
    }
    assert.ok(pkg.files.includes("dist/") && pkg.files.includes("bin/"), "the package ships dist/ and bin/");
    assert.equal(pkg.bin.orderer, "bin/orderer.mjs");
  });

  for (const [name, target] of Object.entries(pkg.exports).filter(([k]) => k !== "./package.json")) {
    it(`${name} bundles for the browser without Node built-ins`, () => {
      const entry = `${ROOT}${sourceOf((target as { default: string }).default)}`;
      const r = buildSync({
        entryPoints: [entry],
        bundle: true,
        platform: "browser",
        format: "esm",
        write: false,
        logLevel: "silent",
        metafile: true,
      });
      const inputs = Object.keys(r.metafile?.inputs ?? {});
      assert.ok(inputs.length > 5, `the bundle has its modules (${inputs.length})`);
      assert.deepEqual(
        inputs.filter((i) => i.startsWith("node:")),
        [],
        "no Node built-in in the browser bundle",
      );
    });
  }
});
