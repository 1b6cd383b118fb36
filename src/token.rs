//! Identity tokens: HS256 JSON Web Tokens, verified and minted without `worker`.
//!
//! Only `alg: HS256` is accepted (never `none`, never another algorithm, so a
//! token cannot choose how it is checked), the signature is compared in
//! constant time before the claims are read, and `exp` is required.

use std::cell::RefCell;

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::base64url;

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// The longest `sub` accepted: identities end up as Redis set members.
pub const MAX_SUBJECT_BYTES: usize = 256;

/// The claims Tally reads from a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The identity: a site's user id, or `anon:<id>` for a visitor token.
    pub sub: String,
    /// Expiry, in unix seconds.
    pub exp: i64,
    /// False when the token carries `"tally": {"count_views": false}`: the
    /// site's own people, whose views are answered but never counted.
    pub count_views: bool,
}

/// Why a token was refused. The edge answers every one with `401`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url parts of JSON.
    #[error("the token is malformed")]
    Malformed,
    /// The header names an algorithm other than HS256 (including `none`).
    #[error("the token must be signed with HS256")]
    Algorithm,
    /// The signature does not match the secret.
    #[error("the token signature is invalid")]
    Signature,
    /// The claims lack `exp` or a usable `sub`.
    #[error("the token needs a string `sub` (1-256 bytes) and a numeric `exp`")]
    Claims,
    /// `exp` is not in the future.
    #[error("the token has expired")]
    Expired,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

#[derive(Deserialize)]
struct RawClaims {
    sub: Option<String>,
    exp: Option<serde_json::Number>,
    /// Tally's own claims; anything else in it (or a `tally` that is not an
    /// object) is ignored rather than refused.
    tally: Option<serde_json::Value>,
}

/// Checks `token` against `secret` at unix time `now` and returns its claims.
pub fn verify(token: &str, secret: &[u8], now: i64) -> Result<Claims, TokenError> {
    let mut parts = token.split('.');
    let (Some(header_part), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let header: Header = decode_json(header_part)?;
    if header.alg != "HS256" {
        return Err(TokenError::Algorithm);
    }
    let signature = base64url::decode(signature).ok_or(TokenError::Malformed)?;
    let mut mac = keyed(secret);
    let signed_len = header_part.len() + 1 + payload.len();
    mac.update(&token.as_bytes()[..signed_len]);
    mac.verify_slice(&signature)
        .map_err(|_| TokenError::Signature)?;

    let raw: RawClaims = decode_json(payload)?;
    let sub = raw
        .sub
        .filter(|s| !s.is_empty() && s.len() <= MAX_SUBJECT_BYTES)
        .ok_or(TokenError::Claims)?;
    let exp = raw
        .exp
        .and_then(|n| n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)))
        .ok_or(TokenError::Claims)?;
    if exp <= now {
        return Err(TokenError::Expired);
    }
    let count_views = raw
        .tally
        .as_ref()
        .and_then(|tally| tally.get("count_views"))
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(true);
    Ok(Claims {
        sub,
        exp,
        count_views,
    })
}

/// How many verified tokens an isolate keeps ([`verify_cached`]).
pub const VERIFIED_TOKENS: usize = 256;

/// Tokens verified lately under one secret: at most [`VERIFIED_TOKENS`], the
/// oldest replaced first, each found by a hash of the whole token and then
/// compared whole.
#[derive(Default)]
struct Verified {
    secret: Vec<u8>,
    entries: Vec<(u32, String, Claims)>,
    /// The entry the next new token replaces, once full.
    next: usize,
}

impl Verified {
    fn find(&self, hash: u32, token: &str) -> Option<&Claims> {
        self.entries
            .iter()
            .find(|(h, t, _)| *h == hash && t == token)
            .map(|(_, _, claims)| claims)
    }

    fn keep(&mut self, hash: u32, token: &str, claims: &Claims) {
        let entry = (hash, token.to_owned(), claims.clone());
        if self.entries.len() < VERIFIED_TOKENS {
            self.entries.push(entry);
        } else {
            self.entries[self.next] = entry;
            self.next = (self.next + 1) % VERIFIED_TOKENS;
        }
    }
}

/// [`verify`], remembering the tokens that verified (per thread: one, in an
/// isolate), so that a caller's next requests with the same token skip the
/// HMAC, the base64 and the JSON. Only a token that verified under this very
/// secret is kept, and a kept token is still refused once it has expired.
pub fn verify_cached(token: &str, secret: &[u8], now: i64) -> Result<Claims, TokenError> {
    thread_local! {
        static VERIFIED: RefCell<Verified> = RefCell::default();
    }
    let hash = crate::fnv1a(token.as_bytes());
    let kept = VERIFIED.with_borrow_mut(|verified| {
        if verified.secret != secret {
            *verified = Verified {
                secret: secret.to_vec(),
                ..Verified::default()
            };
        }
        verified.find(hash, token).cloned()
    });
    if let Some(claims) = kept.filter(|claims| claims.exp > now) {
        return Ok(claims);
    }
    // New, or expired (verified again, to be refused for the right reason).
    let claims = verify(token, secret, now)?;
    VERIFIED.with_borrow_mut(|verified| verified.keep(hash, token, &claims));
    Ok(claims)
}

