//! The book's page limits: no rendered page is a wall.
//!
//! A student reads one page at a sitting. A page with more than 6,000 words
//! of prose, or more than 450 lines of Rust pulled in from the lessons, is
//! two lessons pretending to be one; such a lesson is split into its core page
//! and its hardening page. This test counts every page `chapters/SUMMARY.md`
//! lists and fails on any page of a lesson (a page whose file name starts
//! with the lesson's number, `05_…`) over either limit. The appendices are
//! reference, read in pieces, and are counted and printed but not held to
//! the limits: the testing appendix includes whole test files on purpose.
//!
//! ```text
//! cargo test --test page_limits -- --nocapture
//! ```
//!
//! prints the table (page, prose words, included Rust lines) as well.
//!
//! The counting rules, exactly:
//! - **Prose words**: whitespace-separated tokens of the page's Markdown once
//!   fenced code blocks, `{{#include …}}` lines and HTML comments are removed.
//! - **Included Rust lines**: the lines that each `{{#include X.rs…}}` brings
//!   into the page, resolved the way mdBook 0.5 resolves them (`path:anchor`
//!   without the anchor marker lines, `path:N:M`, `path:N:`, `path:N`,
//!   `path::M`, or the whole file), summed over the page.

use std::fs;
use std::path::{Path, PathBuf};

/// The most prose words one rendered page may hold.
const MAX_WORDS: usize = 6_000;
/// The most lines of included Rust one rendered page may hold.
const MAX_RUST_LINES: usize = 450;

fn chapters_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("chapters")
}

/// The pages of the book: every `.md` file `SUMMARY.md` links to, in order.
fn summary_pages(summary: &str) -> Vec<String> {
    let mut pages = Vec::new();
    for piece in summary.split("](").skip(1) {
        let target = piece.split(')').next().unwrap_or_default();
        let file = target.split('#').next().unwrap_or_default();
        if file.ends_with(".md") && !pages.iter().any(|p| p == file) {
            pages.push(file.to_string());
        }
    }
    pages
}

/// A fence line's marker (three or more backticks or tildes), if the line
/// opens or closes a fenced code block.
fn fence(line: &str) -> Option<(char, usize)> {
    let trimmed = line.trim_start();
    let c = trimmed.chars().next()?;
    if c != '`' && c != '~' {
        return None;
    }
    let n = trimmed.chars().take_while(|&x| x == c).count();
    (n >= 3).then_some((c, n))
}

/// Whether a line is an include directive (and so no prose).
fn is_include_line(line: &str) -> bool {
    let t = line.trim();
    t.starts_with("{{#include") || t.starts_with("{{#rustdoc_include")
}

/// The page's prose: the Markdown without fenced code blocks, include lines
/// and HTML comments.
fn prose(markdown: &str) -> String {
    // Fenced blocks and include lines first, line by line.
    let mut kept = String::new();
    let mut open: Option<(char, usize)> = None;
    for line in markdown.lines() {
        match (open, fence(line)) {
            (None, Some(f)) => open = Some(f),
            // A fence closes only with the same character, at least as long,
            // and nothing after it.
            (Some((c, n)), Some((c2, n2)))
                if c == c2 && n2 >= n && {
                    let rest = line.trim().trim_start_matches(c);
                    rest.trim().is_empty()
                } =>
            {
                open = None
            }
            (Some(_), _) => {}
            (None, None) if is_include_line(line) => {}
            (None, None) => {
                kept.push_str(line);
                kept.push('\n');
            }
        }
    }
    // Then HTML comments, which may span lines.
    let mut out = String::new();
    let mut rest = kept.as_str();
    while let Some(start) = rest.find("<!--") {
        out.push_str(&rest[..start]);
        match rest[start..].find("-->") {
            Some(end) => rest = &rest[start + end + 3..],
            None => rest = "",
        }
    }
    out.push_str(rest);
    out
}

/// Prose words on a page.
fn prose_words(markdown: &str) -> usize {
    prose(markdown).split_whitespace().count()
}

/// Which lines of the included file an include takes.
#[derive(Debug, PartialEq)]
enum Take {
    /// The lines between `ANCHOR: name` and `ANCHOR_END: name`.
    Anchor(String),
    /// Lines `start..end` counted from 0, `end` open when `None`.
    Lines { start: usize, end: Option<usize> },
}

