//! The route table: which handler a path belongs to, its metrics label, and
//! the methods it allows (for `405` and `Allow`).
//!
//! Matching happens on the raw, still percent-encoded path, so an item id such
//! as `blog%2F2026%2Fhello` stays one segment until its handler decodes it.

use worker::Method;

/// A recognised path, borrowing its raw segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// `/`: the demo page.
    Demo,
    /// `/tally.js`: the browser embed.
    Embed,
    /// `/openapi.json`.
    OpenApi,
    /// `/metrics`.
    Metrics,
    /// `/healthz`.
    Healthz,
    /// `/v1/visitors`.
    Visitors,
    /// `/v1/items?ids=...`.
    Items,
    /// `/v1/items/{item}` (`GET` reads, `PUT` registers).
    Item(&'a str),
    /// `/v1/items/{item}/like`.
    Like(&'a str),
    /// `/v1/items/{item}/views`.
    Views(&'a str),
    /// `/v1/items/{item}/views/series`.
    Series(&'a str),
    /// `/v1/items/{item}/counters/{name}`.
    Counter(&'a str, &'a str),
    /// `/v1/items/{item}/badge.svg`.
    Badge(&'a str),
    /// `/v1/trending`.
    Trending,
    /// `/v1/admin/import`.
    Import,
    /// `/v1/admin/items/{item}/merge`.
    Merge(&'a str),
    /// `/v1/admin/reconcile`: one reconciliation pass, now.
    Reconcile,
}

impl<'a> Route<'a> {
    /// The route `path` belongs to, if any.
    pub fn recognise(path: &'a str) -> Option<Route<'a>> {
        let rest = path.strip_prefix('/')?;
        let segments: Vec<&str> = rest.split('/').collect();
        Some(match segments.as_slice() {
            [""] => Route::Demo,
            ["tally.js"] => Route::Embed,
            ["openapi.json"] => Route::OpenApi,
            ["metrics"] => Route::Metrics,
            ["healthz"] => Route::Healthz,
            ["v1", "visitors"] => Route::Visitors,
            ["v1", "items"] => Route::Items,
            ["v1", "items", item] => Route::Item(item),
            ["v1", "items", item, "like"] => Route::Like(item),
            ["v1", "items", item, "views"] => Route::Views(item),
            ["v1", "items", item, "views", "series"] => Route::Series(item),
            ["v1", "items", item, "counters", name] => Route::Counter(item, name),
            ["v1", "items", item, "badge.svg"] => Route::Badge(item),
            ["v1", "trending"] => Route::Trending,
            ["v1", "admin", "import"] => Route::Import,
            ["v1", "admin", "items", item, "merge"] => Route::Merge(item),
            ["v1", "admin", "reconcile"] => Route::Reconcile,
            _ => return None,
        })
    }

    /// The route's pattern, used as a metrics label so ids never become labels.
    pub fn label(&self) -> &'static str {
        match self {
            Route::Demo => "/",
            Route::Embed => "/tally.js",
            Route::OpenApi => "/openapi.json",
            Route::Metrics => "/metrics",
            Route::Healthz => "/healthz",
            Route::Visitors => "/v1/visitors",
            Route::Items => "/v1/items",
            Route::Item(_) => "/v1/items/{item}",
            Route::Like(_) => "/v1/items/{item}/like",
            Route::Views(_) => "/v1/items/{item}/views",
            Route::Series(_) => "/v1/items/{item}/views/series",
            Route::Counter(..) => "/v1/items/{item}/counters/{name}",
            Route::Badge(_) => "/v1/items/{item}/badge.svg",
            Route::Trending => "/v1/trending",
            Route::Import => "/v1/admin/import",
            Route::Merge(_) => "/v1/admin/items/{item}/merge",
            Route::Reconcile => "/v1/admin/reconcile",
        }
    }

    /// The methods the route answers, besides `OPTIONS` (and `HEAD` with `GET`).
    pub fn methods(&self) -> &'static [Method] {
        match self {
            Route::Like(_) => &[Method::Put, Method::Delete],
            Route::Item(_) => &[Method::Get, Method::Put],
            Route::Visitors | Route::Views(_) | Route::Counter(..) | Route::Reconcile => {
                &[Method::Post]
            }
            Route::Import | Route::Merge(_) => &[Method::Post],
            _ => &[Method::Get],
        }
    }

    /// The largest body the route reads: imports are NDJSON files.
    pub fn max_body_bytes(&self) -> usize {
        match self {
            Route::Import => crate::transfer::MAX_IMPORT_BYTES,
            _ => super::http::MAX_BODY_BYTES,
        }
    }

    /// The `Allow` header value for a `405`.
    pub fn allow(&self) -> String {
        let mut allowed = Vec::new();
        for method in self.methods() {
            allowed.push(method.as_ref());
            if *method == Method::Get {
                allowed.push("HEAD");
            }
        }
        allowed.push("OPTIONS");
        allowed.join(", ")
    }
}
