//! The deploy guide matches the worker: every binding the code reads (scanned
//! from `src/`) is documented in docs/operations.md's configuration table and
//! set in wrangler.toml (`[vars]`, or its secrets list; a D1 database, read
//! with `env.d1("X")`, in `[[d1_databases]]`), and the README's
//! `wrangler secret put` commands name exactly the secrets `Config::from_env`
//! requires. A variable added without its documentation fails here, by name.

#![cfg(not(target_arch = "wasm32"))]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A binding the worker reads, where it is read, and whether it is required.
#[derive(Debug)]
struct Binding {
    file: String,
    required: bool,
    /// A D1 database (`env.d1("X")`), not a var or secret.
    database: bool,
}

/// Every binding name read anywhere in `src/`: arguments of the config helpers
/// (`required(env, "X")`, `optional(env, "X")`, `number(env, "X", ..)`) and
/// direct `env.var("X")` / `env.secret("X")` calls.
fn bindings_read_by_the_worker() -> BTreeMap<String, Binding> {
    let mut found = BTreeMap::new();
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    for path in files {
        let text = fs::read_to_string(&path).expect("read a source file");
        // Without whitespace, a call rustfmt split over lines reads the same.
        let code: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let file = path
            .strip_prefix(root())
            .expect("under the root")
            .display()
            .to_string();
        for (at, _) in code.match_indices("env,\"") {
            let call_start = code[..at].trim_end_matches('&');
            if !call_start.ends_with('(') {
                continue;
            }
            let helper = call_start[..call_start.len() - 1]
                .rsplit(|c: char| !(c.is_alphanumeric() || c == '_'))
                .next()
                .unwrap_or_default();
            if let Some(name) = quoted_name(&code[at + "env,\"".len()..]) {
                let entry = found.entry(name).or_insert(Binding {
                    file: file.clone(),
                    required: false,
                    database: false,
                });
                entry.required |= helper == "required";
            }
        }
        for call in [".var(\"", ".secret(\"", ".d1(\""] {
            for (at, _) in code.match_indices(call) {
                if let Some(name) = quoted_name(&code[at + call.len()..]) {
                    found.entry(name).or_insert(Binding {
                        file: file.clone(),
                        required: false,
                        database: call == ".d1(\"",
                    });
                }
            }
        }
    }
    found
}

fn rust_files(dir: &Path, into: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push(path);
        }
    }
}

/// `NAME` from `NAME"...`, if it looks like a binding name.
fn quoted_name(rest: &str) -> Option<String> {
    let name = &rest[..rest.find('"')?];
    let looks_like_one = name.starts_with(|c: char| c.is_ascii_uppercase())
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    looks_like_one.then(|| name.to_owned())
}

fn read(path: &str) -> String {
    fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// A `## Title` section of a Markdown file, up to the next `## `.
fn section(markdown: &str, title: &str) -> String {
    let start = markdown
        .find(&format!("\n## {title}\n"))
        .unwrap_or_else(|| panic!("no `## {title}` section"));
    let body = &markdown[start + 1..];
    let end = body[3..].find("\n## ").map_or(body.len(), |i| i + 3);
    body[..end].to_owned()
}

/// docs/operations.md's configuration table: name → kind (`secret` or `var`).
fn configuration_table() -> BTreeMap<String, String> {
    let table = section(&read("docs/operations.md"), "Configuration");
    table
        .lines()
        .filter(|line| line.starts_with("| `"))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let name = cells[1].trim_matches('`').to_owned();
            (name, cells.get(2).copied().unwrap_or_default().to_owned())
        })
        .collect()
}

/// wrangler.toml's `[vars]`: name → value (`None` for a commented-out example line).
fn wrangler_vars() -> BTreeMap<String, Option<String>> {
    vars_of("wrangler.toml")
}

