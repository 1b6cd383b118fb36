// Where a worker's CPU goes: serves BUNDLE through Miniflare WITH workerd's
// inspector, and for each PHASE records a V8 CPU profile (Chrome DevTools
// protocol: Profiler.start/stop) while examples/load_api.rs drives the phase.
// Writes OUTDIR/PHASE.cpuprofile (open in Chrome DevTools) and prints, per
// phase, the busiest functions by self time and the share of time spent under
// named suspects (inclusive), each also in µs per answered request. For bench/profile.sh; Node 20 needs
// --experimental-websocket.
//
//   node --experimental-websocket bench/profile.mjs BUNDLE VARS_FILE DATE OUTDIR \
//        LOAD_API SECRET CONNECTIONS SECONDS PHASE...
//
// The inspector and the sampling slow the worker down: compare shares within a
// profile, not throughput with `make bench-api`. Wasm frames carry names only
// when the bundle kept its name section (bench/profile.sh builds one that does).
import { spawn } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import net from "node:net";
import { Miniflare } from "miniflare";
import { bundleOptions, readVars } from "../scripts/miniflare-bundle.mjs";

const [bundle, varsFile, compatibilityDate, outDir, loadApi, secret, connections, seconds, ...phases] =
  process.argv.slice(2);
if (!phases.length) {
  console.error("usage: profile.mjs BUNDLE VARS_FILE DATE OUTDIR LOAD_API SECRET CONNECTIONS SECONDS PHASE...");
  process.exit(2);
}

// Named suspects (issue 11): a sample counts for a suspect when any frame of
// its stack matches. Names are demangled Rust paths or JS function names.
const SUSPECTS = [
  ["Config::from_env (bindings read per request)", /config::Config::from_env|edge::config::(optional|required|number|allowed_origins)/],
  ["Config::engine (client + observer per request)", /config::Config::engine/],
  ["reqwest::Client::new", /reqwest::.*Client::new|reqwest::.*ClientBuilder::build/],
  ["reqwest (all)", /reqwest::/],
  ["metrics::record (edge metrics after each response)", /edge::metrics::record/],
  ["metrics: outcome_of_body (JSON re-parse)", /outcome_of_body/],
  ["metrics: prometheus-client / Metrics", /prometheus_client::|tally::metrics::/],
  ["metrics: schedule_flush", /schedule_flush/],
  ["serde_json (all)", /serde_json::/],
  ["token::verify (JWT)", /token::verify/],
  ["sha2/hmac", /sha2::|hmac::/],
  ["url crate (parse, IDNA)", /^url::|idna::/],
  ["worker::Headers / header calls", /worker::headers::|Headers/],
  ["worker Request/Response glue", /worker::(request|response)::/],
  ["wasm-bindgen JS glue (__wbg_*)", /^__wbg_|^__wbindgen/],
  ["Rust allocator (dlmalloc)", /dlmalloc::|__rust_alloc|__rust_dealloc|__rust_realloc/],
  ["fetch (JS builtin)", /^fetch$/],
  ["garbage collector", /^\(garbage collector\)$/],
];

const bindings = readVars(varsFile);

const freePort = () =>
  new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });

const inspectorPort = await freePort();
const mf = new Miniflare({
  ...bundleOptions(bundle, compatibilityDate, bindings),
  host: "127.0.0.1",
  port: 0,
  inspectorPort,
});
const url = await mf.ready;
mkdirSync(outDir, { recursive: true });

