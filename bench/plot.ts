// SVG charts for the benchmark suites, drawn headless with Vega-Lite (compiled to Vega, rendered by
// Vega's SVG string renderer: no browser, no canvas). Every chart is drawn from a suite's latest line
// in bench/results/<suite>.jsonl, so `npm run bench -- plot` redraws them all without rerunning a
// benchmark, and a suite redraws its own charts when it has appended its results.

import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as vega from "vega";
import { compile, type TopLevelSpec } from "vega-lite";

export const PLOTS_DIR = join(import.meta.dirname, "plots");
const RESULTS_DIR = join(import.meta.dirname, "results");

export type Row = Record<string, unknown>;

export interface ResultLine {
  readonly date: string;
  readonly suite: string;
  readonly machine: { cpus: number; cpuModel: string; memGiB: number; node: string };
  readonly commit: string;
  readonly settings: Record<string, unknown>;
  readonly rows: Row[];
}

/** The last line a suite appended to bench/results/<suite>.jsonl, or null when it has none. */
export function latestResults(suite: string): ResultLine | null {
  const file = join(RESULTS_DIR, `${suite}.jsonl`);
  if (!existsSync(file)) return null;
  const lines = readFileSync(file, "utf8").trim().split("\n").filter(Boolean);
  const last = lines[lines.length - 1];
  return last ? (JSON.parse(last) as ResultLine) : null;
}

/** Renders a Vega-Lite spec to an SVG document. */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: "none" });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** Renders a Vega-Lite spec to bench/plots/<name>.svg; returns the file's path. */
export async function writeSvg(name: string, spec: TopLevelSpec): Promise<string> {
  const svg = await renderSvg(spec);
  mkdirSync(PLOTS_DIR, { recursive: true });
  const file = join(PLOTS_DIR, `${name}.svg`);
  writeFileSync(file, `${svg}\n`);
  return file;
}

/** Long labels in full (Vega-Lite cuts axis and legend labels at 180 px by default). */
const CONFIG = { axis: { labelLimit: 320 }, legend: { labelLimit: 320, titleLimit: 320 } };

const subtitle = (r: ResultLine) =>
  `${r.date.slice(0, 10)} · ${r.machine.cpus} cores · Node ${r.machine.node} · commit ${r.commit}`;

export interface Axis {
  readonly field: string;
  readonly title: string;
  readonly log?: boolean;
  /** Whole numbers only on the axis (a count such as n). */
  readonly integer?: boolean;
}

const axisOf = (a: Axis) => (a.integer ? { axis: { format: "d", tickMinStep: 1 } } : {});

/** Lines with points: one line per value of `series`, x and y quantitative. */
export function lineChart(
  r: ResultLine,
  o: {
    title: string;
    data: Row[];
    x: Axis;
    y: Axis;
    series: string;
    seriesTitle: string;
    width?: number;
    /** The field the line follows from point to point (default: x). */
    order?: string;
  },
): TopLevelSpec {
  const scale = (a: Axis) => (a.log ? { type: "log" as const } : { zero: false });
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    config: CONFIG,
    title: { text: o.title, subtitle: subtitle(r) },
    width: o.width ?? 420,
    height: 260,
    data: { values: o.data },
    mark: { type: "line", point: true },
    encoding: {
      x: { field: o.x.field, type: "quantitative", title: o.x.title, scale: scale(o.x), ...axisOf(o.x) },
      y: { field: o.y.field, type: "quantitative", title: o.y.title, scale: scale(o.y) },
      color: { field: o.series, type: "nominal", title: o.seriesTitle },
      ...(o.order ? { order: { field: o.order, type: "quantitative" as const } } : {}),
    },
  };
}

/** Grouped bars: one group per `category`, one bar per `series` value in it. */
export function barChart(
  r: ResultLine,
  o: { title: string; data: Row[]; category: Axis; value: Axis; series: string; seriesTitle: string },
): TopLevelSpec {
  // A bar on a log scale cannot start at 0: it starts at a power of ten at most half the smallest value.
  const values = o.data
    .map((d) => d[o.value.field])
    .filter((v): v is number => typeof v === "number" && v > 0);
  const floor = 10 ** Math.floor(Math.log10(Math.min(...values, 1e12)) - Math.log10(2));
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    config: CONFIG,
    title: { text: o.title, subtitle: subtitle(r) },
    data: { values: o.data },
    mark: "bar",
    encoding: {
      y: { field: o.category.field, type: "nominal", title: o.category.title, sort: null },
      // Series in the order of the data (sizes stay 0 B, 128 B, 1 KiB rather than sorted as text).
      yOffset: { field: o.series, type: "nominal", sort: null },
      x: {
        field: o.value.field,
        type: "quantitative",
        title: o.value.title,
        ...(o.value.log ? { scale: { type: "log" as const, domainMin: floor } } : {}),
      },
      ...(o.value.log ? { x2: { datum: floor } } : {}),
      color: { field: o.series, type: "nominal", title: o.seriesTitle, sort: null },
    },
    width: 300,
  };
}

/** Side by side: several specs in one SVG. */
export function concat(title: string, r: ResultLine, specs: TopLevelSpec[]): TopLevelSpec {
  // The panels keep their own titles; the date and machine are said once, above them.
  const strip = (s: TopLevelSpec) => {
    const {
      $schema: _s,
      title,
      ...rest
    } = s as TopLevelSpec & { $schema?: string; title?: { text: string } };
    return { ...rest, title: title?.text ?? "" };
  };
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    config: CONFIG,
    title: { text: title, subtitle: subtitle(r) },
    hconcat: specs.map(strip),
    resolve: { scale: { color: "shared" } },
  } as TopLevelSpec;
}