/// The `[vars]` of the wrangler config `file`, as [`wrangler_vars`] reads them.
fn vars_of(file: &str) -> BTreeMap<String, Option<String>> {
    let toml = read(file);
    let mut vars = BTreeMap::new();
    let mut in_vars = false;
    for line in toml.lines().map(str::trim) {
        if line.starts_with('[') {
            in_vars = line == "[vars]";
            continue;
        }
        if !in_vars {
            continue;
        }
        let (commented, entry) = match line.strip_prefix('#') {
            Some(rest) => (true, rest.trim()),
            None => (false, line),
        };
        let Some((name, value)) = entry.split_once('=') else {
            continue;
        };
        let name = name.trim();
        if quoted_name(&format!("{name}\"")).is_some() {
            let value = value.trim().trim_matches('"').to_owned();
            vars.insert(name.to_owned(), (!commented).then_some(value));
        }
    }
    vars
}

/// The `binding` of every `[[d1_databases]]` table in wrangler.toml.
fn wrangler_d1_bindings() -> BTreeSet<String> {
    d1_bindings_of("wrangler.toml")
}

/// The `binding` of every `[[d1_databases]]` table in the config `file`.
fn d1_bindings_of(file: &str) -> BTreeSet<String> {
    let toml = read(file);
    let mut bindings = BTreeSet::new();
    let mut in_d1 = false;
    for line in toml.lines().map(str::trim) {
        if line.starts_with('[') {
            in_d1 = line == "[[d1_databases]]";
            continue;
        }
        if let (true, Some(("binding", value))) =
            (in_d1, line.split_once('=').map(|(k, v)| (k.trim(), v)))
        {
            bindings.insert(value.trim().trim_matches('"').to_owned());
        }
    }
    bindings
}

fn databases_read_by_the_worker() -> BTreeSet<String> {
    bindings_read_by_the_worker()
        .into_iter()
        .filter(|(_, b)| b.database)
        .map(|(name, _)| name)
        .collect()
}

/// The names on the line after `# Secrets` in wrangler.toml.
fn wrangler_secrets_comment() -> BTreeSet<String> {
    let toml = read("wrangler.toml");
    let mut lines = toml.lines().skip_while(|l| !l.starts_with("# Secrets"));
    lines.next().expect(
        "wrangler.toml has a `# Secrets ...` comment followed by a `# NAME, NAME, ...` line",
    );
    lines
        .next()
        .and_then(|l| l.strip_prefix('#'))
        .expect("a `# NAME, NAME, ...` line after `# Secrets`")
        .split(',')
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .collect()
}

/// The README's deploy guide.
fn guide() -> String {
    section(&read("README.md"), "Use it on your site")
}

/// The names in the guide's `wrangler secret put NAME` commands.
fn guide_secret_puts() -> BTreeSet<String> {
    let guide = guide();
    guide
        .match_indices("wrangler secret put ")
        .filter_map(|(at, put)| {
            let rest = &guide[at + put.len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            quoted_name(&format!("{}\"", &rest[..end]))
        })
        .collect()
}

fn required_secrets() -> BTreeSet<String> {
    bindings_read_by_the_worker()
        .into_iter()
        .filter(|(_, b)| b.required)
        .map(|(name, _)| name)
        .collect()
}

/// Fails, naming each name, unless `listed` is exactly what `Config::from_env` requires.
fn assert_lists_the_required_secrets(place: &str, listed: &BTreeSet<String>) {
    let required = required_secrets();
    let missing: Vec<&String> = required.difference(listed).collect();
    let extra: Vec<&String> = listed.difference(&required).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{place} lacks {missing:?} and has {extra:?}, which Config::from_env does not require"
    );
}

#[test]
fn the_scan_finds_the_bindings_the_worker_is_known_to_read() {
    let found = bindings_read_by_the_worker();
    for name in [
        "UPSTASH_REDIS_REST_URL",
        "UPSTASH_REDIS_REST_TOKEN",
        "TALLY_JWT_SECRET",
        "TALLY_API_KEY",
        "ALLOWED_ORIGINS",
        "VIEW_DEDUPE_SECONDS",
        "METRICS_FLUSH_SECONDS",
    ] {
        assert!(
            found.contains_key(name),
            "the scan of src/ missed {name}: {found:?}"
        );
    }
    assert!(found["TALLY_JWT_SECRET"].required && !found["ALLOWED_ORIGINS"].required);
}

