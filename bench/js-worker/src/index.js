// The Tally API's counting routes written as a JavaScript user would write
// them: @upstash/redis for Redis REST, HS256 through Web Crypto, no metrics.
// The comparison point of `make bench-api` (docs/benchmarks.md); not deployed.
//
// It runs the worker's own Lua scripts (src/scripts/*.lua, bundled as text) with
// the same KEYS and ARGV as src/engine.rs, so Redis does the same work for both
// workers, and answers with the same JSON. When a script's KEYS or ARGV change,
// change the call here too: the benchmark fails on any non-2xx answer.
//
// Routes: GET /healthz, PUT|DELETE /v1/items/{item}/like,
// POST /v1/items/{item}/views, GET /v1/items/{item}, GET /v1/items?ids=...
// Not here: visitors, counters, series, trending reads, metrics, static files
// (404), the bitmap likes store.
import { Redis } from "@upstash/redis/cloudflare";

import rateLimitLib from "../../../src/scripts/rate_limit_lib.lua";
import likeLua from "../../../src/scripts/like.lua";
import viewLua from "../../../src/scripts/view.lua";
import readLua from "../../../src/scripts/read.lua";
import trendingLua from "../../../src/scripts/trending.lua";

const RATE_WINDOW = 60;
const MAX_BATCH = 100;
const MAX_SUBJECT_BYTES = 256;
const IDEMPOTENCY_TTL = 86400;
const VIEWERS_TTL = 2 * 86400;
const BUCKETS = [
  ["minute", 60, 48 * 3600],
  ["hour", 3600, 35 * 86400],
  ["day", 86400, 400 * 86400],
];
const ITEM = /^[A-Za-z0-9._~:/-]{1,200}$/;
const BOTS = [
  "bot", "crawl", "spider", "slurp", "facebookexternalhit", "mediapartners-google",
  "bingpreview", "embedly", "pingdom", "uptimerobot", "lighthouse",
];
const encoder = new TextEncoder();

class HttpError extends Error {
  constructor(status, code, message, headers = {}) {
    super(message);
    Object.assign(this, { status, code, headers });
  }
}

const unauthorized = (message) => new HttpError(401, "unauthorized", message);

// One client and one set of scripts per isolate, made on the first request.
let state;
function init(env) {
  for (const name of ["UPSTASH_REDIS_REST_URL", "UPSTASH_REDIS_REST_TOKEN", "TALLY_JWT_SECRET"]) {
    if (!env[name]) throw new HttpError(500, "misconfigured", `the worker is misconfigured: ${name} is not set`);
  }
  // Script results are Redis replies, not JSON documents: keep them as they come.
  const redis = new Redis({
    url: env.UPSTASH_REDIS_REST_URL,
    token: env.UPSTASH_REDIS_REST_TOKEN,
    automaticDeserialization: false,
  });
  return {
    redis,
    like: redis.createScript(rateLimitLib + likeLua),
    view: redis.createScript(rateLimitLib + viewLua),
    read: redis.createScript(readLua),
    trending: redis.createScript(trendingLua),
    prefix: env.KEY_PREFIX || "tally",
    limit: Number(env.RATE_LIMIT_PER_MINUTE || 120),
    dedupe: Math.max(1, Number(env.VIEW_DEDUPE_SECONDS || 1800)),
    secret: env.TALLY_JWT_SECRET,
    origins: (env.ALLOWED_ORIGINS ?? "*").split(",").map((o) => o.trim().replace(/\/+$/, "")).filter(Boolean),
  };
}

