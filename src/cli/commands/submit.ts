import { readFileSync } from "node:fs";
import { Command } from "commander";
import { toHexStr } from "../../ordering/block.ts";
import { OrderingClientError } from "../../ordering/client.ts";
import { CliError } from "../errors.ts";
import { intArg, print } from "../output.ts";
import { orderingClient, targetOptions } from "../target.ts";

async function readStdin(): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return new Uint8Array(Buffer.concat(chunks));
}

export function submitCommand(): Command {
  return targetOptions(
    new Command("submit")
      .description("order one transaction and print its verified receipt")
      .argument("[data]", "the transaction as text (or use --file, or - for stdin)")
      .option("--file <path>", "read the transaction's bytes from a file")
      .option(
        "--confirm <n>",
        "also ask n distinct replicas for the block's header hash and for proofs of misbehaviour (hybrid: f+1)",
        intArg("--confirm"),
        1,
      )
      .option("--json", "print the receipt as JSON")
      .addHelpText(
        "after",
        `
The receipt is checked before it is printed: the Merkle proof leads to the block header, and the
header carries a commit certificate of the cluster's replicas.

Examples:
  orderer submit 'hello'
  orderer submit --file ./tx.bin --json
  echo '{"op":"put"}' | orderer submit -
  orderer submit 'hello' --confirm 2   # hybrid, f=1: refuses a block a compromised counter forked`,
      ),
  ).action(async (data: string | undefined, o) => {
    let tx: Uint8Array;
    if (o.file) {
      try {
        tx = new Uint8Array(readFileSync(o.file));
      } catch (err) {
        throw new CliError(
          "BAD_ARGUMENT",
          `--file: cannot read ${o.file} (${(err as NodeJS.ErrnoException).code})`,
        );
      }
    } else if (data === "-") tx = await readStdin();
    else if (data !== undefined) tx = new TextEncoder().encode(data);
    else throw new CliError("BAD_ARGUMENT", "give the transaction as an argument, --file, or - for stdin");
    const { client, cluster } = orderingClient(o);
    if (o.confirm > cluster.replicas.length)
      throw new CliError("BAD_ARGUMENT", `--confirm: at most ${cluster.replicas.length} replicas`);
    const r = await client.submit(tx);
    let confirmedBy: string[] = [];
    if (o.confirm > 1) {
      try {
        confirmedBy = await orderingClient({ cluster: o.cluster, ca: o.ca }).client.confirmHeader(
          r.block,
          r.headerHash,
          o.confirm,
        );
      } catch (err) {
        if (err instanceof OrderingClientError) throw new CliError("FAILED", `${err.code}: ${err.message}`);
        throw err;
      }
    }
    print(
      o.json,
      {
        txId: r.txId,
        block: r.block,
        position: r.position,
        duplicate: r.duplicate,
        headerHash: toHexStr(r.headerHash),
        signers: r.certificate.map((s) => s.replica),
        confirmedBy,
      },
      () =>
        `${r.duplicate ? "already ordered" : "ordered"}: tx ${r.txId} in block ${r.block} at position ${r.position} ` +
        `(certified by replicas ${r.certificate.map((s) => s.replica).join(", ")})` +
        (confirmedBy.length > 0 ? `; confirmed by ${confirmedBy.length} replicas` : ""),
    );
  });
}
