// What scripts/serve-bundle.mjs (make bench-api) and bench/profile.mjs (make
// bench-profile) share: the bindings of a .dev.vars file, and the Miniflare
// options that serve a built bundle as wrangler would.
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";

// A .dev.vars file (NAME=value lines; `#` comments), as plain string bindings,
// as wrangler dev binds it.
export function readVars(file) {
  const bindings = {};
  for (const line of readFileSync(file, "utf8").split("\n")) {
    const at = line.indexOf("=");
    if (at > 0 && !line.startsWith("#")) bindings[line.slice(0, at).trim()] = line.slice(at + 1);
  }
  return bindings;
}

// Miniflare options serving BUNDLE, an ES module: the Rust worker's
// build/index.js (which imports its .wasm) or a bundled JavaScript worker.
// The caller adds where to listen (host, port, and an inspector if wanted).
export function bundleOptions(bundle, compatibilityDate, bindings) {
  return {
    scriptPath: bundle,
    modules: true,
    // Module names are paths under this root; workerd refuses ones with "..".
    modulesRoot: dirname(resolve(bundle)),
    // worker-build emits an ES module that imports its .wasm as a compiled module.
    modulesRules: [
      { type: "ESModule", include: ["**/*.js", "**/*.mjs"] },
      { type: "CompiledWasm", include: ["**/*.wasm"] },
    ],
    compatibilityDate,
    bindings,
  };
}
