// Who may connect to a replica's API, on a live uWebSockets.js server with raw sockets (docs/api.md,
// "Who may connect"): browser origins outside the allow-list refused (403) on HTTP and WebSocket
// upgrades, conflicting Content-Length and repeated Host refused (400) with the connection closed,
// oversized headers refused (431), WebSocket connections bounded per remote address so that one client
// cannot lock out another, idle WebSockets closed; and what uWS itself does with requests it cannot
// parse (no answer; the connection is closed by its idle timer).

import assert from "node:assert/strict";
import { connect } from "node:net";
import { after, before, describe, it } from "node:test";
import WebSocket from "ws";
import { sha256 } from "../../src/crypto/node-crypto.ts";
import { ApiServer, type ApiServerOptions } from "../../src/node/api-server.ts";
import { ApiError } from "../../src/ordering/errors.ts";
import type { Gateway } from "../../src/ordering/gateway.ts";
import type { Ledger } from "../../src/ordering/ledger.ts";
import { waitFor } from "../util/wait.ts";

/** Submissions that reached a test server's gateway. */
let submissions = 0;

/** An API server over a ledger with no blocks and a gateway that answers every submission NO_QUORUM. */
async function server(o: Partial<ApiServerOptions> = {}): Promise<ApiServer> {
  const ledger = {
    height: 0,
    certifiedHeight: 0,
    getBlock: async () => undefined,
    findTx: async () => undefined,
  } as unknown as Ledger;
  const gateway = {
    submit: async () => {
      submissions++;
      throw new ApiError("NO_QUORUM", "no quorum (test)");
    },
    receipt: async () => undefined,
  } as unknown as Gateway;
  const api = new ApiServer({
    host: "127.0.0.1",
    port: 0,
    ledger,
    gateway,
    hash: sha256,
    txMaxBytes: 4096,
    ...o,
  });
  await api.start();
  return api;
}

/** Sends `text` on a fresh connection; what came back within `waitMs`, and whether the server closed it. */
function raw(port: number, text: string, waitMs = 2000): Promise<{ text: string; closed: boolean }> {
  return new Promise((resolve) => {
    const s = connect(port, "127.0.0.1");
    let out = "";
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ text: out, closed: false });
    }, waitMs);
    s.on("data", (d) => {
      out += d.toString("latin1");
    });
    s.on("error", () => {});
    s.on("close", () => {
      clearTimeout(timer);
      resolve({ text: out, closed: true });
    });
    s.write(text);
  });
}

const statusOf = (text: string) => Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
const codeIn = (text: string) => /"code":"([A-Z_]+)"/.exec(text)?.[1];

/** Opens a WebSocket; its HTTP status when the upgrade is refused, 101 when it opens. */
function wsOpen(
  url: string,
  o: WebSocket.ClientOptions = {},
): Promise<{ status: number; ws: WebSocket | null; body: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, o);
    ws.once("open", () => resolve({ status: 101, ws, body: "" }));
    ws.once("unexpected-response", (_req, res) => {
      let body = "";
      res.on("data", (d: Buffer) => {
        body += d.toString();
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, ws: null, body }));
      res.on("error", () => resolve({ status: res.statusCode ?? 0, ws: null, body }));
    });
    ws.once("error", (err) => reject(err));
  });
}

