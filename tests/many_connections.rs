//! 10,000 clients held open at once, each answered while the others stay
//! connected; then all of them reset, and every descriptor must come back.
//! Skipped, with the number it needs, where the open-file hard limit is too
//! low. The case itself is in `tests/common/many.rs`, because the long soak
//! (`tests/soak/`) runs it too.
#![cfg(target_os = "linux")]

mod common;

use uring_echo_tools::lessons;

use common::many::{enough_descriptors, ten_thousand};

#[test]
fn ten_thousand_connections() {
    if let Err(why) = enough_descriptors() {
        eprintln!("skipped: 10,000 connections: {why}");
        return;
    }
    let mut failures = Vec::new();
    for lesson in lessons::runnable() {
        if let Some(e) = lesson.expected_failure("idle") {
            eprintln!("skipped: {}: 10,000 connections ({})", lesson.name, e.why);
            continue;
        }
        match ten_thousand(lesson) {
            Ok(summary) => eprintln!("{}: {summary}", lesson.name),
            Err(e) => failures.push(format!("{}: {e}", lesson.name)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
