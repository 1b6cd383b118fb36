// The worker's JavaScript entry: a plain module export whose `fetch` and
// `scheduled` call the wasm's (src/edge/entry.rs) directly. scripts/build.sh
// bundles it in place of worker-build's shim, which made each request
// construct an entrypoint class through a Proxy and wrapped `fetch` in a new
// async Proxy per call; what that shim did for panics stays: a trap (a Rust
// panic) marks the module critical, and the next call reinitialises it first.
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

export default {
  fetch(request, env, ctx) {
    checkReinitialize();
    try {
      return exports.fetch(request, env, ctx);
    } catch (error) {
      handleMaybeCritical(error);
      throw error;
    }
  },

  async scheduled(event, env, ctx) {
    checkReinitialize();
    try {
      return await exports.scheduled(event, env, ctx);
    } catch (error) {
      handleMaybeCritical(error);
      throw error;
    }
  },
};
