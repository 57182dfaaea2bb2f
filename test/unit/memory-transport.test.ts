import { MemoryHub } from "../../src/transport/memory.ts";
import { transportCompliance } from "../compliance/transport.ts";

transportCompliance("memory", async (n, limits) => {
  const hub = new MemoryHub({ n });
  return {
    make: (id) => hub.transport(id, limits),
    outsider: () => hub.transport(n, limits),
    close: async () => {},
  };
});

transportCompliance("memory with 2 ms latency", async (n, limits) => {
  const hub = new MemoryHub({ n, latencyMs: 2 });
  return {
    make: (id) => hub.transport(id, limits),
    outsider: () => hub.transport(n + 3, limits),
    close: async () => {},
  };
});
