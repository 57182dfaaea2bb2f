// The one LevelDB of a replica is shared by the core, the ledger, the transaction index, the znode
// tree and the evidence of equivocation: their key prefixes (src/storage/keyspace.ts) must not overlap,
// and no source module may spell a key prefix of its own.

import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { KEYSPACE } from "../../src/storage/keyspace.ts";

const SRC = fileURLToPath(new URL("../../src/", import.meta.url));

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : [],
  );
}

describe("keyspace", () => {
  it("no prefix is a prefix of another", () => {
    const entries = Object.entries(KEYSPACE);
    assert.ok(entries.length >= 10, `${entries.length} entries`);
    for (const [a, pa] of entries)
      for (const [b, pb] of entries)
        if (a !== b) assert.ok(!pb.startsWith(pa), `${a} ("${pa}") is a prefix of ${b} ("${pb}")`);
  });

  it("every prefix of the table is spelled only there", () => {
    const own = join(SRC, "storage", "keyspace.ts");
    const found: string[] = [];
    for (const f of sources(SRC)) {
      if (f === own) continue;
      const text = readFileSync(f, "utf8");
      for (const p of Object.values(KEYSPACE))
        if (text.includes(`"${p}"`)) found.push(`src/${relative(SRC, f)} spells "${p}"`);
    }
    assert.deepEqual(found, []);
  });
});
