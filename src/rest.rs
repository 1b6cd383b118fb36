//! A client for the Upstash Redis REST protocol: one HTTP request per command.

use std::time::Duration;

use serde_json::Value;

/// Why a Redis REST call failed.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    /// The request could not be sent or its answer not read.
    #[error("transport: {0}")]
    Transport(String),
    /// No answer arrived within the client's timeout.
    #[error("timed out")]
    Timeout,
    /// The server answered with an unexpected HTTP status.
    #[error("HTTP status {0}")]
    Status(u16),
    /// Redis ran the command and returned an error.
    #[error("redis: {0}")]
    Redis(String),
    /// The answer was not the protocol's JSON.
    #[error("undecodable answer: {0}")]
    Decode(String),
}

/// A connection-less client for one Redis REST endpoint.
#[derive(Clone, Debug)]
pub struct RestClient {
    http: reqwest::Client,
    url: String,
    token: String,
    timeout: Duration,
}

impl RestClient {
    /// A client for the endpoint at `url`, authenticated by `token`.
    pub fn new(url: impl Into<String>, token: impl Into<String>, timeout: Duration) -> Self {
        Self {
            http: reqwest::Client::new(),
            url: url.into().trim_end_matches('/').to_owned(),
            token: token.into(),
            timeout,
        }
    }

    /// Sends one command, such as `["PING"]`, and returns its result.
    pub async fn command(&self, args: &[&str]) -> Result<Value, RestError> {
        let response = self
            .http
            .post(&self.url)
            .bearer_auth(&self.token)
            .timeout(self.timeout)
            .json(args)
            .send()
            .await
            .map_err(classify)?;
        let status = response.status().as_u16();
        let body: Value = response.json().await.map_err(classify)?;
        if let Some(error) = body.get("error") {
            let message = error.as_str().unwrap_or("unknown error").to_owned();
            return Err(if status == 400 {
                RestError::Redis(message)
            } else {
                RestError::Status(status)
            });
        }
        if status != 200 {
            return Err(RestError::Status(status));
        }
        body.get("result")
            .cloned()
            .ok_or_else(|| RestError::Decode("no result field".into()))
    }
}

fn classify(error: reqwest::Error) -> RestError {
    if error.is_timeout() {
        RestError::Timeout
    } else if error.is_decode() {
        RestError::Decode(error.to_string())
    } else {
        RestError::Transport(error.to_string())
    }
}
