//! The peers the lessons are compared with, held to every grader check: a
//! benchmark against a peer that fails one would compare a correct server
//! with a broken one.
//!
//! The tools' own tests grade only the tools' own servers, never a lesson:
//! Cargo builds this package's binaries before these tests run, and it
//! builds no lesson for them, so a lesson here could be a stale one
//! (`cargo test -p uring-echo-tools`). Being an integration test, this file
//! also makes `cargo test` from the repository root build the tools'
//! binaries (`echo-check`, `echo-bench`, the peers), which the lessons'
//! tests run through `process::tool_path`.

use uring_echo_tools::PEERS;
use uring_echo_tools::grader::{self, CHECKS};
use uring_echo_tools::process::{ServerProcess, tool_path};

#[test]
fn every_peer_passes_every_check() {
    uring_echo_book::limits::raise_open_file_limit_or_warn();
    let checks: Vec<_> = CHECKS.iter().collect();
    for peer in PEERS {
        let server = ServerProcess::start(tool_path(peer.name), &["--addr", "127.0.0.1:0"])
            .unwrap_or_else(|e| panic!("{} did not start: {e}", peer.name));
        let report = grader::grade(server.addr(), peer.name, &checks, None, |_| {});
        let failed = report.not_passed();
        assert!(failed.is_empty(), "{}: {failed:#?}", peer.name);
    }
}
