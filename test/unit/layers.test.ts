// The source tree's layers: a module imports only from its own folder or from folders of lower layers
// (docs/architecture.md). Checked over every relative import of src/.

import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, normalize, relative } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";

const SRC = fileURLToPath(new URL("../../src/", import.meta.url));

/** Lowest first; folders of one layer do not import each other. */
const LAYERS: readonly (readonly string[])[] = [
  ["util"],
  ["bft"],
  ["crypto", "storage"],
  ["counter", "transport"],
  ["ordering"],
  ["coord"],
  ["node"],
  ["cli"],
];
const layerOf = (folder: string): number => LAYERS.findIndex((l) => l.includes(folder));

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : [],
  );
}

/** Relative import specifiers of a module (static, re-exports and literal dynamic ones). */
function importsOf(source: string): string[] {
  const out: string[] = [];
  for (const m of source.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)"(\.{1,2}\/[^"]+)"/gm))
    out.push(m[1] as string);
  return out;
}

describe("source layers", () => {
  it("every folder of src/ has a layer", () => {
    const folders = readdirSync(SRC, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => e.name);
    for (const f of folders) assert.ok(layerOf(f) >= 0, `src/${f} is in LAYERS`);
  });

  it("no module imports from a higher layer or from another folder of its own layer", () => {
    const bad: string[] = [];
    let seen = 0;
    for (const file of sources(SRC)) {
      const from = relative(SRC, file).split("/")[0] as string;
      for (const spec of importsOf(readFileSync(file, "utf8"))) {
        seen++;
        const target = relative(SRC, normalize(join(dirname(file), spec)));
        const to = target.split("/")[0] as string;
        if (target.startsWith("..")) bad.push(`${relative(SRC, file)} imports ${spec}, outside src/`);
        else if (to !== from && layerOf(to) >= layerOf(from))
          bad.push(`src/${relative(SRC, file)} (${from}) imports ${spec} (${to})`);
      }
    }
    assert.ok(seen > 300, `the scan found the imports (${seen})`);
    assert.deepEqual(bad, []);
  });
});
