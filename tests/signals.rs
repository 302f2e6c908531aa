//! SIGINT while 128 clients are streaming: every lesson must exit at once,
//! with status 0, its port free for a restart, and every client must see
//! its connection end (EOF or a reset) after nothing but right bytes. The
//! case itself is in `tests/common/sigint.rs`, because the long soak
//! (`tests/soak/`) runs it too.
#![cfg(target_os = "linux")]

mod common;

use uring_echo_tools::lessons;

use common::sigint::sigint_with_clients_streaming;

#[test]
fn sigint_mid_transfer() {
    uring_echo_book::limits::raise_open_file_limit_or_warn();
    let mut failures = Vec::new();
    for lesson in lessons::runnable() {
        match sigint_with_clients_streaming(lesson) {
            Ok(summary) => eprintln!("{}: {summary}", lesson.name),
            Err(e) => failures.push(format!("{}: {e}", lesson.name)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