const run = (args) =>
  new Promise((resolve) => {
    const child = spawn(loadApi, args, { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.on("close", (code) => resolve({ code, out: out.trim() }));
  });

try {
  const targets = await (await fetch(`http://127.0.0.1:${inspectorPort}/json/list`)).json();
  const target = targets.find((t) => t.webSocketDebuggerUrl) ?? targets[0];
  const socket = new WebSocket(target.webSocketDebuggerUrl);
  await new Promise((resolve, reject) => {
    socket.onopen = resolve;
    socket.onerror = reject;
  });
  let nextId = 1;
  const pending = new Map();
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.id && pending.has(message.id)) {
      const { resolve, reject } = pending.get(message.id);
      pending.delete(message.id);
      message.error ? reject(new Error(JSON.stringify(message.error))) : resolve(message.result);
    }
  };
  const send = (method, params = {}) =>
    new Promise((resolve, reject) => {
      const id = nextId++;
      pending.set(id, { resolve, reject });
      socket.send(JSON.stringify({ id, method, params }));
    });

  await send("Profiler.enable");
  await send("Profiler.setSamplingInterval", { interval: 100 });
  // Warm the isolate (compile, first NOSCRIPT fallbacks) before any profile.
  await run([url.href, "read", connections, "1", secret, "profile-warm"]);
  for (const phase of phases) {
    await send("Profiler.start");
    const result = await run([url.href, phase, connections, seconds, secret, `profile-${phase}-${Date.now()}`]);
    const { profile } = await send("Profiler.stop");
    writeFileSync(`${outDir}/${phase}.cpuprofile`, JSON.stringify(profile));
    console.log(`\n== ${phase}: ${result.out}`);
    // Every answer of the run, warm-up included: the profile spans all of it.
    summarise(profile, Number(/\btotal=(\d+)/.exec(result.out)?.[1] ?? 0));
  }
  socket.close();
} finally {
  await mf.dispose();
}

// Shares within one profile, and microseconds per answered request, which
// compare across profiles of different builds (shares do not).
function summarise(profile, answered) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const name = (n) => demangle(n.callFrame.functionName) || `(anonymous ${n.callFrame.url.split("/").pop()}:${n.callFrame.lineNumber})`;
  const self = new Map();
  const inclusive = new Map();
  let busy = 0;
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0;
    const leaf = byId.get(id);
    const leafName = name(leaf);
    if (leafName === "(idle)" || leafName === "(program)") return;
    busy += dt;
    self.set(leafName, (self.get(leafName) ?? 0) + dt);
    const seen = new Set();
    for (let n = leaf; n; n = byId.get(parent.get(n.id))) seen.add(name(n));
    for (const [label, pattern] of SUSPECTS) {
      if ([...seen].some((s) => pattern.test(s))) inclusive.set(label, (inclusive.get(label) ?? 0) + dt);
    }
  });
  const perRequest = (t) => (answered > 0 ? `${(t / answered).toFixed(1).padStart(6)} µs` : "");
  const pct = (t) => `${((100 * t) / busy).toFixed(1).padStart(5)}% ${perRequest(t)}`;
  console.log(`busy (not idle) samples: ${(busy / 1000).toFixed(0)} ms; ${perRequest(busy)} per answered request (${answered})`);
  console.log("top functions by self time:");
  for (const [fn, t] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 25)) console.log(`  ${pct(t)}  ${fn}`);
  console.log("suspects, inclusive (a sample counts when any frame on its stack matches):");
  for (const [label] of SUSPECTS) console.log(`  ${pct(inclusive.get(label) ?? 0)}  ${label}`);
}

// Rust's legacy mangling (_ZN3foo3bar17h<hash>E) as foo::bar; anything else as is.
function demangle(symbol) {
  const raw = symbol.startsWith("$") ? symbol.slice(1) : symbol;
  const match = /^_ZN(.*)E$/.exec(raw);
  if (!match) return raw;
  const parts = [];
  let rest = match[1];
  while (rest.length) {
    const len = /^(\d+)/.exec(rest);
    if (!len) break;
    const start = len[1].length;
    parts.push(rest.slice(start, start + Number(len[1])));
    rest = rest.slice(start + Number(len[1]));
  }
  if (parts.length && /^h[0-9a-f]{16}$/.test(parts.at(-1))) parts.pop();
  return parts
    .join("::")
    .replace(/\$LT\$/g, "<").replace(/\$GT\$/g, ">").replace(/\$u20\$/g, " ")
    .replace(/\$RF\$/g, "&").replace(/\$C\$/g, ",").replace(/\$u7b\$/g, "{").replace(/\$u7d\$/g, "}")
    .replace(/\.\./g, "::");
}
