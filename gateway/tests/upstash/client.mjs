// Drives the gateway with the official @upstash/redis client, unchanged and
// with its default base64 response encoding. Run by tests/upstash_client.rs:
//   node client.mjs <gateway url> <token> <key prefix>
// Exits non-zero (with the failed assertion) on any difference.
import assert from "node:assert/strict";
import { Redis } from "@upstash/redis";

const [url, token, prefix] = process.argv.slice(2);
const redis = new Redis({ url, token });
const key = (name) => `${prefix}:${name}`;

// set / get, including text that is not ASCII and a JSON value.
assert.equal(await redis.set(key("s"), "héllo ✓"), "OK");
assert.equal(await redis.get(key("s")), "héllo ✓");
assert.equal(await redis.set(key("obj"), { a: 1, b: ["x"] }, { ex: 100 }), "OK");
assert.deepEqual(await redis.get(key("obj")), { a: 1, b: ["x"] });
assert.equal(await redis.get(key("missing")), null);

// Counters.
assert.equal(await redis.incr(key("n")), 1);
assert.equal(await redis.incr(key("n")), 2);
assert.equal(await redis.incrbyfloat(key("f"), 1.25), 1.25);
assert.equal(await redis.incrbyfloat(key("f"), 0.5), 1.75);
assert.equal(await redis.hincrby(key("h"), "likes", 3), 3);
assert.equal(await redis.hincrby(key("h"), "likes", -1), 2);

// Scripts.
const script = "redis.call('HINCRBY', KEYS[1], 'views', ARGV[1]) return {KEYS[1], tonumber(redis.call('HGET', KEYS[1], 'views')), 'ok'}";
assert.deepEqual(await redis.eval(script, [key("h")], [5]), [key("h"), 5, "ok"]);
const sha = await redis.scriptLoad(script);
assert.match(sha, /^[0-9a-f]{40}$/);
assert.deepEqual(await redis.evalsha(sha, [key("h")], [2]), [key("h"), 7, "ok"]);
await assert.rejects(redis.evalsha("f".repeat(40), [], []), /NOSCRIPT/);

// A Redis error surfaces as a rejection with Redis's message.
await assert.rejects(redis.hget(key("s"), "x"), /WRONGTYPE/);

// Pipeline: in order, not atomic.
const p = redis.pipeline();
p.set(key("p"), "v1");
p.get(key("p"));
p.incr(key("pn"));
p.hset(key("ph"), { a: "1", b: "2" });
p.hgetall(key("ph"));
assert.deepEqual(await p.exec(), ["OK", "v1", 1, 2, { a: 1, b: 2 }]);

// Multi: atomic.
const tx = redis.multi();
tx.incr(key("tx"));
tx.incr(key("tx"));
tx.get(key("tx"));
assert.deepEqual(await tx.exec(), [1, 2, 2]);

// Many calls at once (the client may batch them itself).
const all = await Promise.all(Array.from({ length: 20 }, () => redis.incr(key("many"))));
assert.deepEqual([...all].sort((a, b) => a - b), Array.from({ length: 20 }, (_, i) => i + 1));

console.log("ok");
