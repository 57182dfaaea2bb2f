import { Command, Option } from "commander";
import { CoordClient, CoordError, CreateMode, type Stat } from "../../coord/client.ts";
import { generateEd25519KeyPair, signEd25519 } from "../../crypto/node-crypto.ts";
import { CliError } from "../errors.ts";
import { intArg, print } from "../output.ts";
import { resolveTarget, type TargetOptions, targetOptions } from "../target.ts";

const MODES = {
  persistent: CreateMode.PERSISTENT,
  ephemeral: CreateMode.EPHEMERAL,
  sequential: CreateMode.PERSISTENT_SEQUENTIAL,
  "ephemeral-sequential": CreateMode.EPHEMERAL_SEQUENTIAL,
  container: CreateMode.CONTAINER,
} as const;

/** Runs `fn` with a session to the cluster, closed afterwards; ZooKeeper codes become one-line errors. */
async function withClient<T>(o: TargetOptions, fn: (c: CoordClient) => Promise<T>): Promise<T> {
  const { urls, ca } = resolveTarget(o);
  let c: CoordClient;
  try {
    c = await CoordClient.connect({
      urls,
      ...(ca !== undefined ? { ca } : {}),
      signer: { generate: generateEd25519KeyPair, sign: signEd25519 },
      sessionTimeoutMs: 10_000,
    });
  } catch (err) {
    throw new CliError("UNREACHABLE", `cannot open a session: ${(err as Error).message}`);
  }
  try {
    return await fn(c);
  } catch (err) {
    if (err instanceof CoordError) throw new CliError("FAILED", `${err.code}: ${err.message}`);
    throw err;
  } finally {
    await c.close().catch(() => {});
  }
}

const statJson = (s: Stat) => ({ ...s });
function statLines(path: string, s: Stat): string {
  return [path, ...Object.entries(s).map(([k, v]) => `  ${k.padEnd(15)} ${v}`)].join("\n");
}

const text = (b: Uint8Array) => Buffer.from(b).toString("utf8");

/** Adds one subcommand to `zk` with the target options and --json. */
type Sub = (name: string, desc: string) => Command;

export function zkCommand(): Command {
  const zk = new Command("zk")
    .description("the coordination service (znode tree) from the shell")
    .addHelpText(
      "after",
      `
Examples:
  orderer zk create /app 'config v1'
  orderer zk create /app/worker- '' --mode ephemeral-sequential
  orderer zk get /app
  orderer zk set /app 'config v2' --version 0
  orderer zk ls /app
  orderer zk stat /app --json
  orderer zk watch /app --recursive     # prints events until Ctrl-C
  orderer zk rm /app --recursive`,
    );
  const sub: Sub = (name, desc) => {
    const c = targetOptions(new Command(name).description(desc)).option("--json", "print JSON");
    zk.addCommand(c);
    return c;
  };

  createCommand(sub);
  readCommands(sub);
  removeCommand(sub);
  watchCommand(sub);
  return zk;
}

/** `zk create`, with --mode and --parents. */
function createCommand(sub: Sub): void {
  sub("create", "create a znode")
    .argument("<path>")
    .argument("[data]", "its data as text", "")
    .addOption(new Option("--mode <mode>", "node kind").choices(Object.keys(MODES)).default("persistent"))
    .option("--parents", "create missing parents (persistent, empty)")
    .action(async (path: string, data: string, o) => {
      const created = await withClient(o, async (c) => {
        if (o.parents) {
          const parts = path.split("/").filter(Boolean);
          for (let i = 1; i < parts.length; i++) {
            const p = `/${parts.slice(0, i).join("/")}`;
            await c.create(p).catch((err: unknown) => {
              if (!(err instanceof CoordError && err.code === "NODEEXISTS")) throw err;
            });
          }
        }
        return c.create(path, data, { mode: MODES[o.mode as keyof typeof MODES] });
      });
      print(o.json, { path: created }, () => `created ${created}`);
    });
}

/** `zk get`, `zk set`, `zk ls` and `zk stat` (in the order of the help). */
function readCommands(sub: Sub): void {
  sub("get", "print a znode's data")
    .argument("<path>")
    .action(async (path: string, o) => {
      const { data, stat } = await withClient(o, (c) => c.getData(path, { linearizable: true }));
      print(o.json, { path, data: text(data), stat: statJson(stat) }, () => text(data));
    });

  sub("set", "replace a znode's data")
    .argument("<path>")
    .argument("<data>")
    .option("--version <n>", "only if the node is at this version", intArg("--version"))
    .action(async (path: string, data: string, o) => {
      const stat = await withClient(o, (c) => c.setData(path, data, o.version));
      print(o.json, { path, stat: statJson(stat) }, () => `${path} is now at version ${stat.version}`);
    });

  sub("ls", "list a znode's children")
    .argument("<path>")
    .action(async (path: string, o) => {
      const children = await withClient(o, (c) => c.getChildren(path, { linearizable: true }));
      children.sort();
      print(o.json, { path, children }, () => children.join("\n"));
    });

  sub("stat", "print a znode's stat")
    .argument("<path>")
    .action(async (path: string, o) => {
      const stat = await withClient(o, (c) => c.exists(path, { linearizable: true }));
      if (!stat) throw new CliError("FAILED", `NONODE: ${path} does not exist`);
      print(o.json, { path, stat: statJson(stat) }, () => statLines(path, stat));
    });
}

/** `zk rm`, with --recursive. */
function removeCommand(sub: Sub): void {
  sub("rm", "delete a znode")
    .argument("<path>")
    .option("--version <n>", "only if the node is at this version", intArg("--version"))
    .option("--recursive", "delete its descendants first")
    .action(async (path: string, o) => {
      const removed = await withClient(o, async (c) => {
        const out: string[] = [];
        const rm = async (p: string, version?: number) => {
          if (o.recursive)
            for (const child of await c.getChildren(p, { linearizable: true }))
              await rm(`${p === "/" ? "" : p}/${child}`);
          await c.delete(p, version);
          out.push(p);
        };
        await rm(path, o.version);
        return out;
      });
      print(o.json, { removed }, () => removed.map((p) => `deleted ${p}`).join("\n"));
    });
}

/** `zk watch`: persistent (or recursive) watch printing events until Ctrl-C. */
function watchCommand(sub: Sub): void {
  sub("watch", "print the events of a znode (and its subtree with --recursive) until Ctrl-C")
    .argument("<path>")
    .option("--recursive", "the whole subtree")
    .action(async (path: string, o) => {
      await withClient(o, async (c) => {
        await c.addWatch(path, o.recursive ? "persistentRecursive" : "persistent", (e) => {
          print(o.json, e, () => `${e.type} ${e.path}`);
        });
        process.stderr.write(`watching ${path}${o.recursive ? " and below" : ""} (Ctrl-C to stop)\n`);
        await new Promise<void>((resolve) => {
          process.once("SIGINT", () => resolve());
          process.once("SIGTERM", () => resolve());
        });
      });
    });
}
