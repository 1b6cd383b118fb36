// The Tally API's counting routes written as a JavaScript user would write
// them: @upstash/redis for Redis REST, HS256 through Web Crypto, no metrics.
// The comparison point of `make bench-api` (docs/benchmarks.md); not deployed.
//
// It runs the worker's own Lua scripts (src/scripts/*.lua, bundled as text and
// put together as src/scripts.rs does: the key-locking shebang, then
// rate_limit_lib.lua for the rate-limited scripts, then the script) with the
// same KEYS and ARGV as src/engine.rs, so Redis does the same work for both
// workers (a counted view updates trending inside the view script: one script
// per view), and answers with the same JSON. The one difference is the batch
// read: here one script call per item in one pipeline, as @upstash/redis
// users batch; the Rust worker reads them all in one call of read.lua. When a script's KEYS or ARGV
// change, change the call here too: the benchmark fails on any non-2xx answer.
// It runs without a system of record: the scripts get their outbox stream key
// (the same shard as src/outbox.rs picks) and the flag '0', so they append nothing.
//
// Routes: GET /healthz, PUT|DELETE /v1/items/{item}/like,
// POST /v1/items/{item}/views, GET /v1/items/{item}, GET /v1/items?ids=...
// Settings: KEY_PREFIX, RATE_LIMIT_PER_MINUTE, NETWORK_RATE_LIMIT_PER_MINUTE,
// VIEW_DEDUPE_SECONDS, LIKES_STORE and BITMAP_MAX_ID, ITEMS and ITEM_PATTERN,
// ALLOWED_ORIGINS. Not here: visitors, item registration, counters, series,
// trending reads, metrics, static files (404).
import { Redis } from "@upstash/redis/cloudflare";

import rateLimitLib from "../../../src/scripts/rate_limit_lib.lua";
import likeLua from "../../../src/scripts/like.lua";
import viewLua from "../../../src/scripts/view.lua";
import readLua from "../../../src/scripts/read.lua";

// Upstash then locks only the script's KEYS (docs/gateway.md).
const SHEBANG = "#!lua flags=allow-key-locking\n";
const LIKE_SOURCE = SHEBANG + rateLimitLib + likeLua;
const VIEW_SOURCE = SHEBANG + rateLimitLib + viewLua;
const READ_SOURCE = SHEBANG + readLua;

const RATE_WINDOW = 60;
const NETWORK_LIMIT_FACTOR = 10;
const MAX_BITMAP_BITS = 2 ** 32;
const VISITOR_PREFIX = "anon:";
const MAX_BATCH = 100;
const MAX_SUBJECT_BYTES = 256;
const IDEMPOTENCY_TTL = 86400;
const VIEWERS_TTL = 31 * 86400;
const UNIQUE_WINDOW_DAYS = 30;
const BUCKETS = [
  ["minute", 60, 48 * 3600],
  ["hour", 3600, 35 * 86400],
  ["day", 86400, 400 * 86400],
];
// Trending windows: [name, width]; a set lives two windows.
const TRENDING = [
  ["hour", 3600],
  ["day", 86400],
];
const ITEM = /^[A-Za-z0-9._~:/-]{1,200}$/;
const BOTS = [
  "bot", "crawl", "spider", "slurp", "facebookexternalhit", "mediapartners-google",
  "bingpreview", "embedly", "pingdom", "uptimerobot", "lighthouse",
];
const encoder = new TextEncoder();
// The outbox's streams (src/outbox.rs SHARDS); the JS worker never appends to them.
const OUTBOX_SHARDS = 16;
const OUTBOX_OFF = "0";

class HttpError extends Error {
  constructor(status, code, message, headers = {}) {
    super(message);
    Object.assign(this, { status, code, headers });
  }
}

const unauthorized = (message) => new HttpError(401, "unauthorized", message);
const unknownItem = () =>
  new HttpError(404, "unknown_item", "this item is not open for writes here: it is outside ITEM_PATTERN or not registered");
const misconfigured = (message) => new HttpError(500, "misconfigured", `the worker is misconfigured: ${message}`);

