// What the replica reports as it runs: the core's events and the ledger's catch-up, logged when worth a
// line, handed to the node's hooks; and the proofs of misbehaviour among them, kept in the store (one
// per culprit) and served at GET /v1/misbehaviour.

import type { ReplicaCore } from "../../bft/replica.ts";
import type { ReplicaEvent } from "../../bft/types.ts";
import { LedgerError } from "../../ordering/ledger.ts";
import {
  type EquivocationJson,
  equivocationToJson,
  type MisbehaviourReport,
} from "../../ordering/misbehaviour.ts";
import { KEYSPACE } from "../../storage/keyspace.ts";
import type { LevelStore } from "../../storage/level-store.ts";
import type { Logger } from "../../util/log.ts";

/** What a node reports for logs and metrics: the core's events and the ledger's block catch-up. */
export type NodeEvent =
  | ReplicaEvent
  | { readonly kind: "blocks-fetched"; readonly from: number; readonly count: number };

/** Where proofs of misbehaviour are kept (one per culprit), in the replica's database. */
const EVIDENCE = KEYSPACE.evidence;

/** Events worth a log line (the others are counted in metrics only). */
const LOGGED: Partial<Record<NodeEvent["kind"], "info" | "warn" | "error">> = {
  "state-diverged": "error",
  "view-change-started": "warn",
  "new-view": "info",
  "snapshot-offered": "info",
  "state-transfer": "info",
  "blocks-fetched": "info",
};

export interface EventHooks {
  readonly onEvent?: (e: NodeEvent) => void;
  readonly onError?: (err: Error) => void;
}

export class NodeEvents {
  /** Proofs of misbehaviour held, by culprit. */
  readonly evidence = new Map<number, EquivocationJson>();
  /** Since when this replica has been in a view change (null while it orders in a view). */
  private viewChangingSince: number | null = null;

  constructor(
    private readonly store: LevelStore,
    private readonly log: Logger,
    private readonly hooks: EventHooks,
  ) {}

  /** A proof found before a restart still stops ordering: the fork it proves does not go away. */
  async haltOnSavedProofs(core: ReplicaCore): Promise<void> {
    for (const [culprit, j] of await loadEvidence(this.store)) {
      this.evidence.set(culprit, j);
      core.halt(`replica ${culprit}'s trusted counter certified two messages with one value`);
    }
  }

  /** Notes an event (after the metrics counted it): view changes, proofs, a log line, the hook. */
  record(e: NodeEvent): void {
    if (e.kind === "view-change-started") this.viewChangingSince ??= Date.now();
    else if (e.kind === "new-view") this.viewChangingSince = null;
    if (e.kind === "equivocation" && !this.evidence.has(e.culprit)) this.keepProof(e.culprit, e.proof);
    const level = LOGGED[e.kind];
    if (level) {
      const { kind, ...fields } = e;
      this.log[level](fields, kind.replaceAll("-", " "));
    }
    this.hooks.onEvent?.(e);
  }

  error(err: Error): void {
    this.log.error({ err }, "replica error");
    this.hooks.onError?.(err);
  }

  /** How long this replica has been in a view change (0 while it orders in a view). */
  viewChangingMs(): number {
    return this.viewChangingSince === null ? 0 : Date.now() - this.viewChangingSince;
  }

  misbehaviour(core: ReplicaCore): MisbehaviourReport {
    return { halted: core.halted, proofs: [...this.evidence.values()] };
  }

  private keepProof(culprit: number, proof: Parameters<typeof equivocationToJson>[1]): void {
    const j = equivocationToJson(culprit, proof);
    this.evidence.set(culprit, j);
    this.log.error(
      { culprit, value: j.a.cert.value, digests: [j.a.digest, j.b.digest] },
      "security event: a replica's trusted counter certified two messages with one value; ordering stopped (proof at GET /v1/misbehaviour)",
    );
    this.store.db
      .put(`${EVIDENCE}${culprit}`, new TextEncoder().encode(JSON.stringify(j)), { sync: true })
      .catch((err: unknown) => this.log.error({ err }, "could not save the proof of misbehaviour"));
  }
}

async function loadEvidence(store: LevelStore): Promise<Map<number, EquivocationJson>> {
  const out = new Map<number, EquivocationJson>();
  for await (const [key, value] of store.db.iterator({ gte: EVIDENCE, lt: `${EVIDENCE}~` })) {
    try {
      const j = JSON.parse(new TextDecoder().decode(value)) as EquivocationJson;
      out.set(j.culprit, j);
    } catch {
      throw new LedgerError("CORRUPT", `unreadable proof at ${key}`);
    }
  }
  return out;
}
