// The worker's JavaScript entry: a plain module export whose `fetch` calls the
// wasm's `fetch` (src/edge/entry.rs) directly. scripts/build.sh bundles it in
// place of worker-build's shim, which made each request construct an entrypoint
// class through a Proxy and wrapped `fetch` in a new async Proxy per call; what
// that shim did for panics stays: a trap (a Rust panic) marks the module
// critical, and the next request reinitialises it first.
import * as exports from "./index.js";

Error.stackTraceLimit = 100;
const initState = exports.__worker_init_state();

function checkReinitialize() {
  if (initState.criticalError) {
    console.log("Reinitializing Wasm application");
    exports.__wbg_reset_state();
    initState.criticalError = false;
    initState.instanceId++;
  }
}

function handleMaybeCritical(error) {
  if (error instanceof WebAssembly.RuntimeError) {
    console.error("Critical", error);
    initState.criticalError = true;
  }
}

// A trap while a request waits on I/O happens in a promise callback: uncaught.
addEventListener("error", (event) => handleMaybeCritical(event.error));

const handlers = {
  fetch(request, env, ctx) {
    checkReinitialize();
    try {
      return exports.fetch(request, env, ctx);
    } catch (error) {
      handleMaybeCritical(error);
      throw error;
    }
  },
};

// The other handlers the wasm exports (`#[event(scheduled)]`...), as worker-build's shim wrapped them.
for (const name of ["scheduled", "queue", "email"]) {
  const handler = exports[name];
  if (typeof handler !== "function") continue;
  handlers[name] = async (event, env, ctx) => {
    checkReinitialize();
    try {
      return await handler(event, env, ctx);
    } catch (error) {
      handleMaybeCritical(error);
      throw error;
    }
  };
}

export default handlers;