// One client and one set of scripts per isolate, made on the first request.
let state;
function init(env) {
  for (const name of ["UPSTASH_REDIS_REST_URL", "UPSTASH_REDIS_REST_TOKEN", "TALLY_JWT_SECRET"]) {
    if (!env[name]) throw misconfigured(`${name} is not set`);
  }
  const number = (name, fallback) => {
    if (!env[name]) return fallback;
    const n = Number(env[name]);
    if (!Number.isSafeInteger(n) || n <= 0) throw misconfigured(`${name} must be a positive integer`);
    return n;
  };
  const limit = number("RATE_LIMIT_PER_MINUTE", 120);
  // LIKES_STORE=bitmap: new likes of canonical integer ids below BITMAP_MAX_ID go to the Bitmap.
  let bitmapMax = null;
  if (env.LIKES_STORE === "bitmap") bitmapMax = number("BITMAP_MAX_ID", 10_000_000);
  else if (env.LIKES_STORE && env.LIKES_STORE !== "set") throw misconfigured("LIKES_STORE must be set or bitmap");
  // ITEMS=pattern: only ids matching ITEM_PATTERN exist; ITEMS=registered: the scripts check.
  let pattern = null;
  if (env.ITEMS === "pattern") pattern = itemPattern(env.ITEM_PATTERN ?? "");
  else if (env.ITEMS && !["open", "registered"].includes(env.ITEMS)) {
    throw misconfigured("ITEMS must be open, pattern or registered");
  }
  // Script results are Redis replies, not JSON documents: keep them as they come.
  const redis = new Redis({
    url: env.UPSTASH_REDIS_REST_URL,
    token: env.UPSTASH_REDIS_REST_TOKEN,
    automaticDeserialization: false,
  });
  return {
    redis,
    like: redis.createScript(LIKE_SOURCE),
    view: redis.createScript(VIEW_SOURCE),
    read: redis.createScript(READ_SOURCE),
    prefix: env.KEY_PREFIX || "tally",
    limit,
    networkLimit: number("NETWORK_RATE_LIMIT_PER_MINUTE", limit * NETWORK_LIMIT_FACTOR),
    dedupe: number("VIEW_DEDUPE_SECONDS", 1800),
    bitmapMax,
    pattern,
    registered: env.ITEMS === "registered" ? "1" : "0",
    secret: env.TALLY_JWT_SECRET,
    origins: (env.ALLOWED_ORIGINS ?? "*").split(",").map((o) => o.trim().replace(/\/+$/, "")).filter(Boolean),
  };
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    let response;
    try {
      state ??= init(env);
      response = await route(request, url, state);
    } catch (error) {
      response = errorResponse(error);
    }
    const origin = request.headers.get("Origin");
    if (origin && state?.origins.some((o) => o === "*" || o.toLowerCase() === origin.toLowerCase())) {
      response.headers.set("Access-Control-Allow-Origin", origin);
      response.headers.set("Access-Control-Expose-Headers", "RateLimit, RateLimit-Policy, Retry-After");
      response.headers.append("Vary", "Origin");
    }
    return response;
  },
};

async function route(request, url, s) {
  const segments = url.pathname.slice(1).split("/");
  const method = request.method;
  const allow = (methods, handler) => {
    if (methods.includes(method) || (method === "HEAD" && methods.includes("GET"))) return handler();
    const allowed = methods.includes("GET") ? [...methods, "HEAD", "OPTIONS"] : [...methods, "OPTIONS"];
    throw new HttpError(405, "method_not_allowed", "this route does not answer this method", {
      Allow: allowed.join(", "),
    });
  };
  if (segments.length === 1 && segments[0] === "healthz") {
    return allow(["GET"], async () => {
      await redisCall(() => s.redis.ping());
      return json({ status: "ok" });
    });
  }
  if (segments[0] === "v1" && segments[1] === "items") {
    if (segments.length === 2) return allow(["GET"], () => readMany(request, url, s));
    if (segments.length === 3) return allow(["GET"], () => read(request, segments[2], s));
    if (segments.length === 4 && segments[3] === "like") {
      return allow(["PUT", "DELETE"], () => like(request, segments[2], s, method === "PUT"));
    }
    if (segments.length === 4 && segments[3] === "views") {
      return allow(["POST"], () => view(request, segments[2], s));
    }
  }
  // Answered, not thrown: the commonest miss needs no stack trace.
  return json({ error: { code: "not_found", message: "no route matches this path" } }, 404);
}

