// Hybrid mode's trusted counter as the node uses it: the link to this replica's counter process and
// the checker of every replica's counter certificates (absent in pbft mode).

import {
  type TrustedCounter,
  type TrustedSubsystem,
  trustedSubsystem,
  UsigChecker,
} from "../../bft/trusted.ts";
import { RemoteCounter } from "../../counter/client.ts";
import { nodeCrypto } from "../../crypto/node-crypto.ts";
import type { ClusterConfig, ResolvedNodeConfig } from "../config.ts";
import { hex } from "./keys.ts";

/** This replica's trusted counter as the node uses it: certify calls, their timings, close. */
export type CounterLink = TrustedCounter & {
  readonly stats: { readonly calls: number; readonly totalMs: number };
  close(): Promise<void>;
};

/**
 * Hybrid mode's trusted subsystem: this replica's counter process (reached over its UNIX socket, where the
 * counter's key stays) and a checker of every replica's counter certificates with their public keys.
 */
export async function openTrusted(
  cluster: ClusterConfig,
  config: ResolvedNodeConfig,
  seed: Uint8Array,
  onBroken?: (err: Error) => void,
  openCounter?: () => Promise<CounterLink>,
): Promise<{ trusted: TrustedSubsystem; counter: CounterLink } | undefined> {
  if (cluster.mode !== "hybrid") return undefined;
  const counterKeys = cluster.replicas.map((r) => hex(r.counterPublicKey ?? ""));
  const counter = openCounter
    ? await openCounter()
    : await RemoteCounter.open({
        socketPath: config.counterSocket as string,
        id: config.id,
        counterPublicKey: counterKeys[config.id] as Uint8Array,
        replicaSeed: seed,
        certifyTimeoutMs: config.counterTimeoutMs,
        onBroken,
      });
  return { trusted: trustedSubsystem(counter, new UsigChecker(counterKeys, nodeCrypto)), counter };
}
