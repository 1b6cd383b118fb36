//! Commands as the REST protocol carries them: parsed from JSON or a path.
//! [`crate::policy`] decides which may run.

use percent_encoding::percent_decode_str;
use serde_json::Value as Json;

/// One Redis command: the name and its arguments, as raw bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    /// Every part, the command name first.
    pub parts: Vec<Vec<u8>>,
}

/// Why a request does not carry a well-formed command.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The body is not JSON of the expected shape.
    #[error("ERR the request body is not valid JSON: {0}")]
    Json(String),
    /// The body is JSON, but not an array command.
    #[error(
        "ERR a command is a JSON array of strings and numbers, such as [\"SET\", \"key\", \"value\"]"
    )]
    NotACommand,
    /// A pipeline or transaction body is not an array of commands.
    #[error(
        "ERR the body must be a JSON array of commands, such as [[\"SET\", \"k\", \"v\"], [\"GET\", \"k\"]]"
    )]
    NotABatch,
    /// The command has no name.
    #[error("ERR empty command")]
    Empty,
    /// A pipeline or transaction without commands.
    #[error("ERR empty pipeline: send at least one command")]
    EmptyBatch,
    /// A path segment is not valid percent-encoded UTF-8.
    #[error("ERR the path is not valid percent-encoded UTF-8")]
    Path,
}

/// Why a command is not run.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The command would block the shared connection.
    #[error("ERR blocking command '{0}' is not supported over REST: poll instead")]
    Blocking(String),
    /// Pub/sub needs a long-lived connection.
    #[error("ERR pub/sub command '{0}' is not supported over REST (PUBLISH is)")]
    PubSub(String),
    /// The command changes or depends on connection state that HTTP requests do not keep.
    #[error(
        "ERR command '{0}' changes connection state, which REST requests do not keep: it is not supported"
    )]
    ConnectionState(String),
    /// MULTI and friends outside `/multi-exec`.
    #[error("ERR command '{0}' is not supported: send the transaction to /multi-exec")]
    Transaction(String),
    /// Server administration, which only `--allow-admin` permits.
    #[error(
        "ERR command '{0}' is server administration, which this gateway refuses (operators can start it with --allow-admin)"
    )]
    Admin(String),
    /// With the read-only token, anything Redis does not flag `readonly`.
    #[error("NOPERM this token has no permissions to run the '{0}' command")]
    ReadOnly(String),
}

impl Command {
    /// The command name as sent (empty for none, which parsing never produces).
    pub fn raw_name(&self) -> &[u8] {
        self.parts.first().map_or(&[], Vec::as_slice)
    }

    /// The command name, upper-cased (lossy for non-UTF-8 names, which Redis rejects anyway).
    pub fn name(&self) -> String {
        self.parts
            .first()
            .map(|n| String::from_utf8_lossy(n).to_ascii_uppercase())
            .unwrap_or_default()
    }

    /// Parses `["SET", "key", 1]`.
    pub fn from_json(value: Json) -> Result<Command, ParseError> {
        let Json::Array(items) = value else {
            return Err(ParseError::NotACommand);
        };
        let mut parts = Vec::with_capacity(items.len());
        for item in items {
            parts.push(match item {
                Json::String(s) => s.into_bytes(),
                Json::Number(n) => n.to_string().into_bytes(),
                _ => return Err(ParseError::NotACommand),
            });
        }
        if parts.first().is_none_or(|name| name.is_empty()) {
            return Err(ParseError::Empty);
        }
        Ok(Command { parts })
    }

    /// Parses a `POST /` body.
    pub fn from_body(body: &[u8]) -> Result<Command, ParseError> {
        Command::from_json(parse_json(body)?)
    }

    /// Parses a `/pipeline` or `/multi-exec` body: an array of commands.
    pub fn batch_from_body(body: &[u8]) -> Result<Vec<Command>, ParseError> {
        let Json::Array(items) = parse_json(body)? else {
            return Err(ParseError::NotABatch);
        };
        if items.is_empty() {
            return Err(ParseError::EmptyBatch);
        }
        items
            .into_iter()
            .map(|item| match item {
                Json::Array(_) => Command::from_json(item),
                _ => Err(ParseError::NotABatch),
            })
            .collect()
    }