async function like(request, rawItem, s, want) {
  const now = nowSeconds();
  const item = itemId(rawItem);
  const claims = await identity(request, s, now);
  if (!claims) throw unauthorized("this route needs `Authorization: Bearer <token>`");
  checkItem(s, item);
  const network = await visitorNetwork(request, s, claims, now);
  const [keys, args] = limits(s, claims.sub, network, now);
  keys.push(itemKey(s, item, "stats"), itemKey(s, item, "likers"), itemKey(s, item, "likers:bits"), outboxKey(s, item));
  // Both stores are looked in; a new like goes to the Bitmap only in bitmap mode.
  const bit = userBit(claims.sub);
  const store = s.bitmapMax !== null && bit !== null && bit < s.bitmapMax ? "bits" : "set";
  args.push(s.registered, claims.sub, bit ?? "", store, want ? 1 : 0, OUTBOX_OFF, item);
  const answer = await redisCall(() => s.like.exec(keys, args.map(String)));
  const [status, count, reset, likes, liked, changed] = answer;
  if (status === 4) throw unknownItem();
  const rate = rateStatus(s, count, reset);
  if (status !== 1) throw rateLimited(rate);
  return withRate(json({ changed: changed === 1, item, liked: liked === 1, likes: Math.max(0, likes) }), rate);
}

async function view(request, rawItem, s) {
  const now = nowSeconds();
  const item = itemId(rawItem);
  const idempotencyKey = request.headers.get("Idempotency-Key");
  if (idempotencyKey !== null && !/^[\x20-\x7e]{1,255}$/.test(idempotencyKey)) {
    throw new HttpError(400, "invalid_header", "Idempotency-Key must be 1-255 printable ASCII characters");
  }
  const userAgent = request.headers.get("User-Agent") ?? "";
  const claims = await identity(request, s, now);
  let viewer, subject, network;
  if (claims) {
    viewer = subject = claims.sub;
    network = await visitorNetwork(request, s, claims, now);
  } else {
    const net = clientNetwork(request);
    viewer = `v:${await dailyHash(s, now, [net, userAgent])}`;
    subject = `ip:${await dailyHash(s, now, [net])}`;
  }
  checkItem(s, item);
  const countable = !BOTS.some((bot) => userAgent.toLowerCase().includes(bot));
  const day = now - (now % 86400);
  const [keys, args] = limits(s, subject, network, now);
  keys.push(itemKey(s, item, "stats"), itemKey(s, item, `seen:${viewer}`));
  args.push(s.registered, viewer, s.dedupe, countable ? 1 : 0);
  for (const [name, width, ttl] of BUCKETS) {
    const start = now - (now % width);
    keys.push(itemKey(s, item, `views:${name}:${start}`));
    args.push(start + ttl);
  }
  keys.push(itemKey(s, item, `viewers:${day}`));
  args.push(day + VIEWERS_TTL, item);
  // A counted view also counts in this hour's and day's trending sets, in the same script.
  for (const [name, width] of TRENDING) {
    const start = now - (now % width);
    keys.push(`${s.prefix}:trending:${name}:${start}`);
    args.push(start + 2 * width);
  }
  keys.push(itemKey(s, item, "viewers:all"), outboxKey(s, item));
  args.push(OUTBOX_OFF);
  if (idempotencyKey !== null) {
    keys.push(`${s.prefix}:idem:{${idempotencyKey}}`);
    args.push(await fingerprint(item, viewer), IDEMPOTENCY_TTL, idempotencyKey);
  }
  const answer = await redisCall(() => s.view.exec(keys, args.map(String)));
  const [status, count, reset, views, counted] = answer;
  if (status === 4) throw unknownItem();
  const rate = rateStatus(s, count, reset);
  if (status === 0) throw rateLimited(rate);
  if (status === 3) throw new HttpError(409, "idempotency_conflict", "this Idempotency-Key was already used with a different request");
  const response = withRate(json({ counted: counted === 1, item, views: Math.max(0, views) }), rate);
  if (status === 2) response.headers.set("Idempotent-Replayed", "true");
  return response;
}

