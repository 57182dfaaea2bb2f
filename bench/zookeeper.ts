// Apache ZooKeeper for the side-by-side benchmark: installs the Debian package if it is missing, runs a
// 3-server ensemble on loopback (fsync on, fresh data directories, JVM heap 512 MiB each), and stops it by
// PID. Driven through node-zookeeper-client, a pure-JavaScript client from npm.

import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { createConnection } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import zookeeper from "node-zookeeper-client";
import { freePortRange } from "../src/node/ports.ts";
import type { CoordDriver } from "./coord-workloads.ts";

const JAR = "/usr/share/java/zookeeper.jar";
// zookeeper.jar's manifest names its own dependencies; the log4j binding is added so the servers log.
const CLASSPATH = [JAR, "/usr/share/java/slf4j-log4j12.jar", "/usr/share/java/log4j-1.2.jar"].join(":");

/** Installs the Debian `zookeeper` package (3.8 on Debian 12) when its jar is missing; root only. */
export function ensureZooKeeper(): void {
  if (existsSync(JAR)) return;
  if (process.getuid?.() !== 0)
    throw new Error(`ZooKeeper is not installed (${JAR} is missing): run  sudo apt-get install -y zookeeper`);
  console.log("installing ZooKeeper: apt-get install -y zookeeper (and a Java runtime) ...");
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  execFileSync("apt-get", ["update"], { stdio: "inherit", env });
  execFileSync("apt-get", ["install", "-y", "--no-install-recommends", "zookeeper"], {
    stdio: "inherit",
    env,
  });
  if (!existsSync(JAR)) throw new Error(`apt-get installed zookeeper but ${JAR} is still missing`);
}

/** Sends a four-letter command (srvr, ruok, mntr) and returns the answer, or "" when it fails. */
function fourLetter(port: number, cmd: string, timeoutMs = 1000): Promise<string> {
  return new Promise((resolve) => {
    let out = "";
    const s = createConnection({ host: "127.0.0.1", port }, () => s.end(cmd));
    s.setTimeout(timeoutMs, () => s.destroy());
    s.on("data", (d) => {
      out += d.toString();
    });
    s.on("close", () => resolve(out));
    s.on("error", () => resolve(""));
  });
}

/** A server could not bind its port (taken between choosing and binding). */
class PortTakenError extends Error {
  override readonly name = "PortTakenError";
}

export class ZooKeeperEnsemble {
  private readonly procs: ChildProcess[] = [];
  private constructor(
    readonly dir: string,
    readonly clientPorts: readonly number[],
  ) {}

