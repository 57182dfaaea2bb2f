// The benchmark charts: drawn headless from a results line, every data point becomes a mark, and
// bars on a log scale have a visible length (they start at a power of ten at most half the smallest
// value, not at 0, which a log scale cannot show).

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { barChart, lineChart, type ResultLine, renderSvg } from "../../bench/plot.ts";

const line = (rows: Record<string, unknown>[]): ResultLine => ({
  date: "2026-11-21T00:00:00.000Z",
  suite: "test",
  machine: { cpus: 2, cpuModel: "test", memGiB: 24, node: "v20.20.2" },
  commit: "abc",
  settings: {},
  rows,
});

/** Widths of the bars in an SVG (the `h<width>` of each bar path). */
const barWidths = (svg: string): number[] =>
  [...svg.matchAll(/aria-roledescription="bar" d="M[-\d.]+,[-\d.]+h([-\d.]+)/g)].map((m) => Number(m[1]));

describe("bench plots", () => {
  it("a line chart has a point per row, a line per series, and the date and commit", async () => {
    const r = line([
      { x: 1, y: 10, s: "a" },
      { x: 2, y: 20, s: "a" },
      { x: 1, y: 5, s: "b" },
    ]);
    const svg = await renderSvg(
      lineChart(r, {
        title: "t",
        data: r.rows,
        x: { field: "x", title: "x" },
        y: { field: "y", title: "y", log: true },
        series: "s",
        seriesTitle: "series",
      }),
    );
    assert.ok(svg.startsWith("<svg"), "an SVG document");
    assert.equal(svg.match(/aria-roledescription="point"/g)?.length, 3, "one point per row");
    assert.equal(svg.match(/aria-roledescription="line mark"/g)?.length, 2, "one line per series");
    assert.ok(svg.includes("2026-11-21") && svg.includes("commit abc"), "date and commit in the subtitle");
  });

  it("bars on a log scale are drawn with lengths in the ratio of their logs", async () => {
    const r = line([
      { c: "read", side: "ours", v: 10_000 },
      { c: "read", side: "theirs", v: 100 },
      { c: "write", side: "ours", v: 10 },
    ]);
    const svg = await renderSvg(
      barChart(r, {
        title: "t",
        data: r.rows,
        category: { field: "c", title: "op" },
        value: { field: "v", title: "ops/s", log: true },
        series: "side",
        seriesTitle: "system",
      }),
    );
    const widths = barWidths(svg).sort((a, b) => a - b);
    assert.equal(widths.length, 3, `three bars drawn, got ${widths.length}`);
    // From a floor of 1: log10(10) = 1, log10(100) = 2, log10(10000) = 4.
    const [w10, w100, w10k] = widths as [number, number, number];
    assert.ok(w10 > 0, `the smallest bar is visible: ${widths}`);
    assert.ok(Math.abs(w100 / w10 - 2) < 0.05, `100 is twice as long as 10 on this log scale: ${widths}`);
    assert.ok(Math.abs(w10k / w10 - 4) < 0.05, `10 000 is four times as long as 10: ${widths}`);
  });
});
