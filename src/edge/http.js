// Helpers for src/edge/http.rs: a request's head comes into wasm in one call
// (the headers only some routes read, in one more), and a response goes out
// in one, where reading or setting each header, the method, the URL and the
// clock would be a call into JavaScript each, and building a `Headers` for
// `new Response` to copy would be two more.

/// The clock, the method, the URL and the headers every route may read, as
/// one string of fields joined by "\n" (which no method, normalised URL or
/// header value can hold), an absent header as "\0" (which no header value
/// can hold either).
export function head(request) {
  const headers = request.headers;
  return `${Date.now()}\n${request.method}\n${request.url}\n${headers.get("Origin") ?? "\0"}\n${
    headers.get("Authorization") ?? "\0"
  }\n${headers.get("Content-Length") ?? "\0"}`;
}

/// The headers only some routes read, in the same form as `head`.
export function moreHeaders(request) {
  const headers = request.headers;
  return `${headers.get("CF-Connecting-IP") ?? "\0"}\n${headers.get("Idempotency-Key") ?? "\0"}\n${
    headers.get("User-Agent") ?? "\0"
  }\n${headers.get("If-None-Match") ?? "\0"}`;
}

/// Calls `add(name, value)` for each pair of `extra` ("name\nvalue\n" pairs).
function eachHeader(extra, add) {
  const parts = extra.split("\n");
  for (let i = 0; i + 1 < parts.length; i += 2) add(parts[i], parts[i + 1]);
}

/// The runtime's Response: `body` (a view of wasm memory, copied here, as the
/// memory may move; none for statuses that carry no body), `status`, the
/// headers of a JSON body when `json`, and `extra` headers as "name\nvalue\n"
/// pairs. One headers object, built once, by the Response itself.
export function respond(body, status, json, extra) {
  const headers = json ? { "Content-Type": "application/json", "Cache-Control": "no-store" } : {};
  if (extra !== "") eachHeader(extra, (name, value) => (headers[name] = value));
  const bodyless = status === 204 || status === 205 || status === 304;
  return new Response(bodyless ? null : body.slice(), { status, headers });
}

/// `response` (the runtime's own, whose headers are immutable) with the
/// `extra` headers ("name\nvalue\n" pairs): each replaces the response's
/// own of that name (a static file's `Access-Control-Allow-Origin: *` and
/// the worker's grant side by side would be one header of two values, which
/// browsers refuse), but for `Vary`, a list the worker's value joins.
export function withHeaders(response, extra) {
  const copy = new Response(response.body, response);
  const headers = copy.headers;
  eachHeader(extra, (name) => {
    if (name.toLowerCase() !== "vary") headers.delete(name);
  });
  eachHeader(extra, (name, value) => headers.append(name, value));
  return copy;
}
