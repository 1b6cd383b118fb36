// Helpers for src/edge/http.rs and src/edge/entry.rs: each does in one call
// into JavaScript what would take several from Rust, and takes no header name
// or value that JavaScript would have to decode from wasm memory.

/// The headers of every JSON answer: counts are live, so no cache keeps them.
export function jsonHeaders() {
  return new Headers({ "Content-Type": "application/json", "Cache-Control": "no-store" });
}

/// The IETF `RateLimit-Policy` and `RateLimit` fields of the "writes" policy.
export function setRateHeaders(headers, limit, remaining, reset) {
  headers.set("RateLimit-Policy", `"writes";q=${limit};w=60`);
  headers.set("RateLimit", `"writes";r=${remaining};t=${reset}`);
}

/// A request header, or null.
export function header(request, name) {
  return request.headers.get(name);
}

/// The runtime's Response for a body in wasm memory (copied here, as the
/// memory it views may move), a status and headers.
export function respond(body, status, headers) {
  return new Response(body.slice(), { status, headers });
}
