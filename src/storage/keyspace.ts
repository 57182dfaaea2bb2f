// The keyspace of a replica's one LevelDB: every key prefix of every component, in one table, so that
// no two components can write over each other's keys. Each component builds its keys from its entry
// here; test/unit/keyspace.test.ts checks that no prefix is a prefix of another.

export const KEYSPACE = Object.freeze({
  /** The protocol core's key/value space (level-store.ts): "s/" + the core's own key. */
  coreState: "s/",
  /** Blocks by number (ordering/ledger-store.ts). */
  block: "b/",
  /** Block certificates by number (ordering/ledger-store.ts). */
  blockCert: "c/",
  /** The ledger's head and certified height (ordering/ledger-store.ts). */
  ledgerHead: "m/head",
  ledgerCertified: "m/certified",
  /** Transaction id → block position (ordering/tx-index.ts). */
  tx: "x/",
  /** Znodes by path (coord/store.ts). */
  znode: "z/",
  /** Coordination sessions (coord/store.ts). */
  session: "q/",
  /** Results of coordination writes, per session and cxid (coord/store.ts). */
  result: "r/",
  /** The znode tree's metadata (coord/store.ts). */
  treeMeta: "k/tree",
  /** Proofs of equivocation this replica raised (node/compose/events.ts). */
  evidence: "e/equivocation/",
});

export type KeyspaceEntry = keyof typeof KEYSPACE;
