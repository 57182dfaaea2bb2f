#!/usr/bin/env node
// The `orderer` command: runs the build in dist/ (`npm run build`; `npm install` runs it). The replicas
// and counters it starts run dist/ too: no TypeScript loader in production.
import { existsSync, readdirSync, statSync } from "node:fs";

const main = new URL("../dist/cli/main.js", import.meta.url);
if (!existsSync(main)) {
  console.error("orderer: dist/ is missing; run `npm run build` (or `npm install`) in the project first");
  process.exit(1);
}
// In a checkout, say so when the sources changed after the last build (a package has no src/).
const src = new URL("../src/", import.meta.url);
if (existsSync(src)) {
  const stamp = new URL("../dist/.built", import.meta.url);
  const built = existsSync(stamp) ? statSync(stamp).mtimeMs : 0;
  const newer = (dir) =>
    readdirSync(dir, { withFileTypes: true }).some((e) =>
      e.isDirectory() ? newer(new URL(`${e.name}/`, dir)) : statSync(new URL(e.name, dir)).mtimeMs > built,
    );
  if (newer(src)) console.error("orderer: src/ changed since the last build; `npm run build` to run the change");
}
await import(main.href);
