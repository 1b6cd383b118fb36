//! Every way a request can fail, and the one place that turns each into an HTTP answer.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::backend::BackendError;
use crate::command::{ParseError, Refusal};

/// Why a request got no result.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No token, or a wrong one.
    #[error("Unauthorized: send `Authorization: Bearer <token>` or `?_token=<token>`")]
    Unauthorized,
    /// The request does not carry a well-formed command.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The command may not run over REST (or with this token).
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// Redis answered with an error.
    #[error("{0}")]
    Redis(String),
    /// The body is larger than the limit.
    #[error("ERR the request body is larger than {0} bytes")]
    TooLarge(usize),
    /// The body could not be read.
    #[error("ERR the request body could not be read")]
    Body,
    /// A known route with another method.
    #[error("ERR method not allowed: use {0}")]
    MethodNotAllowed(&'static str),
    /// A script ran past the script timeout and the gateway stopped it.
    #[error(
        "ERR the script ran longer than the gateway's script timeout ({0} s) and was stopped with SCRIPT KILL; it wrote nothing"
    )]
    ScriptTimeout(u64),
    /// Redis is unreachable; the gateway keeps reconnecting.
    #[error(transparent)]
    Unavailable(#[from] BackendError),
}

impl GatewayError {
    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::Unauthorized => StatusCode::UNAUTHORIZED,
            GatewayError::Parse(_)
            | GatewayError::Refused(_)
            | GatewayError::Redis(_)
            | GatewayError::Body => StatusCode::BAD_REQUEST,
            GatewayError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::ScriptTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::json!({ "error": self.to_string() }).to_string();
        let mut response =
            (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
        match self {
            GatewayError::MethodNotAllowed(allow) => {
                response
                    .headers_mut()
                    .insert(header::ALLOW, header::HeaderValue::from_static(allow));
            }
            GatewayError::Unavailable(_) => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}
