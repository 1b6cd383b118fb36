//! Tally: exact, real-time like and view counters served from a Cloudflare Worker.
//!
//! The crate is split along one boundary you can see in the tree:
//!
//! - pure modules, which know nothing of `worker` and build and test natively:
//!   - [`rest`]: the Upstash REST protocol client (`reqwest`, the same code in wasm);
//! - [`edge`] (wasm32 only): the HTTP edge — entry point, router, handlers, config.

pub mod rest;

#[cfg(target_arch = "wasm32")]
mod edge;
