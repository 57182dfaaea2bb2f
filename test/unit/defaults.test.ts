// Option defaults are written in one place per component: a frozen `*_DEFAULTS` table beside the options
// type, filled in by its resolver (withDefaults, src/util/defaults.ts), so a class body reads resolved
// values. This scans src/ with the TypeScript parser for the inline form that table replaces,
// `opts.x ?? <literal>` (or `?? SOME_DEFAULT`), on an options object.

import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { withDefaults } from "../../src/util/defaults.ts";

const SRC = fileURLToPath(new URL("../../src/", import.meta.url));

/**
 * What an options object is called in src/: `o`, `opts`, `options`, `settings`, `config`, `cfg`, a
 * config `c` and the coordination section `z` / `c.coord`, whether reached as `this.o`, `ctx.o` or bare.
 */
const OPTIONS_HOLDER = /^(?:this\.|ctx\.)*(?:o|opts|options|settings|config|cfg|c|z|c\.coord)$/;
/** A field of `this` that only holds an option (so `this.readWaitMs ?? 10_000` is an inline default too). */
const OPTION_FIELD = /^this\.\w+(?:Ms|Max|Bytes)$/;

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : [],
  );
}

/** A number, string or boolean literal (or a negative number), or a `SOMETHING_DEFAULT` constant. */
function isLiteralDefault(e: ts.Expression): boolean {
  while (ts.isParenthesizedExpression(e)) e = e.expression;
  if (ts.isNumericLiteral(e) || ts.isStringLiteral(e) || ts.isNoSubstitutionTemplateLiteral(e)) return true;
  if (e.kind === ts.SyntaxKind.TrueKeyword || e.kind === ts.SyntaxKind.FalseKeyword) return true;
  if (ts.isPrefixUnaryExpression(e) && e.operator === ts.SyntaxKind.MinusToken)
    return isLiteralDefault(e.operand);
  if (ts.isBinaryExpression(e)) return isLiteralDefault(e.left) && isLiteralDefault(e.right); // 1024 * 1024
  return ts.isIdentifier(e) && /^[A-Z][A-Z0-9_]*_DEFAULT$/.test(e.text);
}

/** `opts.x ?? <literal>` defaults in `text`, as "line L: source". */
export function inlineDefaults(fileName: string, text: string): string[] {
  const sf = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, true);
  const out: string[] = [];
  const visit = (n: ts.Node): void => {
    if (
      ts.isBinaryExpression(n) &&
      n.operatorToken.kind === ts.SyntaxKind.QuestionQuestionToken &&
      isLiteralDefault(n.right)
    ) {
      let left = n.left;
      while (ts.isParenthesizedExpression(left)) left = left.expression;
      if (ts.isPropertyAccessExpression(left)) {
        const holder = left.expression.getText(sf).replace(/\?\./g, ".");
        const whole = left.getText(sf).replace(/\?\./g, ".");
        if (OPTIONS_HOLDER.test(holder) || OPTION_FIELD.test(whole)) {
          const line = sf.getLineAndCharacterOfPosition(n.getStart(sf)).line + 1;
          out.push(`line ${line}: ${n.getText(sf)}`);
        }
      }
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return out;
}

describe("option defaults", () => {
  const files = sources(SRC);

  it("finds the sources", () => {
    assert.ok(files.length > 50, `found ${files.length} source files under ${SRC}`);
  });

  it("no option default is written inline (`opts.x ?? literal`): each is in its component's *_DEFAULTS", () => {
    const found = files.flatMap((f) =>
      inlineDefaults(f, readFileSync(f, "utf8")).map((d) => `src/${relative(SRC, f)}: ${d}`),
    );
    assert.deepEqual(found, [], `${found.length} inline option defaults`);
  });

  it("the scan sees inline defaults on options objects and nothing else", () => {
    const src = [
      "const a = this.o.tickMs ?? 10;",
      "const b = opts?.name ?? 'x';",
      "const c = ctx.o.high ?? 1024 * 1024;",
      "const d = o.sync ?? true;",
      "const e = this.o.max ?? MAX_DEFAULT;",
      "const f = this.readWaitMs ?? 10_000;",
      "const g = o.version ?? -1;",
      "const h = m.minZxid ?? 0;", // a message field
      "const i = map.get(k) ?? 0;", // a lookup
      "const j = o.ports?.p2p[i] ?? x;", // not a literal
    ].join("\n");
    const found = inlineDefaults("x.ts", src);
    assert.equal(found.length, 7, `found ${found.join("; ")}`);
    assert.ok(
      found.every((d) => !/minZxid|map\.get|ports/.test(d)),
      "message fields, lookups and non-literal fallbacks are not reported",
    );
  });

  it("withDefaults fills unset, undefined and null options as `??` would and keeps the rest", () => {
    const opts = { a: 5, b: undefined, c: null, e: 0, g: null } as unknown as {
      a?: number;
      b?: string;
      c?: boolean;
      d?: number;
      e?: number;
      g?: number | null;
    };
    const r = withDefaults({ a: 1, b: "x", c: true, e: 7 }, opts);
    assert.deepEqual(r, { a: 5, b: "x", c: true, e: 0, g: null });
    assert.ok(!("d" in r), "an option without a default stays unset");
    assert.ok(r !== (opts as object), "the options are copied, not changed");
    assert.equal(opts.b, undefined);
  });
});
