//! README badges: a shields-style flat SVG with a label on the left and a
//! formatted count on the right, sized from a fixed table of glyph widths.
//!
//! Pure: it knows nothing of HTTP. Every piece of text is XML-escaped, and
//! colours come from a closed list or a checked hex value, so nothing a
//! client sends becomes markup.

use std::fmt::Write;

/// The font size of the text, in pixels.
pub const FONT_SIZE: f64 = 11.0;
/// The most characters a label may have.
pub const MAX_LABEL_CHARS: usize = 64;
/// Horizontal padding on each side of each text, in pixels.
const PADDING: f64 = 5.0;
/// The badge's height, in pixels.
const HEIGHT: u32 = 20;
/// The fill of the label's side.
const LABEL_COLOR: &str = "#555";
/// The fonts asked for, as shields does: Verdana where installed (Windows,
/// macOS), else its look-alikes; DejaVu Sans is what Linux renders.
const FONT_FAMILY: &str = "Verdana,Geneva,DejaVu Sans,sans-serif";

/// Advance widths at 11 px of the printable ASCII characters, `' '` (0x20) to
/// `'~'` (0x7e), in pixels. Measured from DejaVu Sans (the face our font list
/// falls back to on Linux, whose proportions follow Verdana's: digits are 7 px
/// in both); Verdana itself is neither installed here nor redistributable.
/// Kerning is turned off in the badge (a table of single glyphs cannot know
/// pairs), and each `<text>` also carries its width as `textLength`, so a face
/// with other metrics is spaced to fit the box instead of overflowing it.
pub const ASCII_WIDTHS: [f64; 95] = [
    3.5, 4.41, 5.06, 9.22, 7.0, 10.45, 8.58, 3.02, 4.29, 4.29, 5.5, 9.22, 3.5, 3.97, 3.5,
    3.71, // ' '..'/'
    7.0, 7.0, 7.0, 7.0, 7.0, 7.0, 7.0, 7.0, 7.0, 7.0, 3.71, 3.71, 9.22, 9.22, 9.22,
    5.84, // '0'..'?'
    11.0, 7.52, 7.55, 7.68, 8.47, 6.95, 6.33, 8.52, 8.27, 3.24, 3.24, 7.21, 6.13, 9.49, 8.23,
    8.66, // '@'..'O'
    6.63, 8.66, 7.64, 6.98, 6.72, 8.05, 7.52, 10.88, 7.54, 6.72, 7.54, 4.29, 3.71, 4.29, 9.22,
    5.5, // 'P'..'_'
    5.5, 6.74, 6.98, 6.05, 6.98, 6.77, 3.87, 6.98, 6.97, 3.06, 3.06, 6.37, 3.06, 10.72, 6.97,
    6.73, // '`'..'o'
    6.98, 6.98, 4.52, 5.73, 4.31, 6.97, 6.51, 9.0, 6.51, 6.51, 5.77, 7.0, 3.71, 7.0,
    9.22, // 'p'..'~'
];

/// The width assumed for any character outside the table: the widest
/// lowercase letter, so non-ASCII text errs towards room to spare.
pub const DEFAULT_WIDTH: f64 = 10.72;

/// The named colours `?color=` takes, as shields names them.
pub const NAMED_COLORS: [(&str, &str); 12] = [
    ("brightgreen", "#4c1"),
    ("green", "#97ca00"),
    ("yellowgreen", "#a4a61d"),
    ("yellow", "#dfb317"),
    ("orange", "#fe7d37"),
    ("red", "#e05d44"),
    ("blue", "#007ec6"),
    ("lightgrey", "#9f9f9f"),
    ("lightgray", "#9f9f9f"),
    ("grey", "#555"),
    ("gray", "#555"),
    ("purple", "#8a2be2"),
];

/// The colour of the count's side when none is asked for.
pub const DEFAULT_COLOR: &str = "#007ec6";

