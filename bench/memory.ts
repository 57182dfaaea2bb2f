// Memory under large transactions: a hybrid cluster (replica processes, default batch limits) orders
// --txs transactions of --size bytes (default 1,000 of 2 MiB, 8 at a time), then every block is read
// back from every replica (GET /v1/blocks/:n, as a client auditing the chain would). Prints each
// replica's peak resident memory (VmHWM) after the writes and after the reads, and at the end how much
// of it is JavaScript heap and buffers outside the heap (/metrics).
//
//   npm run bench -- memory [--txs 1000 --size 2097152 --concurrency 8 --reads N]

import { readFileSync } from "node:fs";
import { startOrdering } from "./ordering-load.ts";
import { publish } from "./results.ts";
import { numArg } from "./stats.ts";

const TXS = numArg("txs", 1000);
const SIZE = numArg("size", 2 * 1024 * 1024);
const CONCURRENCY = numArg("concurrency", 8);
/** Blocks read back per replica at most (--reads). */
const READS_MAX = numArg("reads", Number.MAX_SAFE_INTEGER);

/** Peak and current resident memory of a process, MiB (Linux /proc). */
function memoryOf(pid: number): { peak: number; now: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? 0);
  return { peak: kib("VmHWM") / 1024, now: kib("VmRSS") / 1024 };
}

async function main(): Promise<void> {
  console.log(`memory: hybrid n=3, ${TXS} transactions of ${SIZE} bytes, ${CONCURRENCY} at a time`);
  const c = await startOrdering("hybrid", 1, { batch: { maxMessageCount: 500, batchTimeoutMs: 20 } });
  try {
    const pids = c.pids();
    const start = pids.map(memoryOf);
    let next = 0;
    let failed = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        for (let i = next++; i < TXS; i = next++) {
          const tx = new Uint8Array(SIZE).fill(i % 251);
          new DataView(tx.buffer).setUint32(0, i);
          const res = await fetch(`${c.urls[i % c.urls.length]}/v1/transactions`, {
            method: "POST",
            body: tx,
          });
          await res.arrayBuffer();
          if (res.status !== 200 && res.status !== 201) failed++;
        }
      }),
    );
    const writeS = (performance.now() - t0) / 1000;
    const afterWrites = pids.map(memoryOf);
    const chains = await Promise.all(
      c.urls.map(async (u) => (await (await fetch(`${u}/v1/chain`)).json()) as { height: number }),
    );
    const t1 = performance.now();
    let blocks = 0;
    for (const [r, u] of c.urls.entries())
      for (let n = 0; n < Math.min(chains[r]?.height ?? 0, READS_MAX); n++) {
        const res = await fetch(`${u}/v1/blocks/${n}`);
        await res.arrayBuffer();
        if (res.status === 200) blocks++;
      }
    const readS = (performance.now() - t1) / 1000;
    const afterReads = pids.map(memoryOf);
    // Where the resident memory is at the end: the JavaScript heap, and buffers outside it.
    const heaps = await Promise.all(
      c.urls.map(async (u) => {
        const text = await (await fetch(`${u}/metrics`)).text();
        const metric = (name: string) =>
          Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)`, "m").exec(text)?.[1] ?? 0) / 1024 / 1024;
        return {
          heap: metric("nodejs_heap_size_used_bytes"),
          external: metric("nodejs_external_memory_bytes"),
        };
      }),
    );
    console.log(
      `\n${TXS - failed}/${TXS} committed in ${writeS.toFixed(0)} s; ${blocks} blocks read in ${readS.toFixed(0)} s\n`,
    );
    console.log(
      "| replica | RSS at start MiB | peak after writes MiB | peak after reads MiB | RSS at end MiB | JS heap used at end MiB | external MiB | budget MiB (peak share) |",
    );
    console.log("|---|---|---|---|---|---|---|---|");
    const rows = pids.map((_, r) => ({
      replica: r,
      startMiB: Math.round(start[r]?.now ?? 0),
      peakAfterWritesMiB: Math.round(afterWrites[r]?.peak ?? 0),
      peakAfterReadsMiB: Math.round(afterReads[r]?.peak ?? 0),
      endMiB: Math.round(afterReads[r]?.now ?? 0),
      heapMiB: Math.round(heaps[r]?.heap ?? 0),
      externalMiB: Math.round(heaps[r]?.external ?? 0),
      budgetMiB: Math.round((c.budgets[r] ?? 0) / 1024 / 1024),
    }));
    for (const x of rows)
      console.log(
        `| ${x.replica} | ${x.startMiB} | ${x.peakAfterWritesMiB} | ${x.peakAfterReadsMiB} | ${x.endMiB} | ${x.heapMiB} | ${x.externalMiB} | ` +
          `${x.budgetMiB} (${((100 * Math.max(x.peakAfterWritesMiB, x.peakAfterReadsMiB)) / x.budgetMiB).toFixed(0)} %) |`,
      );
    await publish(
      "memory",
      { txs: TXS, sizeBytes: SIZE, concurrency: CONCURRENCY, failed, writeS, readS },
      rows,
    );
  } finally {
    await c.stop();
  }
}

await main();
