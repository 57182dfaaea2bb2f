// Builds the native-rdma addon from source with the machine's compiler (node-gyp, against the Node
// headers installed on this machine: nothing is downloaded). Runs from the project's postinstall and
// from `npm run build:rdma`. A failed build never fails the install: the outcome is written to
// native-rdma/build/status.json, and the rdma transport then reports itself unavailable with the reason.
//
//   node native-rdma/build.mjs [--quiet]

import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const buildDir = join(here, "build");
const quiet = process.argv.includes("--quiet");
const require = createRequire(import.meta.url);

function finish(ok, reason, log = "") {
  mkdirSync(buildDir, { recursive: true });
  writeFileSync(join(buildDir, "build.log"), log);
  const status = { ok, reason, node: process.version, date: new Date().toISOString() };
  writeFileSync(join(buildDir, "status.json"), `${JSON.stringify(status, null, 2)}\n`);
  const line = ok ? "native-rdma: built" : `native-rdma: not built (${reason}); the rdma transport is unavailable`;
  if (!quiet || !ok) console.log(line);
  process.exit(0);
}

if (process.env.ORDERER_SKIP_RDMA_BUILD === "1") finish(false, "ORDERER_SKIP_RDMA_BUILD=1");

// Node's headers: the distribution's (/usr/include/node) or next to this node binary.
const nodedir = ["/usr", resolve(dirname(process.execPath), "..")].find((d) =>
  existsSync(join(d, "include", "node", "node_api.h")),
);
if (!nodedir) finish(false, "Node's C headers are not installed (node-gyp would download them)");

let gyp;
try {
  gyp = require.resolve("node-gyp/bin/node-gyp.js");
} catch {
  const bundled = resolve(dirname(process.execPath), "../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js");
  if (existsSync(bundled)) gyp = bundled;
}
if (!gyp) finish(false, "node-gyp not found");
try {
  require.resolve("node-addon-api");
} catch {
  finish(false, "node-addon-api not installed");
}

const r = spawnSync(process.execPath, [gyp, "rebuild", `--nodedir=${nodedir}`, "--jobs=2"], {
  cwd: here,
  encoding: "utf8",
  env: { ...process.env, npm_config_nodedir: nodedir },
  maxBuffer: 64 * 1024 * 1024,
});
const log = `${r.stdout ?? ""}${r.stderr ?? ""}`;
if (r.error) finish(false, `node-gyp did not run: ${r.error.message}`, log);
if (r.status !== 0) {
  const last = log.split("\n").filter((l) => /error/i.test(l)).slice(0, 3).join(" | ");
  finish(false, `compile failed: ${last || `node-gyp exit ${r.status}`} (see native-rdma/build/build.log)`, log);
}
if (!existsSync(join(buildDir, "Release", "orderer_rdma.node"))) finish(false, "node-gyp produced no addon", log);
finish(true, "", log);