  /**
   * Starts three servers and resolves once one leads and two follow. The ports are free when chosen but
   * not reserved: another process's outgoing connection can take one before a JVM binds it (seen here,
   * a BindException in the third of five rounds), so a start that fails that way is tried again on fresh
   * ports, up to 3 times.
   */
  static async start(timeoutMs = 60_000): Promise<ZooKeeperEnsemble> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await ZooKeeperEnsemble.startOnce(timeoutMs);
      } catch (err) {
        if (!(err instanceof PortTakenError) || attempt >= 3) throw err;
        console.error(`  (ZooKeeper: ${err.message}; trying again on other ports)`);
      }
    }
  }

  private static async startOnce(timeoutMs: number): Promise<ZooKeeperEnsemble> {
    ensureZooKeeper();
    const dir = mkdtempSync(join(tmpdir(), "orderer-zk-"));
    const base = await freePortRange(9);
    const clientPorts = [base, base + 1, base + 2];
    const servers = [1, 2, 3].map((i) => `server.${i}=127.0.0.1:${base + 2 + 2 * i - 1}:${base + 2 + 2 * i}`);
    writeFileSync(
      join(dir, "log4j.properties"),
      [
        "log4j.rootLogger=INFO, CONSOLE",
        "log4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender",
        "log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout",
        "log4j.appender.CONSOLE.layout.ConversionPattern=%d{ISO8601} %-5p [%t] %m%n",
        "",
      ].join("\n"),
    );
    const zk = new ZooKeeperEnsemble(dir, clientPorts);
    try {
      for (const i of [1, 2, 3]) {
        const d = join(dir, `zk${i}`);
        mkdirSync(join(d, "data"), { recursive: true });
        writeFileSync(join(d, "data", "myid"), `${i}\n`);
        const cfg = [
          "tickTime=2000",
          "initLimit=10",
          "syncLimit=5",
          `dataDir=${join(d, "data")}`,
          `clientPort=${clientPorts[i - 1]}`,
          "clientPortAddress=127.0.0.1",
          "maxClientCnxns=0",
          "forceSync=yes",
          "admin.enableServer=false",
          "4lw.commands.whitelist=ruok,srvr,mntr",
          ...servers,
          "",
        ].join("\n");
        writeFileSync(join(d, "zoo.cfg"), cfg);
        const log = openSync(join(d, "server.log"), "a");
        const p = spawn(
          "java",
          [
            "-Xms512m",
            "-Xmx512m",
            "-Djava.net.preferIPv4Stack=true",
            `-Dzookeeper.log.dir=${d}`,
            `-Dlog4j.configuration=file:${join(dir, "log4j.properties")}`,
            "-cp",
            CLASSPATH,
            "org.apache.zookeeper.server.quorum.QuorumPeerMain",
            join(d, "zoo.cfg"),
          ],
          { stdio: ["ignore", log, log] },
        );
        closeSync(log);
        zk.procs.push(p);
      }
      const end = Date.now() + timeoutMs;
      for (;;) {
        const modes = await Promise.all(clientPorts.map((p) => fourLetter(p, "srvr")));
        const leaders = modes.filter((m) => /Mode: leader/.test(m)).length;
        const followers = modes.filter((m) => /Mode: follower/.test(m)).length;
        if (leaders === 1 && followers === 2) return zk;
        for (const [i, p] of zk.procs.entries()) {
          if (p.exitCode === null) continue;
          const log = readFileSync(join(dir, `zk${i + 1}`, "server.log"), "utf8");
          if (/BindException/.test(log))
            throw new PortTakenError(`server ${i + 1}'s port was taken (${dir})`);
          throw new Error(`a ZooKeeper server exited (${p.exitCode}): see ${dir}`);
        }
        if (Date.now() > end) throw new Error(`the ZooKeeper ensemble did not elect a leader: see ${dir}`);
        await sleep(100);
      }
    } catch (err) {
      await zk.stop(false);
      throw err;
    }
  }

  get pids(): number[] {
    return this.procs.map((p) => p.pid ?? 0).filter((p) => p > 0);
  }

  /** Which server leads (0-based), or -1. */
  async leader(): Promise<number> {
    const modes = await Promise.all(this.clientPorts.map((p) => fourLetter(p, "srvr")));
    return modes.findIndex((m) => /Mode: leader/.test(m));
  }

  /** Kills server `i` (0-based) with SIGKILL, as a crash; resolves when it has exited. */
  kill(i: number): Promise<void> {
    const p = this.procs[i];
    if (!p || p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      p.once("exit", () => resolve());
      p.kill("SIGKILL");
    });
  }

  /** Stops every server by PID (SIGTERM, then SIGKILL after 10 s) and removes the data directories. */
  async stop(removeDir = true): Promise<void> {
    await Promise.all(
      this.procs.map(
        (p) =>
          new Promise<void>((resolve) => {
            if (p.exitCode !== null || p.signalCode !== null) return resolve();
            const t = setTimeout(() => p.kill("SIGKILL"), 10_000);
            p.once("exit", () => {
              clearTimeout(t);
              resolve();
            });
            p.kill("SIGTERM");
          }),
      ),
    );
    this.procs.length = 0;
    if (removeDir) rmSync(this.dir, { recursive: true, force: true });
  }

  /**
   * A session on server `i` (0-based), as a workload driver. With `servers`, the session may use any
   * of them (the client picks one and moves to another when it loses its server, after `spinDelayMs`).
   */
  async client(
    i: number,
    o: { servers?: readonly number[]; spinDelayMs?: number } = {},
  ): Promise<CoordDriver> {
    const hosts = (o.servers ?? [i % 3]).map((s) => `127.0.0.1:${this.clientPorts[s]}`).join(",");
    const c = zookeeper.createClient(hosts, {
      sessionTimeout: 30_000,
      spinDelay: o.spinDelayMs ?? 1000,
      retries: 0,
    });
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error("ZooKeeper client did not connect")), 15_000);
      c.once("connected", () => {
        clearTimeout(t);
        resolve();
      });
      c.connect();
    });
    const call = <T>(f: (cb: (err: Error | null, v: T) => void) => void) =>
      new Promise<T>((resolve, reject) => f((err, v) => (err ? reject(err) : resolve(v))));
    return {
      create: (path, data, ephemeral) =>
        call<string>((cb) =>
          c.create(
            path,
            Buffer.from(data),
            ephemeral ? zookeeper.CreateMode.EPHEMERAL : zookeeper.CreateMode.PERSISTENT,
            cb,
          ),
        ),
      setData: async (path, data) => {
        await call((cb) => c.setData(path, Buffer.from(data), -1, cb));
      },
      getData: async (path) => {
        await call((cb) => c.getData(path, (err, d) => cb(err, d)));
      },
      delete: (path) => call<void>((cb) => c.remove(path, -1, (err) => cb(err, undefined))),
      close: () =>
        new Promise<void>((resolve) => {
          const t = setTimeout(resolve, 3000);
          c.once("disconnected", () => {
            clearTimeout(t);
            resolve();
          });
          c.close();
        }),
    };
  }
}
