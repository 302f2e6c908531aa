//! The book as a reader sees it: built, served over HTTP, and opened page by
//! page in headless Chromium, driven by `tests/browser/check.mjs` (Node and
//! playwright-core). No page may show a console error, a broken image or an
//! empty code block, no link inside the book may lead nowhere, and the
//! search must find `ENOBUFS`. Screenshots of a few pages are kept in
//! `target/browser-screenshots/` for a person to look at.
//!
//! `.ci/run` installs what it needs (Debian's `chromium`, and
//! `npm ci --prefix tests/browser`). On a laptop without them the test
//! prints why it skipped and passes.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::{fs, thread};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What is missing for this test to run here, if anything.
fn missing(chromium: &Path) -> Option<String> {
    if Command::new("node").arg("--version").output().is_err() {
        return Some("no `node` on this machine".into());
    }
    if !chromium.exists() {
        return Some(format!(
            "no Chromium at {} (apt-get install chromium, or set CHROMIUM)",
            chromium.display()
        ));
    }
    let driver = root().join("tests/browser/node_modules/playwright-core");
    if !driver.exists() {
        return Some("playwright-core is not installed (npm ci --prefix tests/browser)".into());
    }
    None
}

/// Serves the files under `dir` on a free port of 127.0.0.1, one thread
/// per connection, for as long as the test runs. Returns the base URL.
fn serve(dir: PathBuf) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let base = format!("http://{}", listener.local_addr().unwrap());
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let dir = dir.clone();
            thread::spawn(move || {
                let _ = answer(stream, &dir);
            });
        }
    });
    base
}

/// Answers one request: GET of a file under `dir`, or 404.
fn answer(mut stream: TcpStream, dir: &Path) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // Read the headers through the blank line; we need none of them.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let target = request.split_whitespace().nth(1).unwrap_or("/");
    let path = target.split(['?', '#']).next().unwrap_or("/");
    let path = if path.ends_with('/') {
        format!("{path}index.html")
    } else {
        path.to_string()
    };
    let file = dir.join(path.trim_start_matches('/'));
    let inside = !path.contains("..");
    match fs::read(&file) {
        Ok(body) if inside => {
            let kind = match file.extension().and_then(|e| e.to_str()) {
                Some("html") => "text/html; charset=utf-8",
                Some("js") => "text/javascript",
                Some("css") => "text/css",
                Some("svg") => "image/svg+xml",
                Some("png") => "image/png",
                Some("json") => "application/json",
                Some("woff2") => "font/woff2",
                Some("woff") => "font/woff",
                Some("ttf") => "font/ttf",
                _ => "application/octet-stream",
            };
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n",
                body.len()
            )?;
            stream.write_all(&body)
        }
        _ => stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    }
}

/// Debian's Chromium, or the one `CHROMIUM` names.
fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Runs `check.mjs` over `pages` served at `base`: whether it found
/// nothing wrong, and what it printed.
fn check(base: &str, shots: &Path, chromium: &Path, pages: &[String]) -> (bool, String) {
    let output = Command::new("node")
        .arg(root().join("tests/browser/check.mjs"))
        .arg(base)
        .arg(shots)
        .arg(chromium)
        .args(pages)
        .output()
        .expect("node runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), report)
}

#[test]
fn every_page_renders_in_a_real_browser() {
    let chromium = chromium();
    if let Some(why) = missing(&chromium) {
        eprintln!("skipped: {why}");
        return;
    }
    let mut book = mdbook_driver::MDBook::load(root().join("book"))
        .unwrap_or_else(|e| panic!("the book does not load: {e:#}"));
    let out = root().join("target").join("book-browser");
    book.config.build.build_dir = out.clone();
    book.build()
        .unwrap_or_else(|e| panic!("the book does not build: {e:#}"));

    // Every page at the top of the book, but the table-of-contents frame.
    let mut pages: Vec<String> = fs::read_dir(&out)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".html") && n != "toc.html")
        .collect();
    pages.sort();
    assert!(
        pages.iter().any(|p| p == "05_uring_multishot.html"),
        "the lessons were rendered: {pages:?}"
    );

    let shots = root().join("target").join("browser-screenshots");
    fs::create_dir_all(&shots).unwrap();
    let base = serve(out);
    let (clean, report) = check(&base, &shots, &chromium, &pages);
    eprintln!("{report}");
    assert!(clean, "the browser found problems:\n{report}");
    assert!(
        shots.join("search-ENOBUFS.png").exists(),
        "a screenshot of the search was kept"
    );
}

/// The check itself must catch what it claims to: a page with a broken
/// image and a dead link, served the same way, is reported with both.
#[test]
fn the_browser_check_catches_a_broken_image_and_a_dead_link() {
    let chromium = chromium();
    if let Some(why) = missing(&chromium) {
        eprintln!("skipped: {why}");
        return;
    }
    let dir = root().join("target").join("browser-broken");
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        dir.join("broken.html"),
        "<!doctype html><html><body><main>\
         <img src=\"missing.svg\" alt=\"a chart\"><a href=\"nowhere.html\">next</a>\
         <pre><code>fn main() {}</code></pre></main></body></html>",
    )
    .unwrap();
    let shots = dir.join("shots");
    fs::create_dir_all(&shots).unwrap();
    let base = serve(dir);
    let (clean, report) = check(&base, &shots, &chromium, &["broken.html".to_string()]);
    assert!(!clean, "{report}");
    assert!(
        report.contains("broken.html: image did not load: missing.svg"),
        "{report}"
    );
    assert!(report.contains("nowhere.html answered 404"), "{report}");
}
