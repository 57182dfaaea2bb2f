import { Command } from "commander";
import { resolveNodeConfig } from "../../node/config.ts";
import { OrdererNode } from "../../node/orderer-node.ts";
import { createLogger } from "../../util/log.ts";
import { envOverrides, isLogLevel, loadNodeConfig } from "../config-files.ts";
import { CliError } from "../errors.ts";
import { intArg } from "../output.ts";

export function startCommand(): Command {
  return new Command("start")
    .description("run one replica in this process (logs are JSON lines on stdout)")
    .requiredOption("--config <file>", "the replica's node file (from `orderer init`)")
    .option("--data-dir <dir>", "LevelDB directory (env ORDERER_DATA_DIR)")
    .option("--api-host <host>", "API listen address (env ORDERER_API_HOST)")
    .option("--api-port <port>", "API port (env ORDERER_API_PORT)", intArg("--api-port"))
    .option("--fsync <on|off>", "fsync every write (env ORDERER_SYNC=true|false)")
    .option("--log-level <level>", "fatal|error|warn|info|debug|trace|silent (env ORDERER_LOG_LEVEL)")
    .addHelpText(
      "after",
      `
Precedence: the config file, then ORDERER_* environment variables, then these flags.
SIGINT/SIGTERM stop the replica cleanly: no new requests, in-flight writes finish, LevelDB closes, exit 0.

Examples:
  orderer start --config ./cluster/node-0.jsonc
  ORDERER_LOG_LEVEL=debug orderer start --config ./cluster/node-1.jsonc --api-port 9001`,
    )
    .action(async (o) => {
      if (o.fsync !== undefined && o.fsync !== "on" && o.fsync !== "off")
        throw new CliError("BAD_ARGUMENT", "--fsync: on or off");
      if (o.logLevel !== undefined && !isLogLevel(o.logLevel))
        throw new CliError("BAD_ARGUMENT", "--log-level: fatal, error, warn, info, debug, trace or silent");
      const { cluster, node: settings } = loadNodeConfig(o.config, envOverrides(process.env), {
        dataDir: o.dataDir,
        apiHost: o.apiHost,
        apiPort: o.apiPort,
        sync: o.fsync === undefined ? undefined : o.fsync === "on",
        logLevel: o.logLevel,
      });
      const node = resolveNodeConfig(cluster, settings);
      // Files the replica creates (LevelDB's, 0644 by its own choice) are its user's alone.
      process.umask(0o077);
      const logger = createLogger(node.logLevel, { replica: node.id });
      const replica = await OrdererNode.start(cluster, node, {
        logger,
        onFatal: () => setImmediate(() => process.exit(70)),
      });
      await new Promise<void>((resolve) => {
        process.once("SIGINT", () => resolve());
        process.once("SIGTERM", () => resolve());
      });
      await replica.stop();
    });
}