/// The file and the part of it that one include names, parsed the way
/// mdBook's `parse_range_or_anchor` does: `path:N` is line N alone,
/// `path:N:` is N to the end, `path::M` the first M lines, `path:N:M` lines
/// N to M (1-based, inclusive), anything else after the colon an anchor.
fn parse_include(target: &str) -> (String, Take) {
    let (path, rest) = match target.split_once(':') {
        None => {
            return (
                target.to_string(),
                Take::Lines {
                    start: 0,
                    end: None,
                },
            );
        }
        Some(pair) => pair,
    };
    let mut parts = rest.splitn(2, ':');
    let first = parts.next().unwrap_or_default();
    let start = match first.parse::<usize>() {
        Ok(n) => Some(n.saturating_sub(1)),
        Err(_) if first.is_empty() => None,
        Err(_) => return (path.to_string(), Take::Anchor(first.to_string())),
    };
    let end = parts.next().map(|s| s.parse::<usize>());
    let take = match (start, end) {
        (Some(s), Some(Ok(e))) => Take::Lines {
            start: s,
            end: Some(e),
        },
        (Some(s), Some(Err(_))) => Take::Lines {
            start: s,
            end: None,
        },
        (Some(s), None) => Take::Lines {
            start: s,
            end: Some(s + 1),
        },
        (None, Some(Ok(e))) => Take::Lines {
            start: 0,
            end: Some(e),
        },
        (None, _) => Take::Lines {
            start: 0,
            end: None,
        },
    };
    (path.to_string(), take)
}

/// The anchor a marker line opens or closes (`// ANCHOR: name`,
/// `// ANCHOR_END: name`), as mdBook's regexes read it.
fn marker(line: &str, word: &str) -> Option<String> {
    let mut rest = line;
    while let Some(i) = rest.find(word) {
        let after = &rest[i + word.len()..];
        // `ANCHOR:` must not match inside `ANCHOR_END:`'s text and vice versa;
        // mdBook's regex for `ANCHOR:` does not match `ANCHOR_END:` because
        // of the colon right after `ANCHOR`.
        let name: String = after
            .trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '-')
            .collect();
        if !name.is_empty() {
            return Some(name);
        }
        rest = after;
    }
    None
}

/// The lines an include brings into the page, as mdBook renders them.
fn take_lines(source: &str, take: &Take) -> Vec<String> {
    match take {
        Take::Lines { start, end } => {
            let lines = source.lines().skip(*start);
            match end {
                Some(e) => lines
                    .take(e.saturating_sub(*start))
                    .map(str::to_string)
                    .collect(),
                None => lines.map(str::to_string).collect(),
            }
        }
        Take::Anchor(name) => {
            let mut kept = Vec::new();
            let mut inside = false;
            for line in source.lines() {
                if inside {
                    if marker(line, "ANCHOR_END:").as_deref() == Some(name.as_str()) {
                        break;
                    }
                    // Lines marking other anchors nested in this one are
                    // dropped too; only the code shows.
                    if marker(line, "ANCHOR_END:").is_none() && marker(line, "ANCHOR:").is_none() {
                        kept.push(line.to_string());
                    }
                } else if marker(line, "ANCHOR:").as_deref() == Some(name.as_str()) {
                    inside = true;
                }
            }
            kept
        }
    }
}

/// The include directives of a page, as `(path, take)` pairs.
fn includes(markdown: &str) -> Vec<(String, Take)> {
    let mut found = Vec::new();
    for piece in markdown.split("{{#").skip(1) {
        let body = piece.split("}}").next().unwrap_or_default();
        let mut words = body.split_whitespace();
        if !matches!(words.next(), Some("include" | "rustdoc_include")) {
            continue;
        }
        if let Some(target) = words.next() {
            found.push(parse_include(target));
        }
    }
    found
}

/// Lines of Rust a page includes; a file that cannot be read is an error
/// (the book test says more about which).
fn rust_lines(page: &Path, markdown: &str) -> Result<usize, String> {
    let mut total = 0;
    for (path, take) in includes(markdown) {
        if !path.ends_with(".rs") {
            continue;
        }
        let file = page.parent().unwrap().join(&path);
        let source = fs::read_to_string(&file)
            .map_err(|e| format!("{}: cannot read {path}: {e}", page.display()))?;
        total += take_lines(&source, &take).len();
    }
    Ok(total)
}

#[test]
fn every_page_is_within_the_limits() {
    let dir = chapters_dir();
    let summary = fs::read_to_string(dir.join("SUMMARY.md")).unwrap();
    let pages = summary_pages(&summary);
    assert!(
        pages.len() > 5,
        "SUMMARY.md lists only {} pages",
        pages.len()
    );
    let mut over = Vec::new();
    println!(
        "{:<40} {:>7} {:>11}   (limits: {MAX_WORDS} words, {MAX_RUST_LINES} Rust lines)",
        "page", "words", "rust lines"
    );
    for page in &pages {
        let path = dir.join(page);
        let markdown = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("SUMMARY.md lists {page}, which cannot be read: {e}"));
        let words = prose_words(&markdown);
        let rust = rust_lines(&path, &markdown).unwrap_or_else(|e| panic!("{e}"));
        let lesson_page = page.starts_with(|c: char| c.is_ascii_digit());
        let flag = if !lesson_page {
            "  (appendix: not held to the limits)"
        } else if words > MAX_WORDS || rust > MAX_RUST_LINES {
            "  <- over"
        } else {
            ""
        };
        println!("{page:<40} {words:>7} {rust:>11}{flag}");
        if !lesson_page {
            continue;
        }
        if words > MAX_WORDS {
            over.push(format!(
                "chapters/{page}: {words} prose words (limit {MAX_WORDS})"
            ));
        }
        if rust > MAX_RUST_LINES {
            over.push(format!(
                "chapters/{page}: {rust} included Rust lines (limit {MAX_RUST_LINES})"
            ));
        }
    }
    assert!(
        over.is_empty(),
        "pages over the limits; move hardening to the lesson's `_hardening.md` page or \
         include smaller anchors:\n{}",
        over.join("\n")
    );
}

