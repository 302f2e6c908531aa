//! The book's checks: a chapter's code must be the code.
//!
//! mdBook only warns when an `{{#include}}` names a missing file, and says
//! nothing at all when it names a missing anchor (the include is just empty).
//! So this test checks every include itself, checks that every lesson has a
//! chapter and every chapter is in `SUMMARY.md`, and then builds the whole
//! book with mdBook's own library, so no `mdbook` install is needed.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use uring_echo_tools::LESSONS;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn chapters_dir() -> PathBuf {
    root().join("chapters")
}

/// Every Markdown file under `chapters/`, as paths relative to it, except
/// the generated tables under `chapters/data/`: those are fragments the
/// chapters include, not pages of their own (`tests/ladder_data.rs` checks
/// them against the data).
fn chapter_files() -> BTreeSet<String> {
    fn walk(dir: &Path, base: &Path, out: &mut BTreeSet<String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path == base.join("data") {
                continue;
            }
            if path.is_dir() {
                walk(&path, base, out);
            } else if path.extension().is_some_and(|e| e == "md") {
                let rel = path
                    .strip_prefix(base)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.insert(rel);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(&chapters_dir(), &chapters_dir(), &mut out);
    out
}

/// The chapter files `SUMMARY.md` links to.
fn summary_links() -> BTreeSet<String> {
    let summary = fs::read_to_string(chapters_dir().join("SUMMARY.md")).unwrap();
    let mut links = BTreeSet::new();
    for piece in summary.split("](").skip(1) {
        let target = piece.split(')').next().unwrap();
        if !target.is_empty() {
            links.insert(target.split('#').next().unwrap().to_string());
        }
    }
    links
}

/// One `{{#include path}}` or `{{#include path:anchor}}` directive.
#[derive(Debug, PartialEq)]
struct Include {
    path: String,
    anchor: Option<String>,
}

/// Finds the include directives of one chapter. Line ranges (`:10:20`) are
/// not allowed: they drift the moment the code above them changes.
fn includes(markdown: &str) -> Result<Vec<Include>, String> {
    let mut found = Vec::new();
    for (i, piece) in markdown.split("{{#").enumerate().skip(1) {
        let body = piece.split("}}").next().unwrap_or_default();
        let mut words = body.split_whitespace();
        let directive = words.next().unwrap_or_default();
        if !matches!(directive, "include" | "rustdoc_include") {
            continue;
        }
        let target = words.next().ok_or(format!("include #{i} names no file"))?;
        let (path, anchor) = match target.split_once(':') {
            None => (target, None),
            Some((path, rest)) => {
                if rest
                    .split(':')
                    .all(|p| p.chars().all(|c| c.is_ascii_digit()))
                {
                    return Err(format!(
                        "`{target}` includes by line numbers; use an `// ANCHOR: name` region"
                    ));
                }
                (path, Some(rest.to_string()))
            }
        };
        found.push(Include {
            path: path.to_string(),
            anchor,
        });
    }
    Ok(found)
}

/// Checks that an include's file exists and holds its anchor, opened and closed.
fn check_include(chapter: &Path, include: &Include) -> Result<(), String> {
    let file = chapter.parent().unwrap().join(&include.path);
    let text = fs::read_to_string(&file)
        .map_err(|e| format!("includes {}, which cannot be read: {e}", include.path))?;
    if let Some(anchor) = &include.anchor {
        let opens = text
            .lines()
            .filter(|l| anchor_name(l, "ANCHOR:") == Some(anchor))
            .count();
        let closes = text
            .lines()
            .filter(|l| anchor_name(l, "ANCHOR_END:") == Some(anchor))
            .count();
        if opens != 1 || closes != 1 {
            return Err(format!(
                "includes {}:{anchor}, but that file has {opens} `ANCHOR: {anchor}` and \
                 {closes} `ANCHOR_END: {anchor}` lines (one of each is needed)",
                include.path
            ));
        }
    }
    Ok(())
}

/// The anchor name on a line such as `// ANCHOR: serve`.
fn anchor_name<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    let after = line.split_once(marker)?.1.trim();
    let name = after.split_whitespace().next()?;
    Some(name)
}

/// Every ```rust block must be marked `ignore`: the included fragments are
/// not programs of their own, and `mdbook test` must not try to compile them.
fn unmarked_rust_fences(markdown: &str) -> Vec<usize> {
    markdown
        .lines()
        .enumerate()
        .filter(|(_, l)| {
            let info = l.trim_start().strip_prefix("```").unwrap_or("");
            let mut attrs = info.split(',').map(str::trim);
            attrs.next() == Some("rust") && !attrs.any(|a| a == "ignore")
        })
        .map(|(i, _)| i + 1)
        .collect()
}

#[test]
fn every_include_names_a_file_and_an_anchor_that_exist() {
    let mut problems = Vec::new();
    for rel in chapter_files() {
        let path = chapters_dir().join(&rel);
        let text = fs::read_to_string(&path).unwrap();
        match includes(&text) {
            Ok(found) => {
                for include in found {
                    if let Err(why) = check_include(&path, &include) {
                        problems.push(format!("chapters/{rel}: {why}"));
                    }
                }
            }
            Err(why) => problems.push(format!("chapters/{rel}: {why}")),
        }
        for line in unmarked_rust_fences(&text) {
            problems.push(format!(
                "chapters/{rel}:{line}: mark the block ```rust,ignore so `mdbook test` skips it"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_lesson_has_a_chapter_and_every_chapter_is_in_the_summary() {
    let files = chapter_files();
    let links = summary_links();
    for lesson in LESSONS {
        assert!(
            files.contains(lesson.chapter),
            "{} has no chapters/{}",
            lesson.name,
            lesson.chapter
        );
        assert!(
            links.contains(lesson.chapter),
            "chapters/{} is not in SUMMARY.md",
            lesson.chapter
        );
    }
    for file in files.iter().filter(|f| f.as_str() != "SUMMARY.md") {
        assert!(links.contains(file), "chapters/{file} is not in SUMMARY.md");
    }
    for link in &links {
        assert!(
            files.contains(link),
            "SUMMARY.md links to chapters/{link}, which does not exist"
        );
    }
}

#[test]
fn the_book_builds_and_shows_the_lesson_code() {
    let mut book = mdbook_driver::MDBook::load(root().join("book"))
        .unwrap_or_else(|e| panic!("book/book.toml or chapters/ do not load: {e:#}"));
    assert!(
        !book.config.build.create_missing,
        "book.toml must set create-missing = false"
    );
    // Build beside the real output, so a running `mdbook serve` is not disturbed.
    let out = root().join("target").join("book-test");
    book.config.build.build_dir = out.clone();
    book.build()
        .unwrap_or_else(|e| panic!("the book does not build: {e:#}"));

    for lesson in LESSONS {
        let page = out.join(lesson.chapter.replace(".md", ".html"));
        let html = fs::read_to_string(&page)
            .unwrap_or_else(|e| panic!("{} was not rendered: {e}", page.display()));
        // The included code is there: the page shows `fn ` from the lesson's source.
        assert!(
            html.contains("<code class=\"language-rust"),
            "{}: no code",
            lesson.chapter
        );
        assert!(
            !html.contains("{{#include"),
            "{}: an include was left unexpanded",
            lesson.chapter
        );
    }
}

// The checker itself must catch what it claims to catch.
#[test]
fn the_checker_rejects_a_wrong_anchor_a_missing_file_and_line_numbers() {
    let chapter = chapters_dir().join("introduction.md");
    let wrong_anchor =
        &includes("{{#include ../src/bin/01_blocking.rs:no_such_anchor}}").unwrap()[0];
    assert!(check_include(&chapter, wrong_anchor).is_err());
    let missing = &includes("{{#include ../src/bin/99_missing.rs:serve}}").unwrap()[0];
    assert!(check_include(&chapter, missing).is_err());
    let good = &includes("{{#include ../src/bin/01_blocking.rs:serve}}").unwrap()[0];
    assert_eq!(check_include(&chapter, good), Ok(()));
    assert!(includes("{{#include ../src/bin/01_blocking.rs:10:20}}").is_err());
    assert_eq!(
        unmarked_rust_fences("```rust\nx\n```\n```rust,ignore\n```"),
        vec![1]
    );
}

#[test]
fn every_grader_check_is_explained_in_the_grading_appendix() {
    let text = fs::read_to_string(chapters_dir().join("grading.md")).unwrap();
    for check in uring_echo_tools::grader::CHECKS {
        let heading = format!("### `{}`", check.name);
        assert!(
            text.contains(&heading),
            "chapters/grading.md has no `{heading}` section"
        );
    }
}

/// The pages of one lesson: its chapter and the pages that continue it
/// (`03_epoll.md`, `03_epoll_hardening.md`).
fn lesson_pages(chapter: &str) -> Vec<String> {
    let stem = chapter.trim_end_matches(".md");
    chapter_files()
        .into_iter()
        .filter(|f| f.as_str() == chapter || f.starts_with(&format!("{stem}_")))
        .collect()
}

/// A page's section under `## HEADING`, up to the next `## `.
fn section<'a>(markdown: &'a str, heading: &str) -> Option<&'a str> {
    let start = markdown.find(&format!("\n## {heading}\n"))? + 1;
    let rest = &markdown[start + 3 + heading.len()..];
    Some(&rest[..rest.find("\n## ").unwrap_or(rest.len())])
}

/// A chapter's costs come from the repository's own measurements: every
/// lesson page with a "What it costs" section includes a table, a figure or
/// a chart from `chapters/data/` there, and every lesson has such a page.
#[test]
fn every_lesson_quotes_its_costs_from_committed_data() {
    let from_data = |text: &str| text.contains("{{#include data/") || text.contains("](data/");
    for lesson in LESSONS {
        let mut quoted = false;
        for page in lesson_pages(lesson.chapter) {
            let text = fs::read_to_string(chapters_dir().join(&page)).unwrap();
            if let Some(costs) = section(&text, "What it costs") {
                assert!(
                    from_data(costs),
                    "chapters/{page}: its \"What it costs\" quotes nothing from chapters/data/"
                );
                quoted = true;
            }
        }
        assert!(
            quoted,
            "{}: no page of chapters/{} has a \"What it costs\" section",
            lesson.name, lesson.chapter
        );
    }
}

/// Every folder of generated tables under `chapters/data/` sits beside the
/// data it was made from, which a test renders again and compares:
/// `ladder.json` (tests/ladder_data.rs), `chapters.json`
/// (tests/chapter_data.rs) or `resp.json` (tests/resp_data.rs).
#[test]
fn every_table_folder_has_the_data_a_test_renders_it_from() {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n == "tables") {
                    found.push(path.clone());
                }
                walk(&path, found);
            }
        }
    }
    let mut folders = Vec::new();
    walk(&chapters_dir().join("data"), &mut folders);
    assert!(folders.len() >= 5, "{folders:?}");
    for tables in folders {
        let dir = tables.parent().unwrap();
        assert!(
            ["ladder.json", "chapters.json", "resp.json"]
                .iter()
                .any(|f| dir.join(f).is_file()),
            "{} has no ladder.json, chapters.json or resp.json beside it",
            tables.display()
        );
    }
}
