// One Redis REST round trip for src/edge/fetch.rs: the request, the answer's
// status and its body as ONE promise. Awaited from Rust, each promise costs a
// pair of closures, a wake-up and a poll; fetch-then-read-the-body as two
// would cost twice that, and building the headers and init from Rust a call
// each. Bodies are bytes: no string is decoded from wasm memory or encoded into it.

/// POSTs `body` (a view of wasm memory, copied here) to `url`; resolves to the
/// status (2 bytes, big endian), the clock when the answer was read (`Date.now()`,
/// 8 bytes, little endian) and the answer's body; rejects with null when
/// `millis` ran out first, else with the error's message.
export function post(url, authorization, body, millis) {
  const signal = AbortSignal.timeout(millis);
  return fetch(url, {
    method: "POST",
    headers: { Authorization: authorization, "Content-Type": "application/json" },
    body: body.slice(),
    signal,
  })
    .then((response) =>
      response.arrayBuffer().then((buffer) => {
        const answer = new Uint8Array(buffer.byteLength + 10);
        answer[0] = response.status >> 8;
        answer[1] = response.status & 255;
        new DataView(answer.buffer).setFloat64(2, Date.now(), true);
        answer.set(new Uint8Array(buffer), 10);
        return answer;
      }),
    )
    .catch((error) => {
      if (signal.aborted) throw null;
      throw error instanceof Error ? error.message : typeof error === "string" ? error : "fetch failed";
    });
}
