//! The book builds with the mdbook CLI the README installs
//! (`cargo install mdbook --locked --version 0.5.4`), with no warning and no
//! error on its output (an include of a file that is not there says `ERROR`
//! and `WARN`; mdbook 0.5.4 is silent about a missing anchor or a broken
//! link, which `tests/book.rs` and the browser test catch). `tests/book.rs`
//! builds it through the same engine as a library; this test runs the
//! program a reader runs. It skips, saying why, where
//! `mdbook` is not installed or is another version (`.ci/run` installs it).

use std::path::Path;
use std::process::Command;

const VERSION: &str = "v0.5.4";

#[test]
fn the_mdbook_cli_builds_the_book_without_a_warning() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let version = match Command::new("mdbook").arg("--version").output() {
        Ok(out) => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        Err(e) => {
            eprintln!(
                "skipped: no mdbook here ({e}); `cargo install mdbook --locked --version 0.5.4`"
            );
            return;
        }
    };
    if !version.contains(VERSION) {
        eprintln!(
            "skipped: this test wants mdbook {VERSION}, and `mdbook --version` says {version}"
        );
        return;
    }
    let out_dir = root.join("target").join("book-cli-test");
    let _ = std::fs::remove_dir_all(&out_dir);
    let out = Command::new("mdbook")
        .arg("build")
        .arg(root.join("book"))
        .arg("-d")
        .arg(&out_dir)
        .output()
        .expect("mdbook runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "mdbook build failed:\n{stderr}{stdout}"
    );
    let complaints: Vec<&str> = stderr
        .lines()
        .chain(stdout.lines())
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    assert!(
        complaints.is_empty(),
        "mdbook build warned:\n{}",
        complaints.join("\n")
    );
    assert!(
        out_dir.join("05_uring_multishot.html").exists(),
        "the build wrote no page for lesson 05 into {}",
        out_dir.display()
    );
}
