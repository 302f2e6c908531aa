#![cfg(target_os = "linux")]
//! Chapter 04's first program, `examples/04_hello_ring.rs`, really does what
//! the chapter says: one read through a ring, and a completion that brings
//! back our tag (user_data 42) and the number of bytes read.

use std::path::PathBuf;
use std::process::Command;

use uring_echo_tools::process::{built_after, example_path};

#[test]
fn hello_ring_reads_a_file_through_the_ring() {
    if let Err(why) = uring_echo_book::uring::available() {
        eprintln!("skipped: {why}");
        return;
    }
    let exe = example_path("04_hello_ring");
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/04_hello_ring.rs");
    if let Err(why) = built_after(&exe, &[source]) {
        let release = if cfg!(debug_assertions) {
            ""
        } else {
            " --release"
        };
        panic!(
            "{why}. Build it with `cargo build{release} --example 04_hello_ring`, or run \
             `cargo test{release}`, which builds every example before the tests \
             (`cargo test --test hello_ring` builds none)"
        );
    }
    let out = Command::new(&exe).output().expect("the example starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {}: {stderr}", out.status);

    // First line: our tag came back, and res is a byte count, not -errno.
    let first = stdout.lines().next().unwrap_or_default();
    let res: i32 = first
        .strip_prefix("user_data 42 res ")
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("first line is not `user_data 42 res N`: {first:?}"));
    assert!(res > 0, "the read failed or read nothing: res {res}");
    // And the bytes it printed are the file's.
    let version = std::fs::read_to_string("/proc/version").unwrap();
    let expected = &version.as_bytes()[..version.len().min(256).min(res as usize)];
    assert_eq!(
        stdout.lines().nth(1).unwrap_or_default().as_bytes(),
        expected.strip_suffix(b"\n").unwrap_or(expected),
        "the printed bytes are not /proc/version's"
    );
}
