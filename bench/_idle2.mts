import { startOrdering, Submitter, measure } from "./ordering-load.ts";
const c = await startOrdering("hybrid", 1);
const s = await Submitter.connect(c.urls, 2, 100);
s.openLoop(20);
const l = await measure(s, c, 3, 8);
s.stopLoad();
console.log(`n=${c.n} 20 tx/s: ${l.cores.toFixed(2)} cores p50 ${l.p50.toFixed(1)} blocks ${l.blocks}`);
s.close(); await c.stop();
process.exit(0);
