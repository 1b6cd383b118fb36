//! Redis replies as JSON: integers stay numbers, nil is `null`, arrays nest,
//! and with `Upstash-Encoding: base64` every string except the status `OK` is
//! base64 (so binary values survive the trip).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use redis::Value;
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

/// How strings in results are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// UTF-8 text (invalid bytes replaced).
    Text,
    /// Base64 of the raw bytes, as `@upstash/redis` asks for by default.
    Base64,
}

/// A Redis reply ready to serialize as the value of `"result"`.
pub struct Reply<'a> {
    /// The reply.
    pub value: &'a Value,
    /// How strings are written.
    pub encoding: Encoding,
}

/// One item of a pipeline or transaction answer: `{"result": ...}` or `{"error": "..."}`.
pub enum Item<'a> {
    /// A reply.
    Result(Reply<'a>),
    /// An error message (never base64-encoded).
    Error(String),
}

/// The text of a Redis error reply, as Redis sent it (`ERR ...`, `NOSCRIPT ...`).
pub fn error_text(error: &redis::ServerError) -> String {
    match error.details() {
        Some(details) => format!("{} {details}", error.code()),
        None => error.code().to_owned(),
    }
}

impl Reply<'_> {
    fn string<S: Serializer>(&self, bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        match self.encoding {
            Encoding::Text => serializer.serialize_str(&String::from_utf8_lossy(bytes)),
            Encoding::Base64 => serializer.serialize_str(&STANDARD.encode(bytes)),
        }
    }

    fn nested<'b>(&self, value: &'b Value) -> Reply<'b> {
        Reply {
            value,
            encoding: self.encoding,
        }
    }
}

impl Serialize for Reply<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.value {
            Value::Nil => serializer.serialize_none(),
            Value::Int(i) => serializer.serialize_i64(*i),
            Value::BulkString(bytes) => self.string(bytes, serializer),
            Value::Okay => serializer.serialize_str("OK"),
            Value::SimpleString(s) => self.string(s.as_bytes(), serializer),
            Value::Array(items) | Value::Set(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&self.nested(item))?;
                }
                seq.end()
            }
            // RESP3-only shapes, written as RESP2 would send them.
            Value::Map(pairs) => {
                let mut seq = serializer.serialize_seq(Some(pairs.len() * 2))?;
                for (key, value) in pairs {
                    seq.serialize_element(&self.nested(key))?;
                    seq.serialize_element(&self.nested(value))?;
                }
                seq.end()
            }
            Value::Attribute { data, .. } => self.nested(data).serialize(serializer),
            Value::Double(d) => self.string(d.to_string().as_bytes(), serializer),
            Value::Boolean(b) => serializer.serialize_i64(i64::from(*b)),
            Value::VerbatimString { text, .. } => self.string(text.as_bytes(), serializer),
            Value::BigNumber(n) => self.string(n, serializer),
            Value::Push { data, .. } => self
                .nested(&Value::Array(data.clone()))
                .serialize(serializer),
            Value::ServerError(e) => serializer.serialize_str(&error_text(e)),
            _ => serializer.serialize_none(),
        }
    }
}

impl Serialize for Item<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        match self {
            Item::Result(reply) => map.serialize_entry("result", reply)?,
            Item::Error(message) => map.serialize_entry("error", message)?,
        }
        map.end()
    }
}

impl<'a> Item<'a> {
    /// `{"error"}` for a Redis error reply, `{"result"}` for anything else.
    pub fn from_value(value: &'a Value, encoding: Encoding) -> Item<'a> {
        match value {
            Value::ServerError(e) => Item::Error(error_text(e)),
            _ => Item::Result(Reply { value, encoding }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(value: &Value, encoding: Encoding) -> String {
        serde_json::to_string(&Item::from_value(value, encoding)).unwrap_or_default()
    }

    #[test]
    fn replies_map_to_json_types() {
        let value = Value::Array(vec![
            Value::Int(3),
            Value::Nil,
            Value::BulkString(b"hi".to_vec()),
            Value::Array(vec![Value::Okay]),
        ]);
        assert_eq!(
            json(&value, Encoding::Text),
            r#"{"result":[3,null,"hi",["OK"]]}"#
        );
    }

    #[test]
    fn base64_encodes_every_string_but_the_ok_status() {
        let value = Value::Array(vec![
            Value::Okay,
            Value::BulkString(vec![0xff, b'a']),
            Value::SimpleString("PONG".into()),
            Value::Int(1),
            Value::Nil,
        ]);
        assert_eq!(
            json(&value, Encoding::Base64),
            r#"{"result":["OK","/2E=","UE9ORw==",1,null]}"#
        );
    }
}