#[test]
fn every_binding_the_worker_reads_has_a_row_in_the_configuration_table() {
    let table = configuration_table();
    let missing: Vec<String> = bindings_read_by_the_worker()
        .into_iter()
        .filter(|(name, _)| !table.contains_key(name))
        .map(|(name, b)| format!("{name} (read in {})", b.file))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/operations.md's configuration table has no row for: {}; add a row \
         such as | `NAME` | var | <default> | <meaning> | (kind `secret` if required)",
        missing.join(", ")
    );
}

#[test]
fn every_row_of_the_configuration_table_is_a_binding_the_worker_reads() {
    let read_by_worker = bindings_read_by_the_worker();
    let stale: Vec<String> = configuration_table()
        .into_keys()
        .filter(|name| !read_by_worker.contains_key(name))
        .collect();
    assert!(
        stale.is_empty(),
        "docs/operations.md's configuration table documents names nothing in src/ reads: {}",
        stale.join(", ")
    );
}

#[test]
fn the_configuration_table_marks_exactly_the_required_bindings_as_secrets() {
    let table = configuration_table();
    let secrets: BTreeSet<String> = table
        .iter()
        .filter(|(_, kind)| *kind == "secret")
        .map(|(name, _)| name.clone())
        .collect();
    assert_lists_the_required_secrets("docs/operations.md's `secret` rows", &secrets);
    let databases = databases_read_by_the_worker();
    for (name, kind) in &table {
        if databases.contains(name) {
            assert_eq!(
                kind, "binding",
                "docs/operations.md: {name} is a D1 binding: its kind must be `binding`"
            );
        } else {
            assert!(
                kind == "secret" || kind == "var",
                "docs/operations.md: {name}'s kind is `{kind}`, not `secret` or `var`"
            );
        }
    }
}

#[test]
fn every_d1_database_the_worker_reads_is_declared_in_wrangler_toml_and_not_as_a_var() {
    let databases = databases_read_by_the_worker();
    assert!(
        databases.contains("DB"),
        "the scan of src/ missed the D1 binding DB: {databases:?}"
    );
    assert_eq!(
        databases,
        wrangler_d1_bindings(),
        "wrangler.toml's [[d1_databases]] bindings differ from what src/ reads with env.d1(..)"
    );
    let vars = wrangler_vars();
    for name in &databases {
        assert!(
            !vars.contains_key(name),
            "wrangler.toml [vars] sets {name}, a D1 binding: declare it in [[d1_databases]] only"
        );
    }
}

#[test]
fn the_guide_puts_exactly_the_secrets_the_worker_requires() {
    assert_lists_the_required_secrets(
        "README.md's `wrangler secret put` commands (## Use it on your site)",
        &guide_secret_puts(),
    );
}

#[test]
fn wrangler_toml_lists_every_secret_in_its_secrets_comment_and_none_in_vars() {
    let required = required_secrets();
    let listed = wrangler_secrets_comment();
    assert_lists_the_required_secrets("wrangler.toml's `# Secrets` list", &listed);
    let vars = wrangler_vars();
    let exposed: Vec<&String> = required.iter().filter(|s| vars.contains_key(*s)).collect();
    assert!(
        exposed.is_empty(),
        "wrangler.toml [vars] holds secrets {exposed:?}: they would deploy in plain text"
    );
}

