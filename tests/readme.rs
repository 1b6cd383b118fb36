//! The README is the front door: its first two code blocks are the start and
//! test commands (which CI runs), it shows the demo page, it links every
//! document under docs/ and each links back, and no relative link is broken.

#![cfg(not(target_arch = "wasm32"))]

use std::fs;
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The fenced code blocks of a Markdown file, in order, without their fences.
fn code_blocks(markdown: &str) -> Vec<Vec<&str>> {
    let mut blocks = Vec::new();
    let mut open: Option<Vec<&str>> = None;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            match open.take() {
                Some(block) => blocks.push(block),
                None => open = Some(Vec::new()),
            }
        } else if let Some(block) = open.as_mut() {
            block.push(line);
        }
    }
    blocks
}

/// The targets of the Markdown links and images in `markdown` (`[text](target)`).
fn links(markdown: &str) -> Vec<&str> {
    markdown
        .match_indices("](")
        .filter_map(|(at, _)| {
            let rest = &markdown[at + 2..];
            rest.find(')').map(|end| rest[..end].trim())
        })
        .collect()
}

/// Every Markdown document under docs/.
fn documents() -> Vec<PathBuf> {
    let mut docs: Vec<PathBuf> = fs::read_dir(root().join("docs"))
        .expect("read docs/")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    docs
}

#[test]
fn the_first_two_code_blocks_start_tally_then_test_it() {
    let readme = read(&root().join("README.md"));
    let commands: Vec<&str> = code_blocks(&readme)
        .iter()
        .take(2)
        .map(|block| {
            block
                .iter()
                .map(|line| line.trim())
                .find(|line| !line.is_empty() && !line.starts_with('#'))
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(commands, ["make dev", "make test"]);
}

#[test]
fn ci_runs_the_readme_test_command_exactly() {
    let ci = read(&root().join(".ci/run"));
    assert!(
        ci.lines().any(|line| line.trim() == "make test"),
        ".ci/run does not run `make test`:\n{ci}"
    );
}

#[test]
fn the_readme_shows_the_demo_page_as_a_committed_png() {
    let readme = read(&root().join("README.md"));
    assert!(readme.contains("![") && links(&readme).contains(&"docs/demo.png"));
    let png = fs::read(root().join("docs/demo.png")).expect("docs/demo.png is committed");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "docs/demo.png is not a PNG"
    );
}

#[test]
fn the_readme_links_every_document_and_each_links_back() {
    let readme = read(&root().join("README.md"));
    let readme_links = links(&readme);
    for doc in documents() {
        let name = format!("docs/{}", doc.file_name().unwrap().to_string_lossy());
        assert!(
            readme_links
                .iter()
                .any(|l| l.split('#').next() == Some(&name)),
            "README.md does not link {name}"
        );
        assert!(
            links(&read(&doc)).contains(&"../README.md"),
            "{name} does not link back to ../README.md"
        );
    }
}

#[test]
fn every_relative_link_in_the_readme_and_docs_points_at_a_file() {
    let mut files = vec![root().join("README.md")];
    files.extend(documents());
    let mut broken = Vec::new();
    for file in files {
        let text = read(&file);
        for link in links(&text) {
            let path = link.split('#').next().unwrap_or_default();
            if path.is_empty() || link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            let dir = file.parent().expect("a file has a parent");
            if !dir.join(path).exists() {
                broken.push(format!("{}: {link}", file.display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}