    /// Parses the path style `/{cmd}/{arg}/...`: each segment percent-decoded,
    /// then the POST body, if any, then the query's `NAME=value` pairs (except
    /// `_token`) as further arguments.
    pub fn from_path(
        path: &str,
        query: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Result<Command, ParseError> {
        let mut parts = Vec::new();
        let trimmed = path.strip_prefix('/').unwrap_or(path);
        // A trailing slash does not add an empty argument.
        let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
        for segment in trimmed.split('/') {
            parts.push(decode(segment)?);
        }
        // The body is the value (`POST /set/key` with the value as body), so it
        // comes before options such as `?EX=100`.
        if let Some(body) = body {
            parts.push(body);
        }
        for pair in query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (name, value) = match pair.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (pair, None),
            };
            if name == "_token" {
                continue;
            }
            parts.push(decode_query(name)?);
            if let Some(value) = value.filter(|v| !v.is_empty()) {
                parts.push(decode_query(value)?);
            }
        }
        if parts.first().is_none_or(|name| name.is_empty()) {
            return Err(ParseError::Empty);
        }
        Ok(Command { parts })
    }

    /// For the read-only token: scripts run as their `_RO` variants, so Redis
    /// itself refuses any write they attempt.
    pub fn into_read_only(mut self) -> Command {
        let replacement: Option<&[u8]> = match self.name().as_str() {
            "EVAL" => Some(b"EVAL_RO"),
            "EVALSHA" => Some(b"EVALSHA_RO"),
            "FCALL" => Some(b"FCALL_RO"),
            _ => None,
        };
        if let (Some(name), Some(first)) = (replacement, self.parts.first_mut()) {
            *first = name.to_vec();
        }
        self
    }

    /// Whether an `XREAD`/`XREADGROUP` asks to `BLOCK`.
    pub fn blocks_stream_read(&self) -> bool {
        // Options come before STREAMS; after it, every part is a key or an id.
        self.parts
            .iter()
            .skip(1)
            .take_while(|p| !p.eq_ignore_ascii_case(b"STREAMS"))
            .any(|p| p.eq_ignore_ascii_case(b"BLOCK"))
    }
}

fn parse_json(body: &[u8]) -> Result<Json, ParseError> {
    serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))
}

fn decode(segment: &str) -> Result<Vec<u8>, ParseError> {
    Ok(percent_decode_str(segment).collect())
}

fn decode_query(part: &str) -> Result<Vec<u8>, ParseError> {
    // Query strings may carry `+` for a space.
    let spaced = part.replace('+', " ");
    let decoded: Vec<u8> = percent_decode_str(&spaced).collect();
    if std::str::from_utf8(&decoded).is_err() {
        return Err(ParseError::Path);
    }
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(parts: &[&str]) -> Command {
        Command {
            parts: parts.iter().map(|p| p.as_bytes().to_vec()).collect(),
        }
    }

    #[test]
    fn json_numbers_become_their_decimal_text() {
        let parsed = Command::from_body(br#"["incrby", "k", 5]"#);
        assert_eq!(parsed, Ok(cmd(&["incrby", "k", "5"])));
    }

    #[test]
    fn an_empty_command_is_refused() {
        assert_eq!(Command::from_body(b"[]"), Err(ParseError::Empty));
        assert_eq!(Command::from_body(br#"[""]"#), Err(ParseError::Empty));
    }

    #[test]
    fn path_style_decodes_segments_and_appends_query_and_body() {
        let parsed = Command::from_path(
            "/set/a%2Fb/",
            Some("EX=100&_token=secret&NX"),
            Some(b"v".to_vec()),
        );
        assert_eq!(parsed, Ok(cmd(&["set", "a/b", "v", "EX", "100", "NX"])));
    }

    #[test]
    fn stream_reads_block_only_with_block_before_streams() {
        assert!(cmd(&["XREAD", "BLOCK", "0", "STREAMS", "s", "$"]).blocks_stream_read());
        assert!(!cmd(&["XREAD", "STREAMS", "block", "0"]).blocks_stream_read());
    }

    #[test]
    fn the_read_only_token_runs_scripts_as_their_ro_variants() {
        assert_eq!(
            cmd(&["eval", "x", "0"]).into_read_only().parts[0],
            b"EVAL_RO"
        );
        assert_eq!(
            cmd(&["EVALSHA", "x", "0"]).into_read_only().parts[0],
            b"EVALSHA_RO"
        );
        assert_eq!(cmd(&["GET", "k"]).into_read_only().parts[0], b"GET");
    }
}