/// How the badge is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Style {
    /// Rounded corners and a light gradient (`flat`, the default).
    #[default]
    Flat,
    /// Square corners, no gradient (`flat-square`).
    FlatSquare,
}

impl Style {
    /// The style named `name` (`flat` or `flat-square`).
    pub fn parse(name: &str) -> Option<Style> {
        match name {
            "flat" => Some(Style::Flat),
            "flat-square" => Some(Style::FlatSquare),
            _ => None,
        }
    }
}

/// A colour `?color=` accepts: a name from [`NAMED_COLORS`], or 3 or 6 hex
/// digits with or without a leading `#`. Answers the `#rgb`/`#rrggbb` fill.
pub fn parse_color(raw: &str) -> Option<String> {
    if let Some((_, hex)) = NAMED_COLORS.iter().find(|(name, _)| *name == raw) {
        return Some((*hex).to_owned());
    }
    let digits = raw.strip_prefix('#').unwrap_or(raw);
    let hex = matches!(digits.len(), 3 | 6) && digits.bytes().all(|b| b.is_ascii_hexdigit());
    hex.then(|| format!("#{}", digits.to_ascii_lowercase()))
}

/// Checks a label: 1 to [`MAX_LABEL_CHARS`] characters, none of them a control character.
pub fn valid_label(label: &str) -> bool {
    let count = label.chars().count();
    (1..=MAX_LABEL_CHARS).contains(&count) && !label.chars().any(char::is_control)
}

/// A count as a badge shows it, never more than the count itself:
/// below 10,000 exact with thousands separators (`999`, `1,234`); from there
/// scaled to `k`, `M`, `B` or `T` with the digits truncated, not rounded, to
/// one decimal while the scaled value is below 100 (`12.3k`, `1.2M`, a `.0`
/// dropped: `20k`) and none from 100 on (`123k`, `999k`); above that, whole `T`.
pub fn format_count(n: u64) -> String {
    if n < 10_000 {
        return if n < 1_000 {
            n.to_string()
        } else {
            format!("{},{:03}", n / 1_000, n % 1_000)
        };
    }
    let units = [
        (1_000_000_000_000, "T"),
        (1_000_000_000, "B"),
        (1_000_000, "M"),
        (1_000, "k"),
    ];
    let (scale, suffix) = units
        .iter()
        .copied()
        .find(|(scale, _)| n >= *scale)
        .unwrap_or((1_000, "k"));
    let whole = n / scale;
    if whole >= 100 {
        return format!("{whole}{suffix}");
    }
    let tenth = (n % scale) / (scale / 10);
    if tenth == 0 {
        format!("{whole}{suffix}")
    } else {
        format!("{whole}.{tenth}{suffix}")
    }
}

/// The width of `text` at 11 px, from [`ASCII_WIDTHS`] ([`DEFAULT_WIDTH`] for
/// any other character), in pixels.
pub fn text_width(text: &str) -> f64 {
    text.chars()
        .map(|c| match c {
            ' '..='~' => ASCII_WIDTHS[c as usize - 0x20],
            _ => DEFAULT_WIDTH,
        })
        .sum()
}

/// `text` with `& < > " '` escaped for XML text and attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            _ => out.push(c),
        }
    }
    out
}

