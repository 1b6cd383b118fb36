// One Redis REST round trip for src/edge/fetch.rs: the request, the answer's
// status and its body, handed back to wasm in ONE call of `deliver` (a
// function the wasm made once per isolate). Awaiting the promise from Rust
// instead would make a pair of closures per request, and reading the bytes out
// of it more calls. Bodies are bytes: no string is decoded from wasm memory or
// encoded into it.

const encoder = new TextEncoder();

/// `deliver`'s status for a request that ran out of time (HTTP statuses start at 100).
const TIMED_OUT = 0;
/// `deliver`'s status for a request that failed; the body is the message.
const FAILED = 1;

/// POSTs `body` (a view of wasm memory, copied here) to `url`, then calls
/// `deliver(id, status, clock, bytes)` once: the answer's status and body, or
/// TIMED_OUT when `millis` ran out first, or FAILED with the error's message;
/// `clock` is `Date.now()` when it was called.
export function post(url, authorization, body, millis, id, deliver) {
  const signal = AbortSignal.timeout(millis);
  const failed = (error) => {
    const message = error instanceof Error ? error.message : typeof error === "string" ? error : "fetch failed";
    deliver(id, signal.aborted ? TIMED_OUT : FAILED, Date.now(), encoder.encode(message));
  };
  fetch(url, {
    method: "POST",
    headers: { Authorization: authorization, "Content-Type": "application/json" },
    body: body.slice(),
    signal,
  }).then((response) => {
    response
      .arrayBuffer()
      .then((buffer) => deliver(id, response.status, Date.now(), new Uint8Array(buffer)), failed);
  }, failed);
}
