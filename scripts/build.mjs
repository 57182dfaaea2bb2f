#!/usr/bin/env node
// `npm run build`: compiles src/ to dist/ (tsconfig.build.json: imports of ./x.ts become ./x.js) and copies
// the JavaScript modules src/ keeps as they are (the counter link's worker). bin/orderer.mjs and the
// replica and counter processes it starts run dist/; tests and benches run src/ through tsx.
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const src = join(root, "src");
const dist = join(root, "dist");
const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
try {
  execFileSync(process.execPath, [tsc, "-p", join(root, "tsconfig.build.json")], { stdio: "inherit" });
} catch {
  console.error("build: the TypeScript compiler failed (above)");
  process.exit(1);
}
let copied = 0;
const walk = (dir) => {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) walk(p);
    else if (/\.(mjs|d\.mts)$/.test(e.name)) {
      const to = join(dist, relative(src, p));
      mkdirSync(dirname(to), { recursive: true });
      copyFileSync(p, to);
      copied++;
    }
  }
};
walk(src);
// When the build finished (bin/orderer.mjs compares it with the sources' times).
writeFileSync(join(dist, ".built"), `${new Date().toISOString()}\n`);
console.log(`build: src/ compiled to dist/ (${copied} JavaScript modules copied)`);
