// Starts a worker thread from a module of ours (util/modules.ts moduleBeside). The build in dist/ starts
// its JavaScript module as it is. Running the sources (tests, benches), Node 20 does not carry the tsx
// loader into worker threads, so a TypeScript module is started through a small bootstrap that
// registers tsx in the thread first.

import { Worker, type WorkerOptions } from "node:worker_threads";

export function startWorker(url: URL, options: WorkerOptions = {}): Worker {
  if (!url.pathname.endsWith(".ts")) return new Worker(url, options);
  const api = JSON.stringify(import.meta.resolve("tsx/esm/api"));
  const target = JSON.stringify(url.href);
  // An import error is rethrown outside the promise, so that it reaches the Worker's "error" event.
  const boot = `import(${api}).then((t) => { t.register(); return import(${target}); })
    .catch((err) => { setImmediate(() => { throw err; }); });`;
  return new Worker(boot, { ...options, eval: true });
}