// The counter itself, on small inputs where the right answer is plain.

#[test]
fn prose_leaves_out_code_fences_includes_and_comments() {
    let page = "# Title here\n\
                one two three\n\
                ```rust,ignore\n\
                {{#include ../src/x.rs:a}}\n\
                fn not_prose() {}\n\
                ```\n\
                {{#include data/table.md}}\n\
                four <!-- hidden\n\
                still hidden --> five\n\
                ~~~~\n\
                ``` not a close: a tilde fence is open\n\
                ~~~~\n\
                six\n";
    assert_eq!(
        prose(page).split_whitespace().collect::<Vec<_>>(),
        [
            "#", "Title", "here", "one", "two", "three", "four", "five", "six"
        ]
    );
    assert_eq!(prose_words(page), 9);
    // An unclosed fence hides the rest of the page, as Markdown renders it.
    assert_eq!(prose_words("a b\n```\nc d e\n"), 2);
}

#[test]
fn includes_parse_as_mdbook_parses_them() {
    assert_eq!(
        parse_include("../src/a.rs"),
        (
            "../src/a.rs".into(),
            Take::Lines {
                start: 0,
                end: None
            }
        )
    );
    assert_eq!(
        parse_include("a.rs:serve"),
        ("a.rs".into(), Take::Anchor("serve".into()))
    );
    assert_eq!(
        parse_include("a.rs:2:4"),
        (
            "a.rs".into(),
            Take::Lines {
                start: 1,
                end: Some(4)
            }
        )
    );
    assert_eq!(
        parse_include("a.rs:3:"),
        (
            "a.rs".into(),
            Take::Lines {
                start: 2,
                end: None
            }
        )
    );
    assert_eq!(
        parse_include("a.rs:3"),
        (
            "a.rs".into(),
            Take::Lines {
                start: 2,
                end: Some(3)
            }
        )
    );
    assert_eq!(
        parse_include("a.rs::2"),
        (
            "a.rs".into(),
            Take::Lines {
                start: 0,
                end: Some(2)
            }
        )
    );
}

#[test]
fn included_lines_are_counted_as_mdbook_renders_them() {
    let source = "fn a() {}\n\
                  // ANCHOR: outer\n\
                  let x = 1;\n\
                  // ANCHOR: inner\n\
                  let y = 2;\n\
                  // ANCHOR_END: inner\n\
                  let z = 3;\n\
                  // ANCHOR_END: outer\n\
                  fn b() {}\n";
    let lines = |target: &str| take_lines(source, &parse_include(target).1);
    // An anchor: its body without any marker line, nested ones included.
    assert_eq!(
        lines("f.rs:outer"),
        ["let x = 1;", "let y = 2;", "let z = 3;"]
    );
    assert_eq!(lines("f.rs:inner"), ["let y = 2;"]);
    // A missing anchor brings nothing (mdBook renders it empty).
    assert!(lines("f.rs:nowhere").is_empty());
    // Whole files and line ranges come as they are, markers and all.
    assert_eq!(lines("f.rs").len(), 9);
    assert_eq!(lines("f.rs:2:4").len(), 3);
    assert_eq!(lines("f.rs:8:"), ["// ANCHOR_END: outer", "fn b() {}"]);
    assert_eq!(lines("f.rs:9"), ["fn b() {}"]);
    assert_eq!(lines("f.rs::1"), ["fn a() {}"]);
}

#[test]
fn a_page_counts_only_its_rust_includes() {
    // The introduction lives in chapters/, so `../src/...` resolves from there.
    let page = chapters_dir().join("introduction.md");
    let markdown = "text\n\
                    ```rust,ignore\n\
                    {{#include ../src/bin/01_blocking.rs:1:10}}\n\
                    ```\n\
                    {{#include ../src/bin/01_blocking.rs:3:4}}\n\
                    {{#include data/not_rust.md}}\n";
    assert_eq!(rust_lines(&page, markdown), Ok(12));
    assert!(rust_lines(&page, "{{#include ../src/bin/99_none.rs}}").is_err());
}

#[test]
fn the_summary_lists_pages_once_each_in_order() {
    let summary = "# Summary\n[Intro](introduction.md)\n\
                   - [05](05_a.md)\n  - [05 hardening](05_a_hardening.md)\n\
                   - [link](05_a.md#section)\n";
    assert_eq!(
        summary_pages(summary),
        ["introduction.md", "05_a.md", "05_a_hardening.md"]
    );
}
