import { Command } from "commander";
import { sha256, verifyEd25519 } from "../../crypto/node-crypto.ts";
import { canonicalJson, clientOptions } from "../../node/config.ts";
import {
  BlockVerificationError,
  ChainVerifier,
  genesisBlock,
  headerHash,
  toHexStr,
} from "../../ordering/block.ts";
import { OrderingClientError } from "../../ordering/client.ts";
import { CliError } from "../errors.ts";
import { intArg, print, progress } from "../output.ts";
import { orderingClient, targetOptions } from "../target.ts";

export function verifyCommand(): Command {
  return targetOptions(
    new Command("verify")
      .description(
        "verify the chain with the client verifier: genesis, hash links, Merkle roots, certificates",
      )
      .option(
        "--from <n>",
        "start at this block, trusting its previous hash as served (default 0: from genesis)",
        intArg("--from"),
        0,
      )
      .option(
        "--confirm <n>",
        "then ask n distinct replicas for the head block's header hash and for proofs of misbehaviour (hybrid: f+1 survives a compromised counter)",
        intArg("--confirm"),
        1,
      )
      .option("--json", "print the result as JSON")
      .addHelpText(
        "after",
        `
From 0, genesis must be this cluster file's configuration. Exit code 1 names the first bad block.

Examples:
  orderer verify
  orderer verify --url http://127.0.0.1:8081 --from 1000
  orderer verify --confirm 2      # hybrid, f=1: a fork by a replica with a compromised counter fails here`,
      ),
  ).action(async (o) => {
    const { client, cluster, urls } = orderingClient(o);
    const url = urls[0] as string;
    const { height } = await client.chain(url);
    const opts = clientOptions(cluster);
    const policy = {
      replicaKeys: opts.replicaKeys.map((k) => Uint8Array.from(Buffer.from(k, "hex"))),
      quorum: opts.quorum,
      hash: sha256,
      verify: verifyEd25519,
    };
    const genesisHash = headerHash(
      genesisBlock(new TextEncoder().encode(canonicalJson(cluster)), sha256).header,
      sha256,
    );
    let v: ChainVerifier | null = o.from === 0 ? new ChainVerifier({ ...policy, genesisHash }) : null;
    let checked = 0;
    let head = "";
    try {
      for (let n = o.from; n < height; n++) {
        const b = await client.block(n, url);
        v ??= new ChainVerifier(policy, { number: n, previousHash: b.header.previousHash });
        head = toHexStr(v.next(b));
        checked++;
        if (checked % 100 === 0 || n === height - 1) progress(checked, height - o.from, "verifying");
      }
    } catch (err) {
      if (err instanceof BlockVerificationError)
        throw new CliError(
          "FAILED",
          `block ${err.blockNumber} does not verify: ${err.code} (${err.message})`,
        );
      throw err;
    }
    let confirmedBy: string[] = [];
    if (o.confirm > 1) {
      if (o.confirm > cluster.replicas.length)
        throw new CliError("BAD_ARGUMENT", `--confirm: at most ${cluster.replicas.length} replicas`);
      const { client: all } = orderingClient({ cluster: o.cluster, ca: o.ca });
      try {
        confirmedBy =
          checked > 0
            ? await all.confirmHeader(height - 1, Buffer.from(head, "hex"), o.confirm)
            : await all.confirmHeader(0, genesisHash, o.confirm);
      } catch (err) {
        if (err instanceof OrderingClientError) throw new CliError("FAILED", `${err.code}: ${err.message}`);
        throw err;
      }
    }
    print(
      o.json,
      { ok: true, from: o.from, height, checked, headHash: head || null, confirmedBy },
      () =>
        (checked === 0
          ? `nothing to verify below height ${height}`
          : `ok: blocks ${o.from}..${height - 1} verify (${checked} blocks, head ${head.slice(0, 16)}…)`) +
        (confirmedBy.length > 0
          ? `\nconfirmed by ${confirmedBy.length} replicas: ${confirmedBy.join(", ")}`
          : ""),
    );
  });
}
