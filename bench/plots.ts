// Which charts each suite draws from its latest results line (bench/results/<suite>.jsonl), into
// bench/plots/. `npm run bench -- plot` redraws every suite's charts; each suite calls renderSuite
// after appending its results.

import type { TopLevelSpec } from "vega-lite";
import {
  type Axis,
  barChart,
  concat,
  latestResults,
  lineChart,
  type ResultLine,
  type Row,
  writeSvg,
} from "./plot.ts";

type Charts = (r: ResultLine) => Record<string, TopLevelSpec>;

const num = (x: unknown) => (typeof x === "number" && Number.isFinite(x) ? x : null);

const CHARTS: Record<string, Charts> = {
  ordering: (r) => {
    const data = r.rows.map((x) => ({
      ...x,
      config: `${x.mode} n=${x.n}, ${x.txBytes} B`,
      p50Ms: num(x.p50Ms),
      p99Ms: num(x.p99Ms),
    }));
    // Lines join the steps in the order the load was offered: past saturation, committed falls back.
    const common = { data, series: "config", seriesTitle: "cluster, tx size", width: 260, order: "offered" };
    return {
      ordering: concat("Ordering: open-loop load (fsync on, one process per replica)", r, [
        lineChart(r, {
          ...common,
          title: "committed vs offered",
          x: { field: "offered", title: "offered tx/s" },
          y: { field: "committed", title: "committed tx/s" },
        }),
        lineChart(r, {
          ...common,
          title: "p50 submit-to-commit",
          x: { field: "committed", title: "committed tx/s" },
          y: { field: "p50Ms", title: "p50 ms (log)", log: true },
        }),
        lineChart(r, {
          ...common,
          title: "p99 submit-to-commit",
          x: { field: "committed", title: "committed tx/s" },
          y: { field: "p99Ms", title: "p99 ms (log)", log: true },
        }),
      ]),
    };
  },
};

/** Panels of grouped bars side by side, one per [title, value axis], over the same categories. */
function barPanels(
  r: ResultLine,
  title: string,
  data: Row[],
  category: Axis,
  panels: readonly (readonly [string, Axis])[],
  s: { series: string; seriesTitle: string } = { series: "what", seriesTitle: "" },
): TopLevelSpec {
  return concat(
    title,
    r,
    panels.map(([panel, value]) => barChart(r, { title: panel, data, category, value, ...s })),
  );
}

const THROUGHPUT_AND_LATENCY = [
  ["throughput", { field: "opsPerSec", title: "ops/s (log)", log: true }],
  ["p50 latency", { field: "p50Ms", title: "p50 ms (log)", log: true }],
] as const;

const opLabel = (x: Row) => `${x.operation} @${x.outstanding}`;

CHARTS["compare-zk"] = (r) => {
  const data = r.rows.flatMap((x) =>
    (["ours", "zookeeper"] as const).map((side) => {
      const s = x[side] as Record<string, number>;
      return {
        row: opLabel(x),
        system: side === "ours" ? "ours (3 hybrid replicas)" : "ZooKeeper 3.8 (3 servers)",
        opsPerSec: s.opsPerSec,
        p50Ms: s.p50Ms,
        p99Ms: s.p99Ms,
      };
    }),
  );
  return {
    "compare-zk": barPanels(
      r,
      "Coordination workloads: ours vs ZooKeeper, same machine, same run",
      data,
      { field: "row", title: "operation @ outstanding" },
      THROUGHPUT_AND_LATENCY,
      { series: "system", seriesTitle: "system" },
    ),
  };
};

CHARTS.coord = (r) => {
  const data = r.rows.map((x) => ({ ...x, outstandingLabel: `${x.outstanding} outstanding` }));
  return {
    coord: barPanels(
      r,
      "Coordination workloads on 3 hybrid replicas",
      data,
      { field: "operation", title: "operation" },
      THROUGHPUT_AND_LATENCY,
      { series: "outstandingLabel", seriesTitle: "closed loop" },
    ),
  };
};