async function read(request, rawItem, s) {
  const now = nowSeconds();
  const item = itemId(rawItem);
  const claims = await identity(request, s, now);
  checkItem(s, item);
  const [keys, args] = readCall(s, item, claims?.sub ?? "", now);
  // The script answers one snapshot per item asked: here, one.
  const [answer] = await redisCall(() => s.read.exec(keys, args));
  return json(snapshot(item, answer));
}

async function readMany(request, url, s) {
  const now = nowSeconds();
  const ids = url.searchParams.get("ids");
  if (ids === null) throw new HttpError(400, "invalid_query", "ids is required: ?ids=a,b,c");
  const items = ids.split(",").map((id) => {
    if (!ITEM.test(id)) throw invalidItem();
    return id;
  });
  if (items.length > MAX_BATCH) throw new HttpError(400, "invalid_query", `ids takes 1-${MAX_BATCH} item ids`);
  const claims = await identity(request, s, now);
  for (const item of items) checkItem(s, item);
  const calls = items.map((item) => readCall(s, item, claims?.sub ?? "", now));
  // One /pipeline of EVALSHAs, one per item; if Redis lost the script, once
  // more with EVAL (a read script changes nothing, so running it twice is
  // harmless). (read.lua takes any number of items in one call; the Rust
  // worker sends a batch that way, as one EVALSHA.)
  const batch = async (send) => {
    const pipeline = s.redis.pipeline();
    for (const [keys, args] of calls) send(pipeline, keys, args);
    return pipeline.exec({ keepErrors: true });
  };
  s.readSha1 ??= crypto.subtle.digest("SHA-1", encoder.encode(READ_SOURCE)).then((d) => hex(new Uint8Array(d)));
  const sha1 = await s.readSha1;
  let answers = await redisCall(() => batch((p, k, a) => p.evalsha(sha1, k, a)));
  if (answers.some((a) => a.error?.startsWith("NOSCRIPT"))) {
    answers = await redisCall(() => batch((p, k, a) => p.eval(READ_SOURCE, k, a)));
  }
  const snapshots = answers.map((answer, i) => {
    if (answer.error) throw new HttpError(503, "backend_unavailable", "the counter store is unavailable, retry shortly");
    return snapshot(items[i], answer.result[0]);
  });
  return json({ items: snapshots });
}

function readCall(s, item, who, now) {
  const day = now - (now % 86400);
  const keys = ["stats", "counters", `viewers:${day}`, "likers", "likers:bits", "viewers:all"].map((k) => itemKey(s, item, k));
  for (let back = 1; back < UNIQUE_WINDOW_DAYS; back++) keys.push(itemKey(s, item, `viewers:${day - back * 86400}`));
  // Any canonical id's bit is read, whatever LIKES_STORE says now: it may have been switched.
  return [keys, [String(now), who, String(userBit(who) ?? "")]];
}

function snapshot(item, [likes, views, today, flat, liked, week, month, allTime]) {
  const counters = {};
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const value = Number(flat[i + 1]);
    counters[flat[i]] = Number.isInteger(value) ? value : Number(value.toPrecision(15));
  }
  const body = { counters, item };
  if (liked !== -1) body.liked = liked === 1;
  const last7 = Math.max(week, today);
  const last30 = Math.max(month, last7);
  const unique = { all_time: Math.max(allTime, last30), last_30_days: last30, last_7_days: last7, today };
  return Object.assign(body, { likes: Math.max(0, likes), unique_viewers: unique, unique_viewers_today: today, views: Math.max(0, views) });
}

// --- identity: HS256 JSON Web Tokens through Web Crypto ---

const keyCache = new Map();
function hmacKey(secret) {
  let key = keyCache.get(secret);
  if (!key) {
    const raw = typeof secret === "string" ? encoder.encode(secret) : secret;
    key = crypto.subtle.importKey("raw", raw, { name: "HMAC", hash: "SHA-256" }, false, ["sign", "verify"]);
    if (typeof secret === "string") keyCache.set(secret, key);
  }
  return key;
}

