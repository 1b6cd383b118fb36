// Helpers for src/edge/http.rs: a request's head comes into wasm in one call,
// and a response goes out in one, where reading or setting each header, the
// method, the URL and the clock would be a call into JavaScript each, and
// building a `Headers` for `new Response` to copy would be two more.

/// The request headers the worker reads, in the order of `Header` in http.rs.
const NAMES = [
  "Origin",
  "Authorization",
  "Content-Length",
  "CF-Connecting-IP",
  "Idempotency-Key",
  "User-Agent",
  "If-None-Match",
];

/// The clock, the method, the URL and the headers in `NAMES`, as one string of
/// fields joined by "\n" (which no method, normalised URL or header value can
/// hold), an absent header as "\0" (which no header value can hold either).
export function head(request) {
  const headers = request.headers;
  let text = `${Date.now()}\n${request.method}\n${request.url}`;
  for (const name of NAMES) {
    const value = headers.get(name);
    text += value === null ? "\n\0" : `\n${value}`;
  }
  return text;
}

/// The runtime's Response: `body` (a view of wasm memory, copied here, as the
/// memory may move; none for statuses that carry no body), `status`, the
/// headers of a JSON body when `json`, and `extra` headers as "name\nvalue\n"
/// pairs. One headers object, built once, by the Response itself.
export function respond(body, status, json, extra) {
  const headers = json ? { "Content-Type": "application/json", "Cache-Control": "no-store" } : {};
  if (extra !== "") {
    const parts = extra.split("\n");
    for (let i = 0; i + 1 < parts.length; i += 2) headers[parts[i]] = parts[i + 1];
  }
  const bodyless = status === 204 || status === 205 || status === 304;
  return new Response(bodyless ? null : body.slice(), { status, headers });
}

/// `response` (the runtime's own, whose headers are immutable) with the
/// `extra` headers ("name\nvalue\n" pairs) appended.
export function withHeaders(response, extra) {
  const copy = new Response(response.body, response);
  const parts = extra.split("\n");
  for (let i = 0; i + 1 < parts.length; i += 2) copy.headers.append(parts[i], parts[i + 1]);
  return copy;
}
