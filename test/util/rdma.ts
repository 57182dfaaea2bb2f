// An rdma test cluster: replica keys and a UNIX socket path per replica in a fresh temporary folder.

import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateEd25519KeyPair } from "../../src/crypto/node-crypto.ts";
import type { RdmaPeerConfig } from "../../src/transport/rdma.ts";

export function rdmaTestCluster(n: number): { peers: RdmaPeerConfig[]; seeds: Uint8Array[]; dir: string } {
  const dir = mkdtempSync(join(tmpdir(), "orderer-rdma-"));
  const keys = Array.from({ length: n }, () => generateEd25519KeyPair());
  return {
    dir,
    peers: keys.map((k, id) => ({ id, publicKey: k.publicKey, path: join(dir, `r${id}.sock`) })),
    seeds: keys.map((k) => k.privateKey),
  };
}