async function identity(request, s, now) {
  const header = request.headers.get("Authorization");
  if (header === null) return null;
  const space = header.indexOf(" ");
  if (space < 0 || header.slice(0, space).toLowerCase() !== "bearer") {
    throw unauthorized("the Authorization header must be `Bearer <token>`");
  }
  const token = header.slice(space + 1).trim();
  const parts = token.split(".");
  const malformed = () => unauthorized("the token is malformed");
  if (parts.length !== 3) throw malformed();
  let head, signature;
  try {
    head = JSON.parse(base64urlText(parts[0]));
    signature = base64urlBytes(parts[2]);
  } catch {
    throw malformed();
  }
  if (head?.alg !== "HS256") throw unauthorized("the token must be signed with HS256");
  const signed = encoder.encode(`${parts[0]}.${parts[1]}`);
  if (!(await crypto.subtle.verify("HMAC", await hmacKey(s.secret), signature, signed))) {
    throw unauthorized("the token signature is invalid");
  }
  let claims;
  try {
    claims = JSON.parse(base64urlText(parts[1]));
  } catch {
    throw malformed();
  }
  const { sub, exp } = claims ?? {};
  if (typeof sub !== "string" || sub === "" || encoder.encode(sub).length > MAX_SUBJECT_BYTES || typeof exp !== "number") {
    throw unauthorized("the token needs a string `sub` (1-256 bytes) and a numeric `exp`");
  }
  if (Math.trunc(exp) <= now) throw unauthorized("the token has expired");
  return { sub, exp };
}

function base64urlBytes(part) {
  if (!/^[A-Za-z0-9_-]*$/.test(part)) throw new Error("not base64url");
  const binary = atob(part.replace(/-/g, "+").replace(/_/g, "/"));
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });
const base64urlText = (part) => utf8.decode(base64urlBytes(part));

const OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
const IPV4 = new RegExp(`^${OCTET}(\\.${OCTET}){3}$`);

// The client network of CF-Connecting-IP (src/viewer.rs): an IPv4 address, an
// IPv6 address's /64 (an IPv4-mapped one is its IPv4 address), else the text.
function clientNetwork(request) {
  const raw = request.headers.get("CF-Connecting-IP") ?? "unknown";
  const ip = raw.trim();
  if (IPV4.test(ip)) return ip;
  if (!ip.includes(":")) return raw;
  let url;
  try {
    url = new URL(`http://[${ip}]/`); // the URL parser normalises IPv6
  } catch {
    return raw;
  }
  const mapped = /^\[::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})\]$/.exec(url.hostname);
  if (mapped) {
    const [hi, lo] = [parseInt(mapped[1], 16), parseInt(mapped[2], 16)];
    return [hi >> 8, hi & 255, lo >> 8, lo & 255].join(".");
  }
  const halves = url.hostname.slice(1, -1).split("::");
  const head = halves[0] ? halves[0].split(":") : [];
  const tail = halves.length > 1 && halves[1] ? halves[1].split(":") : [];
  const groups = [...head, ...Array(8 - head.length - tail.length).fill("0"), ...tail];
  return `${groups.slice(0, 4).map((g) => parseInt(g, 16).toString(16)).join(":")}::/64`;
}

// The limiter all the visitor tokens writing from one network share, on top of their own.
async function visitorNetwork(request, s, claims, now) {
  if (!claims.sub.startsWith(VISITOR_PREFIX)) return null;
  return `net:${await dailyHash(s, now, [clientNetwork(request)])}`;
}

// A keyed hash whose salt rotates daily (src/viewer.rs): no raw IP reaches Redis.
async function dailyHash(s, now, parts) {
  const day = Math.floor(now / 86400);
  const salt = await crypto.subtle.sign("HMAC", await hmacKey(s.secret), encoder.encode(`tally viewer salt ${day}`));
  const id = await crypto.subtle.sign("HMAC", await hmacKey(new Uint8Array(salt)), encoder.encode(parts.map((p) => `${p}\n`).join("")));
  return hex(new Uint8Array(id).slice(0, 16));
}

async function fingerprint(item, viewer) {
  const digest = await crypto.subtle.digest("SHA-256", encoder.encode(`POST views\n${item}\n${viewer}`));
  return hex(new Uint8Array(digest).slice(0, 16));
}

const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

