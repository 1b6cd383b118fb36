//! The one place where failures become HTTP responses.

use worker::{Response, console_error};

use crate::rest::RestError;

/// Everything a request can fail with, as the client is allowed to see it.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A required binding is not configured; names the variable, never its value.
    #[error("the worker is missing the configuration variable {0}")]
    MissingConfig(&'static str),
    /// Redis REST was unreachable, slow or failing.
    #[error("the counter store is unavailable")]
    Backend(#[from] RestError),
}

impl AppError {
    /// The response this error becomes. Details are logged, not sent.
    pub fn into_response(self) -> worker::Result<Response> {
        let (status, code, retry_after) = match &self {
            AppError::MissingConfig(_) => (500, "misconfigured", None),
            AppError::Backend(detail) => {
                console_error!("redis rest call failed: {detail}");
                (503, "backend_unavailable", Some("1"))
            }
        };
        let body = serde_json::json!({"error": {"code": code, "message": self.to_string()}});
        let mut response = Response::from_json(&body)?.with_status(status);
        if let Some(seconds) = retry_after {
            response.headers_mut().set("Retry-After", seconds)?;
        }
        Ok(response)
    }
}
