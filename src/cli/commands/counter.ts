import { Command } from "commander";
import { runCounter } from "../../counter/run.ts";
import { loadCounterConfig } from "../config-files.ts";

export function counterCommand(): Command {
  return new Command("counter")
    .description("run one hybrid replica's trusted counter (its own process; start it before the replica)")
    .requiredOption("--config <file>", "the counter's file (counter-<i>.jsonc from `orderer init`)")
    .addHelpText(
      "after",
      `
The counter holds the key that certifies replica <i>'s ordering messages and never certifies one value
twice; its values are fsynced before every answer. Run it as its own Unix user, with its file and data
directory readable by that user only: a replica that can read the counter's key can fork the chain.
The replica reaches it through the socket named in both files and proves who it is with its own key.
SIGINT/SIGTERM stop it cleanly.

Examples:
  orderer counter --config ./cluster/counter-0.jsonc
  sudo -u orderer-counter orderer counter --config /etc/orderer/counter-0.jsonc`,
    )
    .action(async (o) => {
      await runCounter(loadCounterConfig(o.config));
    });
}
