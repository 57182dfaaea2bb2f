// Submitting while a cluster is still forming: replicas answer NO_QUORUM until they have heard from
// their peers (and other transient codes while a replica is down or a view changes).

import { setTimeout as sleep } from "node:timers/promises";
import { type OrderingClient, OrderingClientError, type VerifiedReceipt } from "../../src/ordering/client.ts";

/** Submits `tx`, retrying on the transient `codes` until `timeoutMs`; other errors are thrown at once. */
export async function submitWhenReady(
  client: OrderingClient,
  tx: Uint8Array,
  url?: string,
  { timeoutMs = 60_000, codes = ["NO_QUORUM"] }: { timeoutMs?: number; codes?: readonly string[] } = {},
): Promise<VerifiedReceipt> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await client.submit(tx, { url });
    } catch (err) {
      if (!(err instanceof OrderingClientError) || !codes.includes(err.code) || Date.now() > end) throw err;
      await sleep(50);
    }
  }
}
