// Serves a built worker bundle through Miniflare's API, with no inspector
// (wrangler dev's inspector proxy records every outbound request and slows
// routes that call Redis several times over). For scripts/bench-api.sh.
//
//   node scripts/serve-bundle.mjs BUNDLE PORT COMPATIBILITY_DATE VARS_FILE [--cold PATH]
//
// BUNDLE is an ES module: the Rust worker's build/index.js (which imports its
// .wasm) or a bundled JavaScript worker. PORT 0 picks a free port; either way
// the first line printed is "serving BUNDLE at http://127.0.0.1:PORT/".
//
// VARS_FILE is a .dev.vars file (NAME=value lines), bound as plain strings,
// as wrangler dev binds it. Runs until SIGINT or SIGTERM.
//
// With --cold PATH it measures a cold start instead of serving: the time from
// here to workerd listening (ready_ms), then to the first answer to GET PATH
// (first_ms: a fresh isolate's first request), then a second GET PATH
// (second_ms, warm, for comparison); prints one "cold ..." line and exits.
import { performance } from "node:perf_hooks";
import { Miniflare } from "miniflare";
import { bundleOptions, readVars } from "./miniflare-bundle.mjs";

const [bundle, port, compatibilityDate, varsFile, flag, coldPath] = process.argv.slice(2);
if (!varsFile || (flag !== undefined && (flag !== "--cold" || !coldPath))) {
  console.error("usage: serve-bundle.mjs BUNDLE PORT COMPATIBILITY_DATE VARS_FILE [--cold PATH]");
  process.exit(2);
}

const bindings = readVars(varsFile);

const started = performance.now();
const mf = new Miniflare({
  ...bundleOptions(bundle, compatibilityDate, bindings),
  host: "127.0.0.1",
  port: Number(port),
});
// The URL actually served: with PORT 0, a free port workerd picked.
const url = await mf.ready;
const ready = performance.now();
if (Number(port) !== 0 && url.port !== String(port)) {
  console.error(`asked for port ${port}, got ${url}`);
  await mf.dispose();
  process.exit(1);
}

if (coldPath) {
  const timed = async () => {
    const before = performance.now();
    const response = await fetch(new URL(coldPath, url), { signal: AbortSignal.timeout(30_000) });
    await response.arrayBuffer();
    return [performance.now() - before, response.status];
  };
  let code = 0;
  try {
    const [first, status] = await timed();
    const [second, secondStatus] = await timed();
    console.log(
      `cold ready_ms=${(ready - started).toFixed(1)} first_ms=${first.toFixed(1)} ` +
        `second_ms=${second.toFixed(1)} status=${status},${secondStatus}`,
    );
    code = status === 200 && secondStatus === 200 ? 0 : 1;
  } catch (error) {
    console.error(`cold start request failed: ${error}`);
    code = 1;
  }
  await mf.dispose();
  process.exit(code);
}

console.log(`serving ${bundle} at ${url}`);

const stop = async () => {
  await mf.dispose();
  process.exit(0);
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
