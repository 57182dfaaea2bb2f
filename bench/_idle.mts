import { setTimeout as sleep } from "node:timers/promises";
import { startOrdering, Submitter, measure } from "./ordering-load.ts";
for (const f of [1, 2]) {
  const c = await startOrdering("hybrid", f);
  const s = await Submitter.connect(c.urls, 2, 100);
  await sleep(2000);
  const idle = await measure(s, c, 0, 3);
  s.openLoop(20);
  const l = await measure(s, c, 1, 3);
  s.stopLoad();
  console.log(`n=${c.n} idle ${idle.cores.toFixed(2)} cores; 20 tx/s: ${l.cores.toFixed(2)} cores p50 ${l.p50.toFixed(1)} blocks ${l.blocks}`);
  s.close(); await c.stop();
}
process.exit(0);
