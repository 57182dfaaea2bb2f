// The size of the source's parts, so that a newcomer can read any one of them in a sitting: no module of
// src/ over FILE_LINES_MAX lines except the two protocol files, no function over FUNCTION_LINES_MAX
// (docs/architecture.md). Functions are found with the TypeScript parser, so a method, an arrow function
// and a function expression count alike, each with its whole body.

import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const SRC = fileURLToPath(new URL("../../src/", import.meta.url));
const FILE_LINES_MAX = 500;
const FUNCTION_LINES_MAX = 100;
/** The protocol modes, each one state machine read top to bottom beside its paper. */
const LONG_FILES_ALLOWED = new Set(["bft/hybrid.ts", "bft/pbft.ts"]);

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory()
      ? sources(join(dir, e.name))
      : /\.(ts|mts|mjs)$/.test(e.name) && !e.name.endsWith(".d.ts") && !e.name.endsWith(".d.mts")
        ? [join(dir, e.name)]
        : [],
  );
}

const lineCount = (text: string): number => text.split("\n").length - (text.endsWith("\n") ? 1 : 0);

/** Functions of `text` longer than `max` lines, as "name (N lines) at line L". */
export function longFunctions(fileName: string, text: string, max: number): string[] {
  const sf = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, true);
  const out: string[] = [];
  const visit = (n: ts.Node): void => {
    if (ts.isFunctionLike(n) && "body" in n && n.body !== undefined) {
      const from = sf.getLineAndCharacterOfPosition(n.getStart(sf)).line;
      const to = sf.getLineAndCharacterOfPosition(n.getEnd()).line;
      const name = n.name && ts.isIdentifier(n.name) ? n.name.text : "(anonymous)";
      if (to - from + 1 > max) out.push(`${name} (${to - from + 1} lines) at line ${from + 1}`);
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return out;
}

describe("source sizes", () => {
  const files = sources(SRC);

  it("finds the sources", () => {
    assert.ok(files.length > 50, `found ${files.length} source files under ${SRC}`);
  });

  it(`no module is over ${FILE_LINES_MAX} lines except the protocol files`, () => {
    const long = files
      .map((f) => ({ f: relative(SRC, f), lines: lineCount(readFileSync(f, "utf8")) }))
      .filter(({ f, lines }) => lines > FILE_LINES_MAX && !LONG_FILES_ALLOWED.has(f))
      .map(({ f, lines }) => `src/${f}: ${lines} lines`);
    assert.deepEqual(long, []);
  });

  it(`no function is over ${FUNCTION_LINES_MAX} lines`, () => {
    const long = files.flatMap((f) =>
      longFunctions(f, readFileSync(f, "utf8"), FUNCTION_LINES_MAX).map(
        (d) => `src/${relative(SRC, f)}: ${d}`,
      ),
    );
    assert.deepEqual(long, []);
  });

  it("the function check sees methods, arrow functions and function expressions", () => {
    const body = (n: number) => Array.from({ length: n }, (_, i) => `  x += ${i};`).join("\n");
    const src = [
      `class C { m() {\n${body(5)}\n} }`,
      `const a = () => {\n${body(5)}\n};`,
      `const e = function named() {\n${body(5)}\n};`,
      `function short() { return 1; }`,
    ].join("\n");
    const found = longFunctions("x.ts", src, 5);
    assert.equal(found.length, 3, `three long functions found: ${found.join("; ")}`);
    assert.ok(
      found.some((d) => d.startsWith("m ")) && found.some((d) => d.startsWith("named ")),
      `methods and named expressions are named: ${found.join("; ")}`,
    );
  });
});
