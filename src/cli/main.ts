// The `orderer` command. Failures print one line (`orderer: CODE: message`) and exit non-zero: 2 for bad
// usage or configuration, 1 for everything else; --verbose adds the stack.

import { Command, CommanderError } from "commander";
import "../util/polyfill.ts";
import { errorCode } from "../util/errors.ts";
import { blocksCommand } from "./commands/blocks.ts";
import { counterCommand } from "./commands/counter.ts";
import { devCommand } from "./commands/dev.ts";
import { initCommand } from "./commands/init.ts";
import { startCommand } from "./commands/start.ts";
import { statusCommand } from "./commands/status.ts";
import { submitCommand } from "./commands/submit.ts";
import { verifyCommand } from "./commands/verify.ts";
import { zkCommand } from "./commands/zk.ts";
import { CliError } from "./errors.ts";

export function program(): Command {
  const p = new Command("orderer")
    .description("Byzantine-fault-tolerant ordering service and ZooKeeper-like coordination server")
    .version("0.1.0")
    .option("--verbose", "print stack traces of failures")
    .showHelpAfterError("(run with --help for usage)")
    .exitOverride();
  for (const c of [
    initCommand(),
    startCommand(),
    counterCommand(),
    devCommand(),
    statusCommand(),
    submitCommand(),
    blocksCommand(),
    verifyCommand(),
    zkCommand(),
  ]) {
    c.exitOverride();
    for (const s of c.commands) s.exitOverride();
    p.addCommand(c);
  }
  return p;
}

function codeOf(err: unknown): string {
  return errorCode(err) ?? "ERROR";
}

export async function main(argv: readonly string[]): Promise<number> {
  const p = program();
  try {
    await p.parseAsync(argv as string[]);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2; // help, version, usage errors
    const verbose = argv.includes("--verbose");
    const message = (err as Error)?.message?.split("\n")[0] ?? String(err);
    process.stderr.write(`orderer: ${codeOf(err)}: ${message}\n`);
    if (verbose && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
    return err instanceof CliError ? err.exitCode : codeOf(err) === "BAD_CONFIG" ? 2 : 1;
  }
}

// `orderer blocks | head`: a closed pipe ends the command quietly.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "EPIPE") process.exit(0);
});

main(process.argv).then(
  (code) => {
    // Commands that keep handles open (start, dev, watch) exit through their own paths.
    process.exitCode = code;
    if (code !== 0 || !["start", "dev"].includes(process.argv[2] ?? ""))
      setImmediate(() => process.exit(code));
  },
  (err: unknown) => {
    process.stderr.write(`orderer: internal error: ${String(err)}\n`);
    process.exit(1);
  },
);