// --- helpers ---

function itemId(raw) {
  let decoded;
  try {
    decoded = decodeURIComponent(raw);
  } catch {
    throw new HttpError(400, "invalid_item", "the item id is not valid percent-encoded UTF-8");
  }
  if (!ITEM.test(decoded)) throw invalidItem();
  return decoded;
}

const invalidItem = () => new HttpError(400, "invalid_item", "item ids are 1-200 bytes of A-Z a-z 0-9 . _ ~ - : /");
const itemKey = (s, item, rest) => `${s.prefix}:{${item}}:${rest}`;

// The item's outbox stream: FNV-1a (32 bit) of the id's bytes modulo 16, as src/outbox.rs.
function outboxKey(s, item) {
  let hash = 0x811c9dc5;
  for (const byte of encoder.encode(item)) hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
  return `${s.prefix}:{#outbox:${hash % OUTBOX_SHARDS}}`;
}
const rateKey = (s, limiter, now) => `${s.prefix}:rl:{${limiter}}:${now - (now % RATE_WINDOW)}`;

// The two rate-limit keys and five arguments every write script starts with
// (rate_limit_lib.lua): the subject's limit and, for a visitor token, its network's.
function limits(s, subject, network, now) {
  const own = rateKey(s, subject, now);
  const keys = network ? [own, rateKey(s, network, now)] : [own, own];
  return [keys, [now, s.limit, RATE_WINDOW, network ? s.networkLimit : 0, RATE_WINDOW]];
}

// The bit of a canonical decimal id below 2^32 in an item's Bitmap, else null.
function userBit(who) {
  if (!/^(0|[1-9][0-9]{0,9})$/.test(who)) return null;
  const id = Number(who);
  return id < MAX_BITMAP_BITS ? id : null;
}

// ITEM_PATTERN: comma-separated prefixes, or whole-id globs when an entry has a `*`.
function itemPattern(list) {
  const entries = list.split(",").map((e) => e.trim()).filter(Boolean);
  if (entries.length === 0 || !entries.every((e) => /^[A-Za-z0-9._~:/*-]+$/.test(e))) {
    throw misconfigured("ITEM_PATTERN must be a comma list of prefixes or globs");
  }
  const escape = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const alternatives = entries.map((e) =>
    e.includes("*") ? e.split("*").map(escape).join(".*") : `${escape(e)}.*`,
  );
  return new RegExp(`^(?:${alternatives.join("|")})$`, "s");
}

// Under ITEMS=pattern an id outside the pattern can never exist: 404 before any I/O.
function checkItem(s, item) {
  if (s.pattern && !s.pattern.test(item)) throw unknownItem();
}

const nowSeconds = () => Math.floor(Date.now() / 1000);

function rateStatus(s, count, reset) {
  return { limit: s.limit, remaining: Math.max(0, s.limit - Math.max(0, count)), reset: Math.max(0, reset) };
}

function withRate(response, rate) {
  response.headers.set("RateLimit-Policy", `"writes";q=${rate.limit};w=${RATE_WINDOW}`);
  response.headers.set("RateLimit", `"writes";r=${rate.remaining};t=${rate.reset}`);
  return response;
}

function rateLimited(rate) {
  const error = new HttpError(429, "rate_limited", "too many writes: retry after the window resets", {
    "Retry-After": String(Math.max(1, rate.reset)),
  });
  error.rate = rate;
  return error;
}

async function redisCall(call) {
  try {
    return await call();
  } catch (error) {
    console.error(`backend failure: ${error}`);
    throw new HttpError(503, "backend_unavailable", "the counter store is unavailable, retry shortly", {
      "Retry-After": "1",
    });
  }
}

function json(body, status = 200) {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "Content-Type": "application/json", "Cache-Control": "no-store" },
  });
}

function errorResponse(error) {
  if (!(error instanceof HttpError)) {
    console.error(`internal error: ${error?.stack ?? error}`);
    error = new HttpError(500, "internal_error", "internal error");
  }
  const response = json({ error: { code: error.code, message: error.message } }, error.status);
  if (error.rate) withRate(response, error.rate);
  for (const [name, value] of Object.entries(error.headers)) response.headers.set(name, value);
  return response;
}
