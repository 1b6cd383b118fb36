//! Decimal text to `f64`, read exactly as `str::parse::<f64>` reads it, without
//! core's float parser in the wasm (its table of powers of five alone is 10 KB,
//! with the code about 14 KB of the gzipped module).
//!
//! The grammar is checked here, in Rust, so that the same texts are accepted and
//! refused as by `str::parse`; the digits are then read natively by `str::parse`
//! and, in the worker, by the JavaScript engine's own `parseFloat`, which rounds
//! to the nearest `f64` as Rust does (IEEE 754, ties to even). It is the
//! runtime's parser, already there, not code moved out of the wasm.

/// `text` as `str::parse::<f64>` reads it: `None` where that fails.
pub fn parse(text: &str) -> Option<f64> {
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    let magnitude =
        if unsigned.eq_ignore_ascii_case("inf") || unsigned.eq_ignore_ascii_case("infinity") {
            f64::INFINITY
        } else if unsigned.eq_ignore_ascii_case("nan") {
            f64::NAN
        } else if is_decimal(unsigned) {
            read(unsigned)
        } else {
            return None;
        };
    // Rounding is symmetric, so reading the magnitude and negating it is
    // reading the negative number.
    Some(if text.starts_with('-') {
        -magnitude
    } else {
        magnitude
    })
}

/// Digits with an optional point (at least one digit on either side) and an
/// optional exponent: `1`, `1.`, `.5`, `2.5e-3`, `7E+2`.
fn is_decimal(text: &str) -> bool {
    let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    let (mantissa, exponent) = match text.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => (mantissa, Some(exponent)),
        None => (text, None),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    !(whole.is_empty() && fraction.is_empty()) && digits(whole) && digits(fraction) && exponent_ok
}

/// A text [`is_decimal`] accepted, as the nearest `f64`.
#[cfg(not(target_arch = "wasm32"))]
fn read(text: &str) -> f64 {
    text.parse().unwrap_or(f64::NAN)
}

/// A text [`is_decimal`] accepted, as the nearest `f64`.
#[cfg(target_arch = "wasm32")]
fn read(text: &str) -> f64 {
    #[wasm_bindgen::prelude::wasm_bindgen]
    extern "C" {
        /// The global `parseFloat`; given only what [`is_decimal`] accepts, it
        /// reads the whole text.
        #[wasm_bindgen(js_name = parseFloat)]
        fn parse_float(text: &str) -> f64;
    }
    parse_float(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(a: Option<f64>, b: Option<f64>) -> bool {
        match (a, b) {
            (Some(a), Some(b)) => a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
            (None, None) => true,
            _ => false,
        }
    }

    #[test]
    fn accepts_and_refuses_exactly_what_str_parse_does() {
        let texts = [
            "0",
            "-0",
            "+0",
            "1",
            "1.",
            ".5",
            "-.5",
            "+.5",
            "1.5",
            "01.50",
            "1e5",
            "1E5",
            "1e+5",
            "1e-5",
            "1.e3",
            ".1e3",
            "2.5E-3",
            "1e400",
            "-1e400",
            "1e-400",
            "inf",
            "-inf",
            "+inf",
            "INF",
            "Infinity",
            "-infinity",
            "nan",
            "NaN",
            "-NaN",
            "",
            ".",
            "-",
            "+",
            "e5",
            ".e5",
            "1e",
            "1e+",
            "1e-",
            "1.2.3",
            "1e5.5",
            "1e5e5",
            " 1",
            "1 ",
            "1_000",
            "0x10",
            "++1",
            "+-1",
            "--1",
            "1,5",
            "infinit",
            "nann",
            "in",
            "١",
            "1\u{0}",
            "0.30000000000000004",
            "1.7976931348623157e308",
            "2.2250738585072014e-308",
            "4.9406564584124654e-324",
            "123456789012345678901234567890",
            "0.1000000000000000055511151231257827021181583404541015625",
        ];
        for text in texts {
            assert!(
                same(parse(text), text.parse().ok()),
                "{text:?}: {:?} against {:?}",
                parse(text),
                text.parse::<f64>().ok()
            );
        }
    }

    #[test]
    fn accepts_every_form_rust_prints_an_f64_in() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let f = f64::from_bits(x);
            if f.is_finite() {
                for text in [f.to_string(), format!("{f:e}"), format!("{f:.14e}")] {
                    assert!(same(parse(&text), text.parse().ok()), "{text}");
                }
            }
        }
    }
}
