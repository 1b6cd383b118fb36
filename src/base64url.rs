//! Unpadded base64url (RFC 4648 §5), as JSON Web Tokens and visitor ids use
//! it: the alphabet `A-Z a-z 0-9 - _`, no `=`.
//!
//! Decoding is strict, as the `base64` crate's `URL_SAFE_NO_PAD` is: padding,
//! any other character, a length that leaves one character over, and unused
//! low bits that are not zero are all refused, so each byte string has exactly
//! one encoding and a token cannot be altered without changing its text. Both
//! directions fit in a few hundred bytes of wasm where that crate's engine
//! took about 6 KB.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// `bytes` encoded.
pub fn encode(bytes: impl AsRef<[u8]>) -> String {
    let bytes = bytes.as_ref();
    let mut text = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let group = chunk.iter().enumerate().fold(0u32, |group, (i, &byte)| {
            group | u32::from(byte) << (16 - 8 * i)
        });
        // n bytes make n + 1 characters.
        for i in 0..=chunk.len() {
            text.push(char::from(ALPHABET[(group >> (18 - 6 * i)) as usize & 63]));
        }
    }
    text
}

/// `text` decoded, or `None` where it is not the unpadded base64url of any bytes.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let text = text.as_bytes();
    if text.len() % 4 == 1 {
        return None;
    }
    let mut bytes = Vec::with_capacity(text.len() / 4 * 3 + 2);
    for chunk in text.chunks(4) {
        let mut group = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            group |= u32::from(value(c)?) << (18 - 6 * i);
        }
        // n characters carry n - 1 bytes; the bits past them must be zero.
        let carried = chunk.len() - 1;
        if group << (8 * carried) & 0x00ff_ffff != 0 {
            return None;
        }
        for i in 0..carried {
            bytes.push((group >> (16 - 8 * i)) as u8);
        }
    }
    Some(bytes)
}

/// The six bits character `c` stands for.
fn value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'-' => Some(62),
        b'_' => Some(63),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    /// A small deterministic generator (xorshift), so failures repeat.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn encodes_as_the_base64_crate_does() {
        assert_eq!(encode(b""), "");
        assert_eq!(encode(b"f"), "Zg");
        assert_eq!(encode(b"fo"), "Zm8");
        assert_eq!(encode(b"foo"), "Zm9v");
        assert_eq!(encode([0xfb, 0xff]), "-_8");
        let mut state = 0x9e37_79b9_7f4a_7c15;
        for len in 0..200 {
            let bytes: Vec<u8> = (0..len).map(|_| next(&mut state) as u8).collect();
            assert_eq!(encode(&bytes), URL_SAFE_NO_PAD.encode(&bytes), "{bytes:?}");
            assert_eq!(decode(&encode(&bytes)), Some(bytes));
        }
    }

    #[test]
    fn accepts_and_refuses_exactly_what_the_base64_crate_does() {
        for text in [
            "", "Zg", "Zh", "Zm8", "Zm9", "Zm9v", "Zg==", "Zm8=", "Z", "Zm9vY", "Zm 9", "Zm+v",
            "Zm/v", "-_8", "-_9", "AA", "AB", "AAA", "AAB", "é", "Zm\0v",
        ] {
            assert_eq!(decode(text), URL_SAFE_NO_PAD.decode(text).ok(), "{text:?}");
        }
        // Every text of up to three characters over an alphabet with some of
        // every kind: valid, invalid, and the padding character.
        let chars = b"AQgw_-9=+/.";
        let mut level = vec![String::new()];
        for _ in 0..3 {
            level = level
                .iter()
                .flat_map(|t| chars.iter().map(move |&c| format!("{t}{}", char::from(c))))
                .collect();
            for text in &level {
                assert_eq!(decode(text), URL_SAFE_NO_PAD.decode(text).ok(), "{text:?}");
            }
        }
        // And random texts of the alphabet, most of them with unused bits set.
        let mut state = 0x2545_f491_4f6c_dd1d;
        for _ in 0..5_000 {
            let len = (next(&mut state) % 12) as usize;
            let text: String = (0..len)
                .map(|_| char::from(ALPHABET[(next(&mut state) % 64) as usize]))
                .collect();
            assert_eq!(
                decode(&text),
                URL_SAFE_NO_PAD.decode(&text).ok(),
                "{text:?}"
            );
        }
    }
}
