// Rules for the test files themselves.
//
// A failing `assert.ok(x)` / `assert(x)` without a message makes Node 20 build one by reading the call's
// source. Under tsx the call site's line and column are those of the transformed code, so Node reads the
// .ts file at the wrong place, and in a file longer than a few kilobytes its search for the expression
// recurses with nothing more to read: the failure turns into minutes of CPU (it looked like a hung test
// in rdma-attacks). With a message Node skips all that, so every such call must carry one.

import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { it } from "node:test";
import ts from "typescript";

const root = join(import.meta.dirname, "..", "..");

function testFiles(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) testFiles(p, out);
    else if (p.endsWith(".ts")) out.push(p);
  }
  return out;
}

/** `file:line` of every assert.ok / assert call with a single argument. */
export function messagelessAsserts(file: string, source: string): string[] {
  const sf = ts.createSourceFile(file, source, ts.ScriptTarget.Latest, true);
  const found: string[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isCallExpression(node) && node.arguments.length === 1) {
      const callee = node.expression.getText(sf);
      if (callee === "assert" || callee === "assert.ok") {
        const { line } = sf.getLineAndCharacterOfPosition(node.getStart(sf));
        found.push(`${relative(root, file)}:${line + 1}`);
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return found;
}

it("the rule catches a message-less assert.ok and assert, and lets one with a message pass", () => {
  const src = 'assert.ok(a);\nassert(b);\nassert.ok(c, "c");\nassert.equal(d, 1);\n';
  assert.deepEqual(messagelessAsserts(join(root, "x.ts"), src), ["x.ts:1", "x.ts:2"]);
});

it("every assert.ok / assert in the tests carries a message", () => {
  const bad = testFiles(join(root, "test")).flatMap((f) => messagelessAsserts(f, readFileSync(f, "utf8")));
  assert.deepEqual(
    bad,
    [],
    `give these a message (see the comment at the top of this file): ${bad.join(", ")}`,
  );
});
