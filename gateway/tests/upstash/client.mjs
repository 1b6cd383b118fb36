// Drives the gateway with the official @upstash/redis client, unchanged and
// with its default base64 response encoding. Run by tests/upstash_client.rs:
//   node client.mjs <gateway url> <token> <key prefix>
// Exits non-zero (with the failed assertion) on any difference.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
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

// Upstash key locking: the flag is accepted, and digests are those of the
// flagged body, as the client computes them.
const sha1 = (text) => createHash("sha1").update(text).digest("hex");
const locked = "#!lua flags=allow-key-locking\nreturn redis.call('INCRBY', KEYS[1], ARGV[1])";
const lockedRead = "#!lua flags=allow-key-locking,no-writes\nreturn redis.call('GET', KEYS[1])";
assert.equal(await redis.eval(locked, [key("kl")], [2]), 2);
assert.equal(await redis.evalsha(sha1(locked), [key("kl")], [3]), 5);
assert.equal(await redis.scriptLoad(lockedRead), sha1(lockedRead));
assert.deepEqual(await redis.scriptExists(sha1(locked), sha1(lockedRead), "0".repeat(40)), [1, 1, 0]);
assert.equal(await redis.evalsha(sha1(lockedRead), [key("kl")], []), 5);
assert.equal(await redis.evalRo(lockedRead, [key("kl")], []), 5);
assert.equal(await redis.evalshaRo(sha1(lockedRead), [key("kl")], []), 5);
// The client's own EVALSHA-then-EVAL helper, with a body it never loaded.
const fresh = redis.createScript("#!lua flags=allow-key-locking\nreturn ARGV[1] .. '!'");
assert.equal(await fresh.exec([], ["hi"]), "hi!");
assert.equal(await fresh.exec([], ["again"]), "again!");

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
