//! Who is calling: the full token, the read-only token, or nobody.

use axum::http::{HeaderMap, header};
use percent_encoding::percent_decode_str;
use subtle::ConstantTimeEq;

/// What a request's token allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Every command the gateway runs.
    Full,
    /// Reads only; writes get `NOPERM`.
    ReadOnly,
}

/// The configured tokens.
#[derive(Clone, Debug)]
pub struct Tokens {
    full: Vec<u8>,
    read_only: Option<Vec<u8>>,
}

impl Tokens {
    /// Tokens from configuration; an empty read-only token counts as none.
    pub fn new(full: &str, read_only: Option<&str>) -> Tokens {
        Tokens {
            full: full.as_bytes().to_vec(),
            read_only: read_only
                .filter(|t| !t.is_empty())
                .map(|t| t.as_bytes().to_vec()),
        }
    }

    /// Checks `Authorization: Bearer <token>`, else `?_token=<token>`.
    pub fn check(&self, headers: &HeaderMap, query: Option<&str>) -> Option<Access> {
        let given = bearer(headers).or_else(|| query_token(query))?;
        // Compare with both tokens every time, in constant time, so timing
        // tells nothing about either.
        let full: bool = given.as_slice().ct_eq(&self.full).into();
        let read_only: bool = match &self.read_only {
            Some(token) => given.as_slice().ct_eq(token).into(),
            None => false,
        };
        if full && !self.full.is_empty() {
            Some(Access::Full)
        } else if read_only {
            Some(Access::ReadOnly)
        } else {
            None
        }
    }
}

fn bearer(headers: &HeaderMap) -> Option<Vec<u8>> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let scheme = value.get(..7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| value[7..].trim_ascii().to_vec())
}

fn query_token(query: Option<&str>) -> Option<Vec<u8>> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("_token="))
        .map(|token| percent_decode_str(token).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}")) {
            headers.insert(header::AUTHORIZATION, value);
        }
        headers
    }

    #[test]
    fn a_bearer_or_query_token_is_accepted_and_others_are_not() {
        let tokens = Tokens::new("full", Some("ro"));
        assert_eq!(tokens.check(&with_bearer("full"), None), Some(Access::Full));
        assert_eq!(
            tokens.check(&with_bearer("ro"), None),
            Some(Access::ReadOnly)
        );
        assert_eq!(
            tokens.check(&HeaderMap::new(), Some("a=1&_token=full")),
            Some(Access::Full)
        );
        assert_eq!(tokens.check(&with_bearer("fulll"), None), None);
        assert_eq!(tokens.check(&HeaderMap::new(), None), None);
    }

    #[test]
    fn an_empty_configured_token_lets_nobody_in() {
        let tokens = Tokens::new("", None);
        assert_eq!(tokens.check(&with_bearer(""), None), None);
    }
}
