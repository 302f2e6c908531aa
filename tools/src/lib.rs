//! The tools of uring-echo-book: everything that grades, loads, measures or
//! compares the lessons, kept apart from the lessons' own library so that a
//! lesson builds without any of it.
//!
//! - [`lessons`]: the lesson list, with each lesson's expectations table;
//! - [`grader`]: the checks behind `echo-check`;
//! - [`loadgen`]: the load generator behind `echo-bench`;
//! - [`ladder`]: the runner behind `echo-ladder`;
//! - [`chapter_data`]: the chapter experiments behind `chapter-data`;
//! - [`exercises`]: the exercise registry behind `echo-check --exercise`;
//! - `peer` (Linux): the one-line error the io_uring peers print when
//!   their runtime cannot start;
//! - [`resp`]: a RESP client, the RESP check set, and the real Redis
//!   tools, for the lessons that speak RESP (07);
//! - [`client`], [`pattern`], [`process`]: test clients, the byte pattern
//!   they send and check, and starting a server as a child process.

pub mod chapter_data;
pub mod client;
pub mod exercises;
pub mod grader;
pub mod ladder;
pub mod lessons;
pub mod loadgen;
pub mod pattern;
#[cfg(target_os = "linux")]
pub mod peer;
pub mod process;
pub mod resp;
pub mod resp_checks;
pub mod resp_ladder;

pub use lessons::{Expected, LESSONS, Lesson, PEERS, Peer, Protocol};

/// The workspace's root folder, where the lessons' `Cargo.toml`, `chapters/`
/// and `exercises/` are: the parent of this crate's folder, found at compile
/// time, so the tools find them from any working directory.
pub fn workspace_root() -> std::path::PathBuf {
    let tools = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    tools.parent().unwrap_or(tools).to_path_buf()
}
