//! A site back end talking to Tally (Rust: `jsonwebtoken`, `reqwest`, `tokio`):
//! mints an identity token for a user, likes an item as that user, and adds to
//! a custom counter with the API key.
//!
//! ```sh
//! TALLY_URL=http://127.0.0.1:8787 TALLY_JWT_SECRET=... TALLY_API_KEY=... \
//!   cargo run --example backend
//! ```
//!
//! `TALLY_USER` (default `user-42`) and `TALLY_ITEM` (default `blog/2026/hello`)
//! pick who likes what. Exits non-zero, saying why, on any unexpected answer.

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    match native::run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tally example failed: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

// Examples are built for wasm32 too by `cargo clippy --target wasm32-unknown-unknown
// --all-targets`; there is nothing to run there.
#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::time::{SystemTime, UNIX_EPOCH};

    use jsonwebtoken::{EncodingKey, Header, encode};
    use reqwest::{Client, Method, Url};
    use serde::Serialize;
    use serde_json::{Value, json};

    type Error = Box<dyn std::error::Error>;

    const COUNTER: &str = "downloads";

    /// The claims Tally reads: the user id and an expiry in unix seconds.
    #[derive(Serialize)]
    struct Claims<'a> {
        sub: &'a str,
        exp: u64,
    }

    /// An HS256 token for `sub`, signed with `TALLY_JWT_SECRET`: mint it on your
    /// server for a signed-in user and hand it to the page, never the secret.
    fn mint_token(sub: &str, secret: &str, ttl_seconds: u64) -> Result<String, Error> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let claims = Claims {
            sub,
            exp: now + ttl_seconds,
        };
        // `Header::default()` is `{"alg": "HS256", "typ": "JWT"}`.
        Ok(encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes())?,
        )?)
    }

    fn setting(name: &str, default: Option<&str>) -> Result<String, Error> {
        match std::env::var(name).ok().or(default.map(str::to_owned)) {
            Some(value) if !value.is_empty() => Ok(value),
            _ => Err(format!("set {name} (see the top of examples/rust/backend.rs)").into()),
        }
    }

    /// Talks to one worker: builds item URLs and checks every answer is a 200.
    struct Tally {
        http: Client,
        base: Url,
    }

    impl Tally {
        /// `/v1/items/{item}/{rest...}`; the item is one path segment, so
        /// `blog/2026/hello` travels as `blog%2F2026%2Fhello`.
        fn item_url(&self, item: &str, rest: &[&str]) -> Result<Url, Error> {
            let mut url = self.base.clone();
            url.path_segments_mut()
                .map_err(|()| "TALLY_URL cannot be a base URL")?
                .pop_if_empty()
                .extend(["v1", "items", item])
                .extend(rest);
            Ok(url)
        }

        async fn call(
            &self,
            method: Method,
            url: Url,
            bearer: &str,
            body: Option<Value>,
        ) -> Result<Value, Error> {
            let what = format!("{method} {}", url.path());
            let mut request = self.http.request(method, url).bearer_auth(bearer);
            if let Some(body) = body {
                request = request.json(&body);
            }
            let response = request.send().await?;
            let status = response.status();
            let answer: Value = response.json().await?;
            if status != 200 {
                return Err(format!("{what} answered {status}: {answer}").into());
            }
            Ok(answer)
        }
    }

    fn check(condition: bool, what: String) -> Result<(), Error> {
        if condition {
            Ok(())
        } else {
            Err(format!("unexpected answer: {what}").into())
        }
    }

    pub fn run() -> Result<(), Error> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(talk())
    }

    async fn talk() -> Result<(), Error> {
        let tally = Tally {
            http: Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()?,
            base: Url::parse(&setting("TALLY_URL", None)?)?,
        };
        let secret = setting("TALLY_JWT_SECRET", None)?;
        let api_key = setting("TALLY_API_KEY", None)?;
        let user = setting("TALLY_USER", Some("user-42"))?;
        let item = setting("TALLY_ITEM", Some("blog/2026/hello"))?;

        let token = mint_token(&user, &secret, 3600)?;
        println!("minted an HS256 token for {user} (expires in 3600 s)");

        let like_url = tally.item_url(&item, &["like"])?;
        let like = tally.call(Method::PUT, like_url, &token, None).await?;
        check(
            like["liked"] == true,
            format!("like.liked is {}", like["liked"]),
        )?;
        println!(
            "liked {item} as {user}: likes={} liked={} changed={}",
            like["likes"], like["liked"], like["changed"]
        );

        let read_url = tally.item_url(&item, &[])?;
        let read = tally
            .call(Method::GET, read_url.clone(), &token, None)
            .await?;
        check(
            read["liked"] == true,
            format!("read.liked is {}", read["liked"]),
        )?;
        println!(
            "read {item} as {user}: likes={} liked={}",
            read["likes"], read["liked"]
        );

        let counter_url = tally.item_url(&item, &["counters", COUNTER])?;
        let body = json!({"by": 3});
        let added = tally
            .call(Method::POST, counter_url, &api_key, Some(body))
            .await?;
        println!("added 3 to {COUNTER} on {item}: value={}", added["value"]);

        let after = tally.call(Method::GET, read_url, &token, None).await?;
        let value = &after["counters"][COUNTER];
        check(
            *value == added["value"],
            format!("counters.{COUNTER} is {value}"),
        )?;
        println!("read back {COUNTER} on {item}: {value}");
        Ok(())
    }
}
