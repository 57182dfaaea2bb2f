// Free TCP ports on the loopback interface, for local clusters and tests that need addresses known in advance.

import { createServer } from "node:net";

/** Ports that were free a moment ago (bound to port 0, then released). */
export async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
          const s = createServer();
          s.once("error", reject);
          s.listen(0, "127.0.0.1", () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => {
    const a = s.address();
    if (a === null || typeof a === "string") throw new Error("no port");
    return a.port;
  });
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

/** `count` consecutive ports that were free a moment ago (for configs that number ports from a base). */
export async function freePortRange(count: number, attempts = 50): Promise<number> {
  for (let a = 0; a < attempts; a++) {
    const base = 20_000 + Math.floor(Math.random() * 40_000);
    const servers: ReturnType<typeof createServer>[] = [];
    let ok = true;
    for (let p = base; p < base + count && ok; p++) {
      const s = createServer();
      ok = await new Promise<boolean>((resolve) => {
        s.once("error", () => resolve(false));
        s.listen(p, "127.0.0.1", () => resolve(true));
      });
      if (ok) servers.push(s);
    }
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
    if (ok) return base;
  }
  throw new Error(`no ${count} consecutive free ports found`);
}
