import { Command, Option } from "commander";
import { sha256 } from "../../crypto/node-crypto.ts";
import { blockToJson, headerHash, toHexStr } from "../../ordering/block.ts";
import { intArg } from "../output.ts";
import { orderingClient, targetOptions } from "../target.ts";

export function blocksCommand(): Command {
  return targetOptions(
    new Command("blocks")
      .description("print certified blocks (each one verified) from a height, optionally following new ones")
      .option("--from <n>", "first block (default 0)", intArg("--from"), 0)
      .addOption(
        new Option("--to <n>", "last block").argParser(intArg("--to")).default("newest", "the newest now"),
      )
      .option("--follow", "keep printing blocks as they are certified (Ctrl-C to stop)")
      .option("--json", "one JSON block per line (entries in base64)")
      .addHelpText(
        "after",
        `
Examples:
  orderer blocks --from 10 --to 20
  orderer blocks --follow --json | jq .header.number`,
      ),
  ).action(async (o) => {
    const { client } = orderingClient(o);
    const stop = o.follow ? undefined : o.to;
    for await (const b of client.blocks({ start: o.from, stop, behavior: "BLOCK_UNTIL_READY" })) {
      const hh = headerHash(b.header, sha256);
      if (o.json) process.stdout.write(`${JSON.stringify(blockToJson(b, hh, sha256))}\n`);
      else {
        const size = b.entries.reduce((s, e) => s + e.length, 0);
        process.stdout.write(
          `block ${b.header.number}  ${toHexStr(hh).slice(0, 16)}…  ${b.entries.length} entries, ${size} bytes  ` +
            `view ${b.metadata.view}  signed by ${b.metadata.certificate.map((s) => s.replica).join(",")}\n`,
        );
      }
    }
  });
}
