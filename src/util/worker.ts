// Starts a worker thread from a module of ours. Node 20 does not carry a loader registered at run time
// (bin/orderer.mjs registers tsx) into worker threads, so a TypeScript module is started through a
// small bootstrap that registers tsx in the thread first; a JavaScript module starts as it is.

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
