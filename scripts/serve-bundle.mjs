// Serves the built worker bundle through Miniflare's API, with no inspector
// (wrangler dev's inspector proxy records every outbound request and slows
// routes that call Redis several times over). For scripts/bench-api.sh.
//
//   node scripts/serve-bundle.mjs BUNDLE PORT COMPATIBILITY_DATE VARS_FILE
//
// PORT 0 picks a free port; either way the first line printed is
// "serving BUNDLE at http://127.0.0.1:PORT/".
//
// VARS_FILE is a .dev.vars file (NAME=value lines), bound as plain strings,
// as wrangler dev binds it. Runs until SIGINT or SIGTERM.
import { readFileSync } from "node:fs";
import { Miniflare } from "miniflare";

const [bundle, port, compatibilityDate, varsFile] = process.argv.slice(2);
if (!varsFile) {
  console.error("usage: serve-bundle.mjs BUNDLE PORT COMPATIBILITY_DATE VARS_FILE");
  process.exit(2);
}

const bindings = {};
for (const line of readFileSync(varsFile, "utf8").split("\n")) {
  const at = line.indexOf("=");
  if (at > 0 && !line.startsWith("#")) bindings[line.slice(0, at).trim()] = line.slice(at + 1);
}

const mf = new Miniflare({
  scriptPath: bundle,
  modules: true,
  // worker-build emits an ES module that imports its .wasm as a compiled module.
  modulesRules: [
    { type: "ESModule", include: ["**/*.js"] },
    { type: "CompiledWasm", include: ["**/*.wasm"] },
  ],
  compatibilityDate,
  bindings,
  host: "127.0.0.1",
  port: Number(port),
});
// The URL actually served: with PORT 0, a free port workerd picked.
const url = await mf.ready;
if (Number(port) !== 0 && url.port !== String(port)) {
  console.error(`asked for port ${port}, got ${url}`);
  await mf.dispose();
  process.exit(1);
}
console.log(`serving ${bundle} at ${url}`);

const stop = async () => {
  await mf.dispose();
  process.exit(0);
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
