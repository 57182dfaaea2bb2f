import { Command } from "commander";
import type { HealthReport } from "../../node/metrics.ts";
import { CliError } from "../errors.ts";
import { print } from "../output.ts";
import { isCertificateError, resolveTarget, targetFetch, targetOptions } from "../target.ts";

const TIMEOUT_MS = 3000;

async function health(url: string, f: typeof fetch): Promise<HealthReport | { error: string }> {
  try {
    const res = await f(`${url}/health`, { signal: AbortSignal.timeout(TIMEOUT_MS) });
    const body = (await res.json()) as HealthReport;
    return body;
  } catch (err) {
    const name = (err as Error).name;
    if (name === "TimeoutError" || name === "AbortError") return { error: "no answer" };
    return { error: isCertificateError(err) ? "certificate refused" : "unreachable" };
  }
}

export function statusCommand(): Command {
  return targetOptions(
    new Command("status")
      .description("the cluster as each replica sees it: view, leader, height, health")
      .option("--json", "one JSON object: {replicas: [...]}")
      .addHelpText(
        "after",
        `
Exit code 0 when a quorum of replicas is up and agrees on the leader, 1 otherwise.

Examples:
  orderer status
  orderer status --cluster ./cluster/cluster.jsonc --json`,
      ),
  ).action(async (o) => {
    const { cluster, urls, ca } = resolveTarget(o);
    const f = targetFetch(ca);
    const reports = await Promise.all(urls.map(async (url) => ({ url, ...(await health(url, f)) })));
    const up = reports.filter((r): r is HealthReport & { url: string } => !("error" in r));
    const leaders = new Set(up.filter((r) => !r.viewChanging).map((r) => `${r.view}/${r.leader}`));
    const need = cluster.mode === "hybrid" ? cluster.f + 1 : 2 * cluster.f + 1;
    const healthy = up.filter((r) => r.ok).length >= Math.min(need, urls.length) && leaders.size <= 1;
    print(
      o.json,
      { cluster: cluster.name, mode: cluster.mode, f: cluster.f, healthy, replicas: reports },
      () => {
        const lines = [
          `${cluster.mode} cluster "${cluster.name}" (f=${cluster.f}): ${healthy ? "healthy" : "DEGRADED"}`,
        ];
        lines.push(
          "replica  url                          state      view  leader  height  certified  executed  peers",
        );
        for (const r of reports) {
          if ("error" in r) {
            lines.push(`${String(urls.indexOf(r.url)).padEnd(8)} ${r.url.padEnd(28)} ${r.error}`);
            continue;
          }
          const state = r.viewChanging ? "view-chg" : r.ok ? "ok" : "no-quorum";
          lines.push(
            [
              String(r.replica).padEnd(8),
              r.url.padEnd(28),
              state.padEnd(10),
              String(r.view).padEnd(5),
              String(r.leader).padEnd(7),
              String(r.height).padEnd(7),
              String(r.certifiedHeight).padEnd(10),
              String(r.lastExecuted).padEnd(9),
              String(r.livePeers),
            ].join(" "),
          );
        }
        return lines.join("\n");
      },
    );
    if (!healthy) throw new CliError("UNREACHABLE", "the cluster is not healthy", 1);
  });
}
