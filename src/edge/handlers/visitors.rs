//! `POST /v1/visitors`: an anonymous identity for browsers without an account.

use worker::js_sys::{Function, Reflect, Uint8Array};
use worker::wasm_bindgen::{JsCast, JsValue};

use super::admitted;
use crate::edge::config::Config;
use crate::edge::error::AppError;
use crate::edge::http::{self, Incoming, Reply};
use crate::token::{self, Claims};
use crate::{base64url, viewer};

/// How long a visitor token lives: a year, so a visitor keeps their likes.
const VISITOR_TOKEN_SECONDS: i64 = 365 * 86_400;

/// Mints a visitor token, rate limited per client IP.
pub async fn issue(req: &Incoming, config: &Config) -> Result<Reply, AppError> {
    let now = http::now();
    let ip = http::client_ip(req);
    let limiter = viewer::anonymous_client(config.jwt_secret.as_bytes(), now, ip);
    let limited = config.engine().admit(&limiter, now).await?;
    let ((), rate) = admitted(limited)?;
    let visitor = format!("anon:{}", base64url::encode(random_bytes()?));
    let expires_at = now + VISITOR_TOKEN_SECONDS;
    let claims = Claims {
        sub: visitor.clone(),
        exp: expires_at,
        count_views: true,
    };
    let token = token::sign(&claims, config.jwt_secret.as_bytes());
    let body = serde_json::json!({"token": token, "visitor": visitor, "expires_at": expires_at});
    let mut reply = Reply::json(201, &body)?;
    reply.rate_headers(&rate);
    Ok(reply)
}

/// 16 bytes from the runtime's CSPRNG (`crypto.getRandomValues`).
fn random_bytes() -> Result<[u8; 16], AppError> {
    let failed = |_: JsValue| AppError::Internal("crypto.getRandomValues is unavailable".into());
    let crypto = Reflect::get(&worker::js_sys::global(), &"crypto".into()).map_err(failed)?;
    let fill: Function = Reflect::get(&crypto, &"getRandomValues".into())
        .map_err(failed)?
        .dyn_into()
        .map_err(failed)?;
    let array = Uint8Array::new_with_length(16);
    fill.call1(&crypto, &array).map_err(failed)?;
    let mut bytes = [0u8; 16];
    array.copy_to(&mut bytes);
    Ok(bytes)
}
