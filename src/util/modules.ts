// Our entry modules (a replica's process, a counter's process, a worker thread's module) are found
// beside the module that starts them, in the same form: `.ts` when Node runs the sources (tests and
// benches, through tsx), `.js` when it runs the build in dist/ (bin/orderer.mjs, production). Only
// TypeScript needs a loader, and then the child process gets tsx's, resolved from here.

/** The module `relative` (no extension) beside `base` (an import.meta.url), in base's form. */
export function moduleBeside(base: string, relative: string): URL {
  const ext = new URL(base).pathname.endsWith(".ts") ? ".ts" : ".js";
  return new URL(`${relative}${ext}`, base);
}

/** The Node flags a child process needs to run `script`: tsx's loader for TypeScript, none for JS. */
export function loaderFlags(script: string): string[] {
  // Resolved here, not in the child: it may run in any working directory.
  return script.endsWith(".ts") ? ["--import", import.meta.resolve("tsx")] : [];
}