export default {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    let response;
    try {
      state ??= init(env);
      response = await route(request, url, state, ctx);
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

async function route(request, url, s, ctx) {
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
      return allow(["POST"], () => view(request, segments[2], s, ctx));
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
  const keys = [rateKey(s, claims.sub, now), itemKey(s, item, "stats"), itemKey(s, item, "likers")];
  const args = [now, s.limit, RATE_WINDOW, claims.sub, want ? "1" : "0"].map(String);
  const [status, count, reset, likes, liked, changed] = await redisCall(() => s.like.exec(keys, args));
  const rate = rateStatus(s, count, reset);
  if (status !== 1) throw rateLimited(rate);
  return withRate(json({ changed: changed === 1, item, liked: liked === 1, likes: Math.max(0, likes) }), rate);
}

async function view(request, rawItem, s, ctx) {
  const now = nowSeconds();
  const item = itemId(rawItem);
  const idempotencyKey = request.headers.get("Idempotency-Key");
  if (idempotencyKey !== null && !/^[\x20-\x7e]{1,255}$/.test(idempotencyKey)) {
    throw new HttpError(400, "invalid_header", "Idempotency-Key must be 1-255 printable ASCII characters");
  }
  const userAgent = request.headers.get("User-Agent") ?? "";
  const claims = await identity(request, s, now);
  let viewer, limiter;
  if (claims) {
    viewer = limiter = claims.sub;
  } else {
    const ip = request.headers.get("CF-Connecting-IP") ?? "unknown";
    viewer = `v:${await dailyHash(s, now, [ip, userAgent])}`;
    limiter = `ip:${await dailyHash(s, now, [ip])}`;
  }
  const countable = !BOTS.some((bot) => userAgent.toLowerCase().includes(bot));
  const day = now - (now % 86400);
  const keys = [rateKey(s, limiter, now), itemKey(s, item, "stats"), itemKey(s, item, `seen:${viewer}`)];
  const args = [now, s.limit, RATE_WINDOW, viewer, s.dedupe, countable ? 1 : 0];
  for (const [name, width, ttl] of BUCKETS) {
    const start = now - (now % width);
    keys.push(itemKey(s, item, `views:${name}:${start}`));
    args.push(start + ttl);
  }
  keys.push(itemKey(s, item, `viewers:${day}`));
  args.push(day + VIEWERS_TTL);
  if (idempotencyKey !== null) {
    keys.push(`${s.prefix}:idem:{${idempotencyKey}}`);
    args.push(await fingerprint(item, viewer), IDEMPOTENCY_TTL);
  }
  const answer = await redisCall(() => s.view.exec(keys, args.map(String)));
  const [status, count, reset, views, counted] = answer;
  const rate = rateStatus(s, count, reset);
  if (status === 0) throw rateLimited(rate);
  if (status === 3) throw new HttpError(409, "idempotency_conflict", "this Idempotency-Key was already used with a different request");
  if (status === 1 && counted === 1) {
    // Trending is derived data: updated after the response, as the Rust worker does.
    const hour = now - (now % 3600);
    const trendKeys = [`${s.prefix}:trending:hour:${hour}`, `${s.prefix}:trending:day:${day}`];
    const trendArgs = [now, item, hour + 2 * 3600, day + 2 * 86400].map(String);
    ctx.waitUntil(s.trending.exec(trendKeys, trendArgs).catch((e) => console.warn(`trending update failed: ${e}`)));
  }
  const response = withRate(json({ counted: counted === 1, item, views: Math.max(0, views) }), rate);
  if (status === 2) response.headers.set("Idempotent-Replayed", "true");
  return response;
}

async function read(request, rawItem, s) {
  const now = nowSeconds();
  const item = itemId(rawItem);
  const claims = await identity(request, s, now);
  const [keys, args] = readCall(s, item, claims?.sub ?? "", now);
  return json(snapshot(item, await redisCall(() => s.read.exec(keys, args))));
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
  const calls = items.map((item) => readCall(s, item, claims?.sub ?? "", now));
  // One /pipeline of EVALSHAs; if Redis lost the script, once more with EVAL
  // (a read script changes nothing, so running it twice is harmless).
  const batch = async (send) => {
    const pipeline = s.redis.pipeline();
    for (const [keys, args] of calls) send(pipeline, keys, args);
    return pipeline.exec({ keepErrors: true });
  };
  s.readSha1 ??= crypto.subtle.digest("SHA-1", encoder.encode(readLua)).then((d) => hex(new Uint8Array(d)));
  const sha1 = await s.readSha1;
  let answers = await redisCall(() => batch((p, k, a) => p.evalsha(sha1, k, a)));
  if (answers.some((a) => a.error?.startsWith("NOSCRIPT"))) {
    answers = await redisCall(() => batch((p, k, a) => p.eval(readLua, k, a)));
  }
  const snapshots = answers.map((answer, i) => {
    if (answer.error) throw new HttpError(503, "backend_unavailable", "the counter store is unavailable, retry shortly");
    return snapshot(items[i], answer.result);
  });
  return json({ items: snapshots });
}

function readCall(s, item, who, now) {
  const day = now - (now % 86400);
  const keys = ["stats", "counters", `viewers:${day}`, "likers", "likers:bits"].map((k) => itemKey(s, item, k));
  return [keys, [String(now), who, ""]];
}

function snapshot(item, [likes, views, unique, flat, liked]) {
  const counters = {};
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const value = Number(flat[i + 1]);
    counters[flat[i]] = Number.isInteger(value) ? value : Number(value.toPrecision(15));
  }
  const body = { counters, item };
  if (liked !== -1) body.liked = liked === 1;
  return Object.assign(body, { likes: Math.max(0, likes), unique_viewers_today: unique, views: Math.max(0, views) });
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
const rateKey = (s, limiter, now) => `${s.prefix}:rl:{${limiter}}:${now - (now % RATE_WINDOW)}`;
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