describe("API hardening (a live uWS server, raw sockets)", () => {
  let api: ApiServer;
  let port: number;

  before(async () => {
    api = await server();
    port = api.port;
  });

  after(async () => {
    await api?.stop();
  });

  it("refuses a WebSocket upgrade and an HTTP request from a browser origin outside the allow-list (403)", async () => {
    const evil = await wsOpen(`ws://127.0.0.1:${port}/v1/submit`, { origin: "http://evil.example" });
    assert.equal(evil.status, 403, "an upgrade with Origin: http://evil.example is refused");
    assert.match(evil.body, /"code":"FORBIDDEN_ORIGIN"/, "with the typed error code");
    for (const path of ["/v1/deliver", "/v1/coord"]) {
      const r = await wsOpen(`ws://127.0.0.1:${port}${path}`, { origin: "null" });
      assert.equal(r.status, 403, `${path}: an opaque origin (null) is refused too`);
    }
    const post = await raw(
      port,
      "POST /v1/transactions HTTP/1.1\r\nHost: a\r\nOrigin: https://evil.example\r\nContent-Length: 2\r\n\r\nhi",
    );
    assert.equal(statusOf(post.text), 403, `a cross-origin POST is refused: ${post.text}`);
    assert.equal(codeIn(post.text), "FORBIDDEN_ORIGIN", "with the typed error code");
    assert.ok((api.stats.refused.FORBIDDEN_ORIGIN ?? 0) >= 4, "each refusal is counted for the metric");
    // Programs send no Origin: they are not affected.
    const plain = await wsOpen(`ws://127.0.0.1:${port}/v1/submit`);
    assert.equal(plain.status, 101, "an upgrade without Origin opens");
    plain.ws?.close();
  });

  it("lets in a browser origin that the node config allows", async () => {
    const allowing = await server({ allowedOrigins: ["https://dashboard.example"] });
    try {
      const url = `ws://127.0.0.1:${allowing.port}/v1/deliver`;
      const ok = await wsOpen(url, { origin: "https://Dashboard.example" });
      assert.equal(ok.status, 101, "the listed origin opens (origins compare without case)");
      ok.ws?.close();
      const other = await wsOpen(url, { origin: "https://dashboard.example.evil" });
      assert.equal(other.status, 403, "an origin that only starts like the listed one is refused");
    } finally {
      await allowing.stop();
    }
  });

  it("refuses two different Content-Length headers (400) and closes the connection: nothing is smuggled", async () => {
    const r = await raw(
      port,
      "POST /v1/transactions HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nhi",
    );
    assert.equal(statusOf(r.text), 400, `conflicting lengths are refused: ${r.text}`);
    assert.equal(codeIn(r.text), "MALFORMED", "with the typed error code");
    assert.ok(r.closed, "the server closed the connection");
    // Read with the first length, the body's tail would be a second request: it never reaches a route.
    const submitted = submissions;
    const smuggled = "POST /v1/transactions HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx";
    const s = await raw(
      port,
      `POST /v1/transactions HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: ${2 + smuggled.length}\r\n\r\nhi${smuggled}`,
    );
    assert.ok(s.closed, "the server closed the connection");
    assert.ok(!/^HTTP\/1\.1 [^4]/m.test(s.text), `nothing but a refusal is answered: ${s.text}`);
    assert.equal(submissions, submitted, "the smuggled transaction never reached the gateway");
    const same = await raw(
      port,
      "POST /v1/transactions HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi",
    );
    assert.equal(
      statusOf(same.text),
      503,
      `equal repeated lengths reach the route (NO_QUORUM): ${same.text}`,
    );
    assert.equal(submissions, submitted + 1, "and its gateway");
  });

  it("refuses two Host headers (400) and headers over headersMaxBytes (431)", async () => {
    const hosts = await raw(port, "GET /v1/chain HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
    assert.equal(statusOf(hosts.text), 400, `two Host headers are refused: ${hosts.text}`);
    assert.equal(codeIn(hosts.text), "MALFORMED", "with the typed error code");
    assert.ok(hosts.closed, "and the connection closed");
    const big = await raw(port, `GET /v1/chain HTTP/1.1\r\nHost: a\r\nX-Big: ${"a".repeat(20_000)}\r\n\r\n`);
    assert.equal(statusOf(big.text), 431, `20 KB of headers are refused: ${big.text.slice(0, 200)}`);
    assert.equal(codeIn(big.text), "HEADERS_TOO_LARGE", "with the typed error code");
    const upgrade = await wsOpen(`ws://127.0.0.1:${port}/v1/submit`, {
      headers: { "x-big": "a".repeat(20_000) },
    });
    assert.equal(upgrade.status, 431, "an upgrade with oversized headers is refused as well");
    const fine = await raw(port, "GET /v1/chain HTTP/1.1\r\nHost: a\r\n\r\n");
    assert.equal(statusOf(fine.text), 200, `an ordinary request still passes: ${fine.text}`);
  });

  it("documents what uWS does with requests it cannot parse: no answer, the server keeps serving", async () => {
    // uWebSockets.js 20.30 drops these before any handler runs (no 400 is possible from JavaScript);
    // its HTTP idle timer closes the connection about 10 s later (docs/api.md).
    const cases = {
      "no Host": "GET /v1/chain HTTP/1.1\r\n\r\n",
      "a header line without a colon": "GET /v1/chain HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n",
      "a bad request line": "GARBAGE\r\n\r\n",
      "60 headers": `GET /v1/chain HTTP/1.1\r\nHost: a\r\n${Array.from({ length: 60 }, (_, i) => `X-H${i}: v\r\n`).join("")}\r\n`,
      "Content-Length that is not a number":
        "POST /v1/transactions HTTP/1.1\r\nHost: a\r\nContent-Length: 2, 2\r\n\r\nhi",
    };
    const results = await Promise.all(Object.values(cases).map((t) => raw(port, t, 1000)));
    for (const [i, name] of Object.keys(cases).entries())
      assert.equal(results[i]?.text, "", `${name}: uWS sends nothing (got ${results[i]?.text})`);
    const fine = await raw(port, "GET /v1/chain HTTP/1.1\r\nHost: a\r\n\r\n");
    assert.equal(statusOf(fine.text), 200, "the server still answers others");
  });
});

describe("API connection bounds (a live uWS server)", () => {
  it("one address holding its WebSocket bound does not lock out another address", async () => {
    const api = await server({ wsConnectionsMax: 8, wsPerAddressMax: 4 });
    const open: WebSocket[] = [];
    try {
      const url = `ws://127.0.0.1:${api.port}/v1/submit`;
      const statuses: number[] = [];
      for (let i = 0; i < 8; i++) {
        const r = await wsOpen(url, { localAddress: "127.0.0.1" });
        statuses.push(r.status);
        if (r.ws) open.push(r.ws);
      }
      assert.deepEqual(
        statuses,
        [101, 101, 101, 101, 429, 429, 429, 429],
        "one address gets wsPerAddressMax connections, then 429",
      );
      const other = await wsOpen(url, { localAddress: "127.0.0.2" });
      assert.equal(other.status, 101, "another address still gets in");
      if (other.ws) open.push(other.ws);
      assert.equal(api.stats.refused.TOO_MANY_CONNECTIONS, 4, "each refusal is counted for the metric");
      // A closed connection gives its place back.
      open[0]?.close();
      await waitFor("the closed connection's place", async () => {
        const again = await wsOpen(url, { localAddress: "127.0.0.1" });
        if (again.ws) open.push(again.ws);
        return again.status === 101;
      });
    } finally {
      for (const ws of open) ws.terminate();
      await api.stop();
    }
  });

  it("closes a WebSocket whose peer answers nothing, not even pings, within wsIdleTimeoutSec", async () => {
    const api = await server({ wsIdleTimeoutSec: 8 });
    try {
      const started = Date.now();
      const silent = await wsOpen(`ws://127.0.0.1:${api.port}/v1/deliver`, { autoPong: false });
      const live = await wsOpen(`ws://127.0.0.1:${api.port}/v1/deliver`);
      assert.ok(silent.ws && live.ws, "both open");
      const closed = new Promise<number>((resolve) =>
        silent.ws?.once("close", () => resolve(Date.now() - started)),
      );
      let liveClosed = false;
      live.ws?.once("close", () => {
        liveClosed = true;
      });
      const ms = await closed;
      assert.ok(ms < 20_000, `the silent connection was closed after ${ms} ms`);
      assert.equal(liveClosed, false, "a connection that answers pings stays open");
      live.ws?.close();
    } finally {
      await api.stop();
    }
  });
});
