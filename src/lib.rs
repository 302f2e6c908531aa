//! The plumbing every lesson shares and none of them teaches.
//!
//! The lessons live in `src/bin/NN_name.rs` and each one reads top to bottom on
//! its own. What is here is deliberately boring: parsing `--addr`, printing the
//! one `listening on ADDR` line, raising the open-file limit, the list of
//! lessons, and starting a server as a child process for the tests and benches.
//! A lesson's own system calls never hide in here.

pub mod alloc_count;
pub mod cli;
pub mod client;
pub mod exercises;
pub mod grader;
pub mod ladder;
pub mod lessons;
pub mod limits;
pub mod listen;
pub mod loadgen;
pub mod pattern;
pub mod process;
pub mod signals;
#[cfg(target_os = "linux")]
pub mod uring;

pub use lessons::{Expected, LESSONS, Lesson, PEERS, Peer};
