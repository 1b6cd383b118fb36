//! Tally: exact, real-time like and view counters served from a Cloudflare Worker.
//!
//! The crate is split along one boundary you can see in the tree:
//!
//! - pure modules, which know nothing of `worker` and build and test natively:
//!   - [`base64url`]: unpadded base64url for tokens and visitor ids, strict as RFC 4648 asks;
//!   - [`decimal`]: decimal text to `f64`, as `str::parse` reads it, without core's parser in the wasm;
//!   - [`item`]: item ids and custom counter names, validated;
//!   - [`keys`]: every Redis key name, under one prefix;
//!   - [`scripts`]: the Lua scripts and their SHA1s;
//!   - [`rest`]: the Upstash REST protocol client, over a [`rest::Transport`]
//!     (`reqwest` natively, the runtime's `fetch` in the worker);
//!   - [`engine`]: the counting engine — likes, views, counters, reads — over [`rest`];
//!   - [`outbox`]: the events every counting write appends to Redis Streams, for the system of record;
//!   - [`reconcile`]: the engine's side of the reconciliation pass — outbox reads and trims,
//!     the lease, drift audits and repairs;
//!   - [`transfer`]: import (NDJSON starting counts) and merge (an old item id folded into a new one);
//!   - [`record`]: the system of record (D1): an outbox batch as set-based SQL, record rows as items;
//!   - [`token`]: HS256 identity tokens, verified and minted;
//!   - [`viewer`]: anonymous viewer ids (a keyed daily hash) and bot detection;
//!   - [`badge`]: README badges — count formatting, text widths, the SVG;
//!   - [`metrics`]: the worker's metrics, counted per isolate, summed in Redis, rendered as OpenMetrics;
//! - [`edge`] (wasm32 only): the HTTP edge — entry point, router, handlers, config,
//!   the `fetch` transport. The static files are Workers Static Assets (`assets/`).
//!   Built without the default `record` feature (`build/edge/`), it holds no
//!   system of record and hands the record routes to a Worker that does (`RECORD`).

// No unwrap()/expect() in serving code; tests may panic on setup failures.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod badge;
pub mod base64url;
pub mod decimal;
pub mod engine;
pub mod item;
pub mod keys;
pub mod metrics;
pub mod outbox;
pub mod reconcile;
pub mod record;
pub mod rest;
pub mod scripts;
pub mod token;
pub mod transfer;
pub mod viewer;

#[cfg(target_arch = "wasm32")]
mod edge;

/// FNV-1a (32 bit) of `bytes`: the outbox's shard of an item
/// ([`outbox::shard`], which must never change), and the worker's cheap
/// first look-up of a kept token ([`token::verify_cached`]).
pub(crate) fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |hash: u32, &byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}