CHARTS.scaling = (r) => {
  const byN = r.rows.filter((x) => x.kind === "n");
  const byBatch = r.rows.filter((x) => x.kind === "batch");
  const n = { field: "n", title: "replicas (n)", integer: true };
  const nCommon = { data: byN, x: n, series: "mode", seriesTitle: "mode", width: 260 };
  const m = { field: "maxMessageCount", title: "maxMessageCount (log)", log: true };
  const bCommon = { data: byBatch, x: m, series: "mode", seriesTitle: "mode", width: 260 };
  return {
    "scaling-n": concat("Scaling with the number of replicas (all on one 2-core machine)", r, [
      lineChart(r, {
        ...nCommon,
        title: "saturated throughput",
        y: { field: "txPerSec", title: "committed tx/s" },
      }),
      lineChart(r, {
        ...nCommon,
        title: "light-load latency",
        y: { field: "lightP50Ms", title: "p50 ms at light load (log)", log: true },
      }),
      lineChart(r, {
        ...nCommon,
        title: "cost",
        y: { field: "cpuMsPerTx", title: "CPU ms per committed tx" },
      }),
    ]),
    "scaling-batch": concat("Scaling with the batch size (hybrid, n = 3)", r, [
      lineChart(r, {
        ...bCommon,
        title: "saturated throughput",
        y: { field: "txPerSec", title: "committed tx/s" },
      }),
      lineChart(r, {
        ...bCommon,
        title: "saturated latency",
        y: { field: "p50Ms", title: "p50 ms, saturated (log)", log: true },
      }),
      lineChart(r, {
        ...bCommon,
        title: "cost",
        y: { field: "cpuMsPerTx", title: "CPU ms per committed tx (log)", log: true },
      }),
    ]),
  };
};

CHARTS.failover = (r) => {
  const data = r.rows.flatMap((x) =>
    ((x.timeline as { t: number; txPerSec: number }[]) ?? []).map((p) => ({
      mode: `${x.mode} n=${x.n} (median ${Math.round(x.killToNewViewCommitMs as number)} ms)`,
      t: p.t / 1000,
      txPerSec: p.txPerSec,
    })),
  );
  return {
    failover: lineChart(r, {
      title: `Leader killed at t = 0 under ${r.settings.rate} tx/s offered: committed tx/s (median round)`,
      data,
      x: { field: "t", title: "seconds since the leader was killed" },
      y: { field: "txPerSec", title: `committed tx/s (${r.settings.bucketMs} ms buckets)` },
      series: "mode",
      seriesTitle: "cluster (kill → first commit in new view)",
      width: 560,
    }),
  };
};

CHARTS.transport = (r) => {
  const part = (name: string, what: string) =>
    r.rows.filter((x) => x.part === name).map((x) => ({ ...x, what }));
  const pairs = part("pair", "one link");
  const cluster = part("cluster", "3-replica cluster");
  const transport = { field: "transport", title: "transport" };
  const charts: Record<string, TopLevelSpec> = {};
  if (pairs.length > 0)
    charts["transport-link"] = barPanels(
      r,
      "Transports: one link, both ends in one process",
      pairs,
      transport,
      [
        ["round trip (64 B)", { field: "rttP50Us", title: "RTT p50 µs" }],
        ["one-way throughput (256 B)", { field: "framesPerSec", title: "frames/s" }],
      ],
    );
  if (cluster.length > 0)
    charts["transport-cluster"] = barPanels(r, "3 hybrid replicas over each transport", cluster, transport, [
      ["commit latency, 1 outstanding", { field: "commitP50Ms", title: "p50 ms" }],
      ["throughput, 64 outstanding", { field: "txPerSec", title: "tx/s" }],
    ]);
  return charts;
};

CHARTS.core = (r) => ({
  core: barChart(r, {
    title: "The BFT core alone: one process, no network or disk",
    data: r.rows.map((x) => ({
      ...x,
      config: `${x.mode} n=${x.n}, client auth ${x.clientAuth}`,
      size: `${x.opBytes} B`,
    })),
    category: { field: "config", title: "configuration" },
    value: { field: "requestsPerSec", title: "ordered requests/s" },
    series: "size",
    seriesTitle: "operation size",
  }),
});

/** Draws a suite's charts from its latest results; returns the files written (none without results). */
export async function renderSuite(suite: string): Promise<string[]> {
  const charts = CHARTS[suite];
  const r = latestResults(suite);
  if (!charts || !r) return [];
  const files: string[] = [];
  for (const [name, spec] of Object.entries(charts(r))) files.push(await writeSvg(name, spec));
  return files;
}

export const PLOTTED_SUITES = (): string[] => Object.keys(CHARTS);