#[test]
fn wrangler_toml_vars_list_every_optional_variable() {
    // Site owners edit the values (ALLOWED_ORIGINS first), so only names are checked.
    let vars = wrangler_vars();
    let table = configuration_table();
    let missing: Vec<String> = bindings_read_by_the_worker()
        .into_iter()
        .filter(|(name, binding)| {
            !binding.required && !binding.database && !vars.contains_key(name)
        })
        .map(|(name, binding)| format!("{name} (read in {})", binding.file))
        .collect();
    assert!(
        missing.is_empty(),
        "wrangler.toml [vars] lacks {}: add `NAME = \"<default>\"`, or \
         `# NAME = \"<example>\"` if it has no default",
        missing.join(", ")
    );
    let unknown: Vec<&String> = vars
        .keys()
        .filter(|name| !table.contains_key(*name))
        .collect();
    assert!(
        unknown.is_empty(),
        "wrangler.toml [vars] sets {unknown:?}, which docs/operations.md does not document"
    );
}

#[test]
fn dev_vars_example_sets_every_required_secret() {
    let example = read(".dev.vars.example");
    let set: BTreeSet<String> = example
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(name, _)| name.trim().to_owned()))
        .collect();
    let missing: Vec<String> = required_secrets()
        .into_iter()
        .filter(|name| !set.contains(name))
        .collect();
    assert!(
        missing.is_empty(),
        ".dev.vars.example lacks {missing:?}: `make dev` would answer 500 misconfigured"
    );
}

#[test]
fn the_guide_says_what_to_set_allowed_origins_to_and_links_the_configuration_table() {
    let guide = guide();
    assert!(
        guide.contains("ALLOWED_ORIGINS"),
        "the guide never mentions ALLOWED_ORIGINS"
    );
    assert!(
        guide.contains("docs/operations.md#configuration"),
        "the guide does not link docs/operations.md#configuration for the optional settings"
    );
    assert!(
        guide.contains("/healthz"),
        "the guide does not check /healthz"
    );
    assert!(
        guide.contains("wrangler deploy"),
        "the guide does not deploy"
    );
}

/// The value of the top-level `key = "value"` line of the config `file`.
fn top_level(file: &str, key: &str) -> Option<String> {
    read(file)
        .lines()
        .take_while(|l| !l.starts_with('['))
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == key).then(|| v.trim().trim_matches('"').to_owned())
        })
}

#[test]
fn the_two_workers_configs_share_wrangler_tomls_settings_and_bind_each_other() {
    let one = wrangler_vars();
    for file in ["wrangler.edge.toml", "wrangler.record.toml"] {
        assert_eq!(
            vars_of(file),
            one,
            "{file}'s [vars] differ from wrangler.toml's: both Workers read the same settings"
        );
        assert_eq!(
            top_level(file, "compatibility_date"),
            top_level("wrangler.toml", "compatibility_date"),
            "{file}'s compatibility_date differs from wrangler.toml's"
        );
    }
    assert_eq!(
        top_level("wrangler.edge.toml", "main").as_deref(),
        Some("build/edge/index.js")
    );
    assert_eq!(
        top_level("wrangler.record.toml", "main").as_deref(),
        Some("build/index.js")
    );
    assert!(d1_bindings_of("wrangler.edge.toml").is_empty());
    assert_eq!(
        d1_bindings_of("wrangler.record.toml"),
        wrangler_d1_bindings()
    );
    let record = top_level("wrangler.record.toml", "name").expect("the record Worker's name");
    let edge = read("wrangler.edge.toml");
    assert!(
        edge.contains(&format!(
            "[[services]]\nbinding = \"RECORD\"\nservice = \"{record}\""
        )),
        "wrangler.edge.toml must bind {record} as RECORD (src/edge/forward.rs)"
    );
    assert_eq!(
        top_level("wrangler.record.toml", "workers_dev").as_deref(),
        Some("false"),
        "the record Worker has no public URL"
    );
    assert!(read("wrangler.record.toml").contains("crons = ["));
    let guide = guide();
    assert!(
        guide.contains("-c wrangler.record.toml") && guide.contains("-c wrangler.edge.toml"),
        "the README does not say how to deploy the two Workers"
    );
}
