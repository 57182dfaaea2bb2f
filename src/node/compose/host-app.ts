// What the host does with the core's committed batches: the ledger cuts them into blocks and the
// coordination service applies their entries to the tree, both written in the core's atomic batch;
// once durable, the ledger signs the blocks (ledger.written → certified → receipts) and the service
// answers its clients. A replica far behind fetches certified blocks from its peers instead.

import type { AppliedBlocks, CoordService } from "../../coord/service.ts";
import { treeWrites } from "../../coord/store.ts";
import type { ZTree } from "../../coord/tree.ts";
import type { Ledger } from "../../ordering/ledger.ts";
import type { LevelStore } from "../../storage/level-store.ts";
import { coordClientId } from "../config.ts";
import type { HostApp } from "../host.ts";
import { ownCoordEntries } from "./coordination-app.ts";
import type { NodeEvent } from "./events.ts";

export interface BlocksAppParts {
  readonly self: number;
  readonly ledger: Ledger;
  readonly coord: CoordService;
  readonly tree: ZTree;
  readonly store: LevelStore;
  readonly onEvent: (e: NodeEvent) => void;
}

type Built = { ledger: Awaited<ReturnType<Ledger["prepare"]>>["built"]; coord: AppliedBlocks };

/** The app the host drives with the core's commits: the ledger's chain and the coordination tree. */
export function blocksApp(p: BlocksAppParts): HostApp<Built> {
  const { ledger, coord, tree } = p;
  const cid = coordClientId(p.self);
  return {
    frameTag: ledger.frameTag,
    async prepare(commits) {
      const l = await ledger.prepare(commits);
      const applied = coord.prepare(
        l.built.map((b) => ({
          number: b.block.header.number,
          entries: b.block.entries,
          requests: b.batchClients,
        })),
        cid,
      );
      const writes = l.built.length > 0 ? treeWrites(tree, tree.takeChanges()) : [];
      return { ops: [...l.ops, ...writes], built: { ledger: l.built, coord: applied } };
    },
    writing(built) {
      ledger.writing(built.ledger);
    },
    written(built) {
      ledger.written(built.ledger);
      coord.written(built.coord);
    },
    onPeerFrame: (from, frame) => ledger.onPeerFrame(from, frame),
    // Far behind: fetch certified blocks from peers and apply them (chain and tree in one batch).
    catchUp: (target) => catchUpFromPeers(p, target),
  };
}

/** One step of catching up: ask peers for blocks up to `target`, apply those that arrived. */
async function catchUpFromPeers(p: BlocksAppParts, target: number): Promise<number> {
  const { ledger, coord, tree } = p;
  const cid = coordClientId(p.self);
  if (ledger.height - 1 < target) ledger.sync.want(target);
  const blocks = ledger.sync.take();
  if (blocks) {
    const l = ledger.prepareSynced(blocks);
    const applied = coord.prepare(
      blocks.map((b) => ({
        number: b.header.number,
        entries: b.entries,
        requests: ownCoordEntries(b.entries, p.self).map((reqNo) => ({ clientId: cid, reqNo })),
      })),
      cid,
    );
    const writes = treeWrites(tree, tree.takeChanges());
    await p.store.apply([], [...l.ops, ...writes]);
    ledger.writtenSynced(l.built);
    coord.written(applied);
    const from = blocks[0]?.header.number ?? 0;
    p.onEvent({ kind: "blocks-fetched", from, count: blocks.length });
  }
  return ledger.height - 1;
}