/// A badge: `label` on grey, `value` on `color` (a fill from [`parse_color`]).
pub fn render(label: &str, value: &str, color: &str, style: Style) -> String {
    let (label_text, value_text) = (text_width(label), text_width(value));
    let label_box = (label_text + 2.0 * PADDING).round();
    let value_box = (value_text + 2.0 * PADDING).round();
    let width = label_box + value_box;
    let (label, value, color) = (escape(label), escape(value), escape(color));
    let radius = match style {
        Style::Flat => 3,
        Style::FlatSquare => 0,
    };
    let mut svg = String::with_capacity(1_200);
    // Writing to a String cannot fail.
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{HEIGHT}" role="img" aria-label="{label}: {value}"><title>{label}: {value}</title>"##
    );
    if style == Style::Flat {
        svg.push_str(r##"<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>"##);
    }
    let _ = write!(
        svg,
        r##"<clipPath id="r"><rect width="{width}" height="{HEIGHT}" rx="{radius}" fill="#fff"/></clipPath><g clip-path="url(#r)"><rect width="{label_box}" height="{HEIGHT}" fill="{LABEL_COLOR}"/><rect x="{label_box}" width="{value_box}" height="{HEIGHT}" fill="{color}"/>"##
    );
    if style == Style::Flat {
        let _ = write!(
            svg,
            r##"<rect width="{width}" height="{HEIGHT}" fill="url(#s)"/>"##
        );
    }
    let _ = write!(
        svg,
        r##"</g><g fill="#fff" text-anchor="middle" font-family="{FONT_FAMILY}" text-rendering="geometricPrecision" font-size="{FONT_SIZE}" style="font-kerning:none">"##
    );
    for (id, text, x, length) in [
        ("label", &label, label_box / 2.0, label_text),
        ("value", &value, label_box + value_box / 2.0, value_text),
    ] {
        let _ = write!(
            svg,
            r##"<text aria-hidden="true" x="{x}" y="15" fill="#010101" fill-opacity=".3" textLength="{length:.2}">{text}</text><text id="{id}" x="{x}" y="14" textLength="{length:.2}">{text}</text>"##
        );
    }
    svg.push_str("</g></svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_exact_below_ten_thousand_then_truncated_to_three_digits() {
        for (n, shown) in [
            (0, "0"),
            (999, "999"),
            (1_000, "1,000"),
            (1_234, "1,234"),
            (9_999, "9,999"),
            (10_000, "10k"),
            (12_345, "12.3k"),
            (99_999, "99.9k"),
            (123_456, "123k"),
            (999_999, "999k"),
            (1_000_000, "1M"),
            (1_234_567, "1.2M"),
            (1_999_999, "1.9M"),
            (12_345_678, "12.3M"),
            (123_456_789, "123M"),
            (1_500_000_000, "1.5B"),
            (2_000_000_000_000, "2T"),
            (u64::MAX, "18446744T"),
        ] {
            assert_eq!(format_count(n), shown, "{n}");
        }
    }

    #[test]
    fn widths_come_from_the_table_with_a_default_for_other_characters() {
        assert_eq!(text_width("1,234"), 7.0 * 4.0 + 3.5);
        assert_eq!(text_width("é"), DEFAULT_WIDTH);
        assert_eq!(ASCII_WIDTHS.len(), ('~' as usize) - (' ' as usize) + 1);
    }

    #[test]
    fn colours_are_names_or_three_or_six_hex_digits() {
        assert_eq!(parse_color("brightgreen").as_deref(), Some("#4c1"));
        assert_eq!(parse_color("ABC").as_deref(), Some("#abc"));
        assert_eq!(parse_color("#00ff7f").as_deref(), Some("#00ff7f"));
        for bad in ["", "ab", "abcd", "ggg", "#12345", "red;x", "url(#a)"] {
            assert_eq!(parse_color(bad), None, "{bad}");
        }
    }

    #[test]
    fn text_is_escaped_and_the_square_style_has_no_corners_or_gradient() {
        let svg = render("<script>&'\"", "1", "#4c1", Style::FlatSquare);
        assert!(svg.contains("&lt;script&gt;&amp;&apos;&quot;"));
        assert!(!svg.contains("<script>"));
        assert!(svg.contains(r#"rx="0""#) && !svg.contains("linearGradient"));
        let flat = render("views", "1", "#4c1", Style::Flat);
        assert!(flat.contains(r#"rx="3""#) && flat.contains("linearGradient"));
    }

    #[test]
    fn labels_are_one_to_sixty_four_characters_without_controls() {
        assert!(valid_label("views") && valid_label(&"é".repeat(64)));
        assert!(!valid_label("") && !valid_label(&"a".repeat(65)) && !valid_label("a\nb"));
    }
}
