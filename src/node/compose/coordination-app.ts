// The coordination service's parts above the core: the znode tree (read back from the store and brought
// up to the chain's height) and the service that turns its clients' operations into coordination
// entries, proposed through the core like any request and applied to the tree block by block.

import type { Digests } from "../../bft/digests.ts";
import type { ClientRequest } from "../../bft/types.ts";
import { isCoordEntry } from "../../coord/ops.ts";
import { CoordService, entryHeader } from "../../coord/service.ts";
import { loadTree, treeWrites } from "../../coord/store.ts";
import { ZTree } from "../../coord/tree.ts";
import { type cachingVerifier, sha256, signEd25519 } from "../../crypto/node-crypto.ts";
import { signedRequest } from "../../ordering/gateway.ts";
import { type Ledger, LedgerError } from "../../ordering/ledger.ts";
import { type LevelStore, writeBatch } from "../../storage/level-store.ts";
import { type ClusterConfig, coordClientId, type ResolvedNodeConfig, treeConfig } from "../config.ts";

/** Verifies signed coordination writes; a write verified at intake is not verified again when applied. */
export type CoordVerifier = ReturnType<typeof cachingVerifier>;

/** The znode tree: read back from the store, then replay blocks written after its last save. */
export async function openTree(
  cluster: ClusterConfig,
  store: LevelStore,
  ledger: Ledger,
  verify: CoordVerifier,
): Promise<ZTree> {
  const tree = new ZTree(treeConfig(cluster), verify, sha256);
  await loadTree(store.db, tree);
  await catchUpTree(tree, ledger, store);
  return tree;
}

export interface CoordLinks {
  readonly tree: ZTree;
  readonly verify: CoordVerifier;
  readonly digests: Digests;
  /** Hands a signed coordination entry of this replica to the core (the host's submit: its verdict). */
  readonly propose: (req: ClientRequest) => string;
}

/** The coordination service of this replica: its entries are requests signed with the replica's key. */
export function createCoordService(
  cluster: ClusterConfig,
  config: ResolvedNodeConfig,
  seed: Uint8Array,
  links: CoordLinks,
): CoordService {
  return new CoordService({
    tree: links.tree,
    self: config.id,
    propose: links.propose,
    signRequest: (reqNo, op) =>
      signedRequest(coordClientId(config.id), reqNo, op, links.digests, (d) => signEd25519(seed, d)),
    verify: links.verify,
    hash: sha256,
    entryMaxBytes: cluster.batch.absoluteMaxBytes,
    clockPeriodMs: config.coordClockPeriodMs,
  });
}

/** Entry seqs of this replica's coordination entries in a block (they settle its in-flight entries). */
export function ownCoordEntries(entries: readonly Uint8Array[], self: number): number[] {
  const out: number[] = [];
  for (const e of entries) {
    const h = isCoordEntry(e) ? entryHeader(e) : undefined;
    if (h && h.proposer === self) out.push(h.entrySeq);
  }
  return out;
}

/** Blocks are written with the tree's changes in one batch; a tree behind the chain (its records lost or
 * from an older version) is brought up to date by replaying the coordination entries of later blocks. */
async function catchUpTree(tree: ZTree, ledger: Ledger, store: LevelStore): Promise<number> {
  let replayed = 0;
  for (let n = tree.appliedBlock + 1; n < ledger.height; n++) {
    const b = await ledger.getBlock(n);
    if (!b) throw new LedgerError("CORRUPT", `block ${n} is missing below the chain head`);
    tree.applyBlock(n, b.entries.filter(isCoordEntry));
    replayed++;
    if (replayed % 1000 === 0 || n === ledger.height - 1)
      await writeBatch(store.db, treeWrites(tree, tree.takeChanges()), store.sync);
  }
  return replayed;
}
