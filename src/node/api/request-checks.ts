// What every HTTP request and WebSocket upgrade passes before its route (docs/api.md, "Who may connect"):
//   - a browser's Origin header must be in the allow-list (requests without one, from programs, pass):
//     otherwise any web page the user opens could drive a replica on their machine (403 FORBIDDEN_ORIGIN);
//   - at most one Host header, and Content-Length headers that agree: a proxy in front that reads the
//     other one would see a different request boundary (request smuggling; 400 MALFORMED);
//   - header names and values of at most headersMaxBytes (431 HEADERS_TOO_LARGE).
// A refused request is answered and its connection closed: the bytes after it are not read as a request.
// uWebSockets.js itself drops, without an answer, requests it cannot parse (no Host, a header line
// without a colon, a bad request line, more headers than it keeps); see docs/api.md.

import type uWS from "uWebSockets.js";
import { ApiError } from "../../ordering/errors.ts";

export interface RequestLimits {
  /** Origins (scheme://host[:port], as browsers send them) allowed; "*" allows any. */
  readonly allowedOrigins: readonly string[];
  /** Bytes of header names and values a request may carry. */
  readonly headersMaxBytes: number;
}

/** The request's first refusal, or null when it may reach its route. Call it before any await. */
export function checkRequest(req: uWS.HttpRequest, limits: RequestLimits): ApiError | null {
  let bytes = 0;
  let hosts = 0;
  let origins = 0;
  let origin = "";
  let length: string | null = null;
  let conflict = false;
  req.forEach((k, v) => {
    bytes += k.length + v.length;
    if (k === "host") hosts++;
    else if (k === "origin") {
      origins++;
      origin = v;
    } else if (k === "content-length") {
      if (length === null) length = v;
      else if (v.trim() !== length.trim()) conflict = true;
    }
  });
  if (bytes > limits.headersMaxBytes)
    return new ApiError(
      "HEADERS_TOO_LARGE",
      `request headers exceed ${limits.headersMaxBytes} bytes (headersMaxBytes)`,
    );
  if (hosts > 1) return new ApiError("MALFORMED", "more than one Host header");
  if (conflict) return new ApiError("MALFORMED", "Content-Length headers that disagree");
  if (origins > 1) return new ApiError("MALFORMED", "more than one Origin header");
  if (origins === 1 && !originAllowed(origin, limits.allowedOrigins))
    return new ApiError(
      "FORBIDDEN_ORIGIN",
      `origin ${JSON.stringify(origin.slice(0, 200))} is not in this replica's allowedOrigins`,
    );
  return null;
}

/** Whether a browser origin is allowed: listed (compared without case or a trailing slash), or "*" listed. */
export function originAllowed(origin: string, allowed: readonly string[]): boolean {
  const o = normalizeOrigin(origin);
  return allowed.some((a) => a === "*" || normalizeOrigin(a) === o);
}

function normalizeOrigin(o: string): string {
  return o.trim().toLowerCase().replace(/\/+$/, "");
}

/** An allowedOrigins entry that can match: "*", or scheme://host[:port] with no path. */
export function validOriginEntry(o: unknown): boolean {
  return typeof o === "string" && (o === "*" || /^[a-z][a-z0-9+.-]*:\/\/[^/\s?#]+\/?$/i.test(o));
}

/**
 * What the per-address WebSocket bound counts by: an IPv4 address (also as uWS writes it mapped into
 * IPv6), or an IPv6 address's /64, which one client typically holds whole.
 */
export function addressKey(remote: string): string {
  const groups = remote.split(":");
  if (groups.length !== 8) return remote;
  const mapped = groups.slice(0, 6).join(":").toLowerCase();
  if (mapped === "0000:0000:0000:0000:0000:ffff" || mapped === "0:0:0:0:0:ffff") {
    const v4 = Number.parseInt(`${groups[6]}${(groups[7] ?? "").padStart(4, "0")}`, 16);
    return [v4 >>> 24, (v4 >>> 16) & 255, (v4 >>> 8) & 255, v4 & 255].join(".");
  }
  return `${groups.slice(0, 4).join(":")}::/64`;
}
