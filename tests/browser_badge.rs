//! A README badge drawn by the real Chromium: each text's rendered width
//! matches the width the worker declared from its table, and a screenshot is
//! kept as tests/artifacts/badge.png.

#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::expect_used)]

#[path = "support/browser.rs"]
mod browser;
mod support;

use browser::Browser;
use fantoccini::Locator;
use support::{Stack, encode, token_for, unique};

/// How far a rendered text may be from its declared width: 1% of it, at
/// least half a pixel. The table holds DejaVu Sans advances at 11px rounded
/// to 0.01px, Chromium draws DejaVu Sans here (Verdana is not installed) and
/// keeps advances in 1/64 px, and the badge turns kerning off; so the only
/// error left is rounding, under 0.015px a character (a 28-character label
/// measured 165.73px against 165.75px declared). A wrong table entry or font
/// size is off by far more: one digit is 7px, 12px text is 9% wider, and with
/// kerning on that label drew 4.8px (2.9%) narrower.
fn tolerance(declared: f64) -> f64 {
    (declared * 0.01).max(0.5)
}

#[tokio::test]
async fn chromium_draws_each_badge_text_at_its_declared_width() {
    let stack = Stack::start();
    let item = unique("badge-chromium");
    let http = reqwest::Client::new();
    for who in ["r1", "r2", "r3"] {
        let url = stack
            .worker
            .url(&format!("/v1/items/{}/views", encode(&item)));
        support::send(http.post(url).bearer_auth(token_for(who))).await;
    }
    let b = Browser::launch().await;
    let mut measured = Vec::new();
    for query in [
        "label=Tally%20%3Creaders%3E%20%26%20Vowel%20Test",
        "metric=likes&label=WWW%20mmm%20iii%20...%20%7C%7C%7C&style=flat-square&color=4c1",
        "",
    ] {
        let path = format!("/v1/items/{}/badge.svg?{query}", encode(&item));
        b.goto(&stack.worker.url(&path)).await;
        let texts = b
            .eval(
                "return [...document.querySelectorAll('text')].map((t) => {
                   const declared = Number(t.getAttribute('textLength'));
                   t.removeAttribute('textLength');
                   const natural = t.getComputedTextLength();
                   const box = t.getBBox().width;
                   t.style.fontKerning = 'normal';
                   const kerned = t.getComputedTextLength();
                   t.style.fontKerning = '';
                   t.setAttribute('textLength', declared);
                   return [t.id || 'shadow', t.textContent, declared, natural, box, kerned, getComputedStyle(t).fontFamily];
                 });",
                vec![],
            )
            .await;
        let texts = texts.as_array().expect("an array of texts");
        assert_eq!(texts.len(), 4, "{texts:?}");
        for text in texts {
            let [id, content, declared, natural, bbox, kerned, family] =
                text.as_array().expect("a row").as_slice()
            else {
                panic!("{text}");
            };
            let (declared, natural, bbox) = (
                declared.as_f64().expect("declared"),
                natural.as_f64().expect("natural"),
                bbox.as_f64().expect("bbox"),
            );
            eprintln!(
                "{query:?} {id} {content}: declared {declared:.2}px, computed {natural:.2}px, bbox {bbox:.2}px (with kerning {kerned}), font {family}"
            );
            assert!(
                (natural - declared).abs() <= tolerance(declared),
                "{id} {content}: declared {declared}, rendered {natural}"
            );
            measured.push((content.clone(), declared, natural));
        }
        assert!(
            texts.iter().any(|t| t[1] == "3" || t[1] == "0"),
            "the count is drawn: {texts:?}"
        );
    }
    assert!(
        measured
            .iter()
            .any(|(c, ..)| c == "Tally <readers> & Vowel Test")
    );

    // The first badge again, drawn four times larger for the record.
    let path = format!(
        "/v1/items/{}/badge.svg?label=Tally%20%3Creaders%3E&color=brightgreen",
        encode(&item)
    );
    b.goto(&stack.worker.url(&path)).await;
    b.eval(
        "const svg = document.documentElement;
         const w = svg.getAttribute('width'), h = svg.getAttribute('height');
         svg.setAttribute('viewBox', `0 0 ${w} ${h}`);
         svg.setAttribute('width', w * 4); svg.setAttribute('height', h * 4);",
        vec![],
    )
    .await;
    let svg = b
        .client
        .find(Locator::Css("svg"))
        .await
        .expect("the svg element");
    let png = svg.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let out = support::artifacts().join("badge.png");
    std::fs::write(&out, png).expect("write the screenshot");
    eprintln!("badge screenshot: {}", out.display());
    b.close().await;
}