/// Mints an HS256 token carrying `claims`.
pub fn sign(claims: &Claims, secret: &[u8]) -> String {
    const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;
    let mut payload = serde_json::json!({"sub": claims.sub, "exp": claims.exp});
    if !claims.count_views {
        payload["tally"] = serde_json::json!({"count_views": false});
    }
    let payload = serde_json::to_string(&payload).unwrap_or_default();
    let signing_input = format!(
        "{}.{}",
        base64url::encode(HEADER),
        base64url::encode(payload)
    );
    let mut mac = keyed(secret);
    mac.update(signing_input.as_bytes());
    let signature = base64url::encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

/// HMAC-SHA256 keyed with `secret` (also keys the viewer hashes in [`crate::viewer`]).
///
/// Keying hashes two blocks; a worker keys with the same secret on every
/// request, so the keyed state is kept (per thread: one, in an isolate) and
/// copied for the next call with that secret.
pub(crate) fn keyed(secret: &[u8]) -> HmacSha256 {
    thread_local! {
        static LAST: RefCell<Option<(Vec<u8>, HmacSha256)>> = const { RefCell::new(None) };
    }
    LAST.with(|last| {
        if let Some((key, mac)) = &*last.borrow()
            && key.as_slice() == secret
        {
            return mac.clone();
        }
        let mac = keyed_afresh(secret);
        *last.borrow_mut() = Some((secret.to_vec(), mac.clone()));
        mac
    })
}

/// HMAC-SHA256 keyed with `key`, computed every time (for keys that change, such as salts).
pub(crate) fn keyed_afresh(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length, so this cannot fail.
    <HmacSha256 as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!())
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, TokenError> {
    let bytes = base64url::decode(part).ok_or(TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"a test secret";
    const NOW: i64 = 1_800_000_000;

    fn token_with(header: &str, payload: &str, secret: &[u8]) -> String {
        let input = format!(
            "{}.{}",
            base64url::encode(header),
            base64url::encode(payload)
        );
        let mut mac = keyed(secret);
        mac.update(input.as_bytes());
        format!("{input}.{}", base64url::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn accepts_a_token_it_signed() {
        let claims = Claims {
            sub: "user-1".into(),
            exp: NOW + 60,
            count_views: true,
        };
        let token = sign(&claims, SECRET);
        assert_eq!(verify(&token, SECRET, NOW), Ok(claims));
    }

    #[test]
    fn reads_the_count_views_claim_and_defaults_to_counting() {
        let owner = Claims {
            sub: "owner".into(),
            exp: NOW + 60,
            count_views: false,
        };
        let token = sign(&owner, SECRET);
        assert_eq!(verify(&token, SECRET, NOW), Ok(owner));
        for tally in [
            r#"{"count_views":true}"#,
            r#""yes""#,
            r#"{"count_views":"no"}"#,
            "{}",
        ] {
            let payload = format!(r#"{{"sub":"u","exp":{},"tally":{tally}}}"#, NOW + 60);
            let token = token_with(r#"{"alg":"HS256","typ":"JWT"}"#, &payload, SECRET);
            assert!(
                verify(&token, SECRET, NOW).expect("valid").count_views,
                "{tally}"
            );
        }
    }

    #[test]
    fn refuses_a_token_signed_with_another_secret() {
        let token = sign(
            &Claims {
                sub: "u".into(),
                exp: NOW + 60,
                count_views: true,
            },
            b"another secret",
        );
        assert_eq!(verify(&token, SECRET, NOW), Err(TokenError::Signature));
    }

    #[test]
    fn a_kept_key_never_verifies_a_token_of_another_secret() {
        let claims = Claims {
            sub: "u".into(),
            exp: NOW + 60,
            count_views: true,
        };
        let ours = sign(&claims, SECRET);
        let theirs = sign(&claims, b"another secret");
        for _ in 0..2 {
            assert_eq!(verify(&ours, SECRET, NOW).as_ref(), Ok(&claims));
            assert_eq!(verify(&theirs, SECRET, NOW), Err(TokenError::Signature));
            assert_eq!(
                verify(&ours, b"another secret", NOW),
                Err(TokenError::Signature)
            );
            assert_eq!(
                verify(&theirs, b"another secret", NOW).as_ref(),
                Ok(&claims)
            );
        }
    }

    #[test]
    fn refuses_a_token_whose_payload_was_changed() {
        let token = sign(
            &Claims {
                sub: "u".into(),
                exp: NOW + 60,
                count_views: true,
            },
            SECRET,
        );
        let parts: Vec<&str> = token.split('.').collect();
        let forged_payload = base64url::encode(r#"{"sub":"admin","exp":9999999999}"#);
        let forged = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
        assert_eq!(verify(&forged, SECRET, NOW), Err(TokenError::Signature));
    }

    #[test]
    fn refuses_an_expired_token() {
        let token = sign(
            &Claims {
                sub: "u".into(),
                exp: NOW,
                count_views: true,
            },
            SECRET,
        );
        assert_eq!(verify(&token, SECRET, NOW), Err(TokenError::Expired));
    }

    #[test]
    fn refuses_a_token_without_exp() {
        let token = token_with(r#"{"alg":"HS256"}"#, r#"{"sub":"u"}"#, SECRET);
        assert_eq!(verify(&token, SECRET, NOW), Err(TokenError::Claims));
    }

    #[test]
    fn refuses_a_token_without_sub() {
        let token = token_with(r#"{"alg":"HS256"}"#, r#"{"exp":1900000000}"#, SECRET);
        assert_eq!(verify(&token, SECRET, NOW), Err(TokenError::Claims));
    }

    #[test]
    fn refuses_alg_none_even_without_a_signature() {
        let header = base64url::encode(r#"{"alg":"none","typ":"JWT"}"#);
        let payload = base64url::encode(r#"{"sub":"u","exp":1900000000}"#);
        let token = format!("{header}.{payload}.");
        assert_eq!(verify(&token, SECRET, NOW), Err(TokenError::Algorithm));
    }

    #[test]
    fn refuses_hs512_even_when_correctly_keyed() {
        let token = token_with(
            r#"{"alg":"HS512"}"#,
            r#"{"sub":"u","exp":1900000000}"#,
            SECRET,
        );
        assert_eq!(verify(&token, SECRET, NOW), Err(TokenError::Algorithm));
    }

    #[test]
    fn refuses_malformed_tokens() {
        for token in ["", "abc", "a.b", "a.b.c.d", "!!.??.**", "e30.e30"] {
            assert_eq!(
                verify(token, SECRET, NOW),
                Err(TokenError::Malformed),
                "{token:?}"
            );
        }
    }

    #[test]
    fn a_kept_token_answers_its_claims_and_is_refused_once_expired() {
        let claims = Claims {
            sub: "kept-user".into(),
            exp: NOW + 10,
            count_views: false,
        };
        let token = sign(&claims, SECRET);
        assert_eq!(verify_cached(&token, SECRET, NOW), Ok(claims.clone()));
        // Kept now: the same answer, and still the expiry is checked.
        assert_eq!(verify_cached(&token, SECRET, NOW + 9), Ok(claims));
        assert_eq!(
            verify_cached(&token, SECRET, NOW + 10),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn a_kept_token_does_not_verify_under_another_secret() {
        let token = sign(
            &Claims {
                sub: "secret-bound".into(),
                exp: NOW + 60,
                count_views: true,
            },
            SECRET,
        );
        assert!(verify_cached(&token, SECRET, NOW).is_ok());
        assert_eq!(
            verify_cached(&token, b"another secret", NOW),
            Err(TokenError::Signature)
        );
        // Nor does a token that failed get kept as if it had passed.
        assert_eq!(
            verify_cached(&token, b"another secret", NOW),
            Err(TokenError::Signature)
        );
    }

    #[test]
    fn a_tampered_token_is_refused_every_time() {
        let token = sign(
            &Claims {
                sub: "tampered".into(),
                exp: NOW + 60,
                count_views: true,
            },
            SECRET,
        );
        // The genuine token is kept; one with another signature is not it.
        assert!(verify_cached(&token, SECRET, NOW).is_ok());
        let mut tampered = token.clone();
        tampered.pop();
        tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
        for _ in 0..2 {
            assert_eq!(
                verify_cached(&tampered, SECRET, NOW),
                Err(TokenError::Signature)
            );
        }
    }

    #[test]
    fn the_kept_tokens_are_bounded_and_the_oldest_go_first() {
        let mut verified = Verified::default();
        let claims = |n: usize| Claims {
            sub: format!("user-{n}"),
            exp: NOW + 60,
            count_views: true,
        };
        for n in 0..=VERIFIED_TOKENS {
            let token = format!("token-{n}");
            verified.keep(crate::fnv1a(token.as_bytes()), &token, &claims(n));
        }
        assert_eq!(verified.entries.len(), VERIFIED_TOKENS);
        assert!(verified.find(crate::fnv1a(b"token-0"), "token-0").is_none());
        let last = format!("token-{VERIFIED_TOKENS}");
        assert_eq!(
            verified.find(crate::fnv1a(last.as_bytes()), &last),
            Some(&claims(VERIFIED_TOKENS))
        );
        // A hash that matches but a token that differs is not a match.
        assert!(verified.find(crate::fnv1a(b"token-1"), "token-x").is_none());
    }
}
