// The floor of `make bench-api`: one EVALSHA of a like-sized script
// (gateway/examples/bench_like.lua, loaded by the benchmark; SHA in
// SCRIPT_SHA) through `fetch` per /v1/ request. No auth, no validation, no
// EVAL fallback; a plain 404 for anything else. Not a Tally worker.
export default {
  async fetch(request, env) {
    const path = new URL(request.url).pathname;
    if (!path.startsWith("/v1/")) return new Response("not found", { status: 404 });
    const item = path.split("/")[3] || "-";
    const now = Math.floor(Date.now() / 1000);
    const command = [
      "EVALSHA", env.SCRIPT_SHA, "3",
      `min:rl:${now - (now % 60)}`, `min:{${item}}:stats`, `min:{${item}}:likers`,
      String(now), "1000000000", "60", String(Math.random()), "1",
    ];
    const answer = await fetch(env.UPSTASH_REDIS_REST_URL, {
      method: "POST",
      headers: { Authorization: `Bearer ${env.UPSTASH_REDIS_REST_TOKEN}` },
      body: JSON.stringify(command),
    });
    const { result, error } = await answer.json();
    if (error !== undefined) return Response.json({ error }, { status: 503 });
    return Response.json({ item, result });
  },
};
