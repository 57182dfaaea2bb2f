// Znode path rules, as ZooKeeper's PathUtils.validatePath: absolute, "/"-separated, no trailing slash,
// no empty, "." or ".." segments, no NUL and none of the control or reserved characters ZooKeeper
// refuses. A sequential create is validated with its counter appended (so "/queue/" is allowed there).

/** Characters ZooKeeper refuses in a path (besides "/" misuse). */
function badChar(c: number): boolean {
  return (
    c === 0 ||
    (c > 0x00 && c <= 0x1f) ||
    (c >= 0x7f && c <= 0x9f) ||
    (c >= 0xd800 && c <= 0xf8ff) ||
    (c >= 0xfff0 && c <= 0xffff)
  );
}

/** Why a path is invalid, or null when it is valid. */
export function pathProblem(path: unknown, sequential = false): string | null {
  if (typeof path !== "string") return "the path must be a string";
  const p = sequential ? `${path}1` : path;
  if (p.length === 0) return "the path is empty";
  if (p[0] !== "/") return "the path must start with /";
  if (p.length === 1) return null;
  if (p[p.length - 1] === "/") return "the path must not end with /";
  const segs = p.slice(1).split("/");
  for (const s of segs) {
    if (s.length === 0) return "empty segment (//) in the path";
    if (s === "." || s === "..") return `relative segment "${s}" in the path`;
  }
  for (let i = 0; i < p.length; i++) {
    if (badChar(p.charCodeAt(i)))
      return `invalid character U+${p.charCodeAt(i).toString(16).padStart(4, "0")} in the path`;
  }
  return null;
}

export function parentOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i <= 0 ? "/" : path.slice(0, i);
}

export function nameOf(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

export function joinPath(parent: string, name: string): string {
  return parent === "/" ? `/${name}` : `${parent}/${name}`;
}

/** The path and each of its ancestors up to "/" (for recursive watches). */
export function* selfAndAncestors(path: string): Generator<string> {
  let p = path;
  for (;;) {
    yield p;
    if (p === "/") return;
    p = parentOf(p);
  }
}

/** ZooKeeper's sequential suffix: the parent's counter as 10 zero-padded digits (negative after 2^31). */
export function sequenceSuffix(counter: number): string {
  const v = counter | 0;
  return v < 0 ? `-${String(-v).padStart(9, "0")}` : String(v).padStart(10, "0");
}
