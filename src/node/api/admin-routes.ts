// The operator's routes: GET /health (200 with a quorum, else 503), GET /metrics (Prometheus text),
// GET /v1/misbehaviour (proofs held); and the answer to any other route (404, or 405 for a known path).

import type uWS from "uWebSockets.js";
import { ApiError } from "../../ordering/errors.ts";
import type { ApiContext } from "./context.ts";

export function adminRoutes(app: uWS.TemplatedApp, ctx: ApiContext): void {
  const o = ctx.o;
  app.get("/health", (res) => {
    const state = ctx.guard(res);
    if (!o.health) return ctx.error(res, state, new ApiError("NOT_FOUND", "no health report"));
    try {
      const h = o.health();
      ctx.json(res, state, h.ok ? 200 : 503, h);
    } catch (err) {
      ctx.error(res, state, err);
    }
  });
  app.get("/metrics", (res) => {
    const state = ctx.guard(res);
    const metrics = o.metrics;
    if (!metrics) return ctx.error(res, state, new ApiError("NOT_FOUND", "no metrics"));
    metrics().then(
      ({ contentType, body }) => {
        if (state.aborted) return;
        state.aborted = true;
        res.cork(() => {
          res.writeStatus("200 OK").writeHeader("content-type", contentType).end(body);
        });
      },
      (err: unknown) => ctx.error(res, state, err),
    );
  });
  app.get("/v1/misbehaviour", (res) => {
    const state = ctx.guard(res);
    ctx.json(res, state, 200, o.misbehaviour ? o.misbehaviour() : { halted: null, proofs: [] });
  });
}

/** Any route not served: 405 on a known path (another method), else 404. Registered last. */
export function fallbackRoute(app: uWS.TemplatedApp, ctx: ApiContext): void {
  app.any("/*", (res, req) => {
    const state = ctx.guard(res);
    const known = /^\/v1\/(transactions|blocks|chain)(\/|$)/.test(req.getUrl());
    ctx.error(
      res,
      state,
      known
        ? new ApiError("METHOD_NOT_ALLOWED", `${req.getMethod().toUpperCase()} is not allowed here`)
        : new ApiError("NOT_FOUND", `no route ${req.getUrl()}`),
    );
  });
}
