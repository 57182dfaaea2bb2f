// The coordination client against replicas that misbehave at the connection level.

import assert from "node:assert/strict";
import { createServer, type Socket } from "node:net";
import { describe, it } from "node:test";
import { CoordClient, CoordError } from "../../src/coord/client.ts";
import { nodeSigner } from "../util/coord-cluster.ts";

describe("coordination client", () => {
  it("a replica that accepts TCP but never answers the WebSocket upgrade: CONNECTIONLOSS, no uncaught error", async () => {
    // Closing a WebSocket that is still connecting makes `ws` emit an error event; the client once
    // removed its listener first, so the handshake timeout crashed the application.
    const sockets = new Set<Socket>();
    const server = createServer((s) => {
      sockets.add(s);
      s.on("error", () => {});
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const { port } = server.address() as { port: number };
    const uncaught: unknown[] = [];
    const onUncaught = (e: unknown) => uncaught.push(e);
    process.on("uncaughtException", onUncaught);
    try {
      await assert.rejects(
        CoordClient.connect({
          urls: [`http://127.0.0.1:${port}`],
          signer: nodeSigner,
          sessionTimeoutMs: 1000,
        }),
        (e: unknown) => e instanceof CoordError && e.code === "CONNECTIONLOSS",
      );
      await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(uncaught.map(String), []);
    } finally {
      process.off("uncaughtException", onUncaught);
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    }
  });
});
