//! The plumbing the lessons share and none of them teaches.
//!
//! The lessons live in `src/bin/` and each one reads top to bottom on its
//! own. What is here is deliberately boring: parsing `--addr`, binding the
//! listener and printing the one `listening on ADDR` line, raising the
//! open-file limit, SIGINT for the blocking lessons, counting allocations,
//! and setting up an io_uring or saying plainly why it cannot be had. A
//! lesson's own system calls never hide in here.
//!
//! The grader, the load generator, the ladder runner, the peers and the
//! lesson list are in the workspace member `tools/` (`uring-echo-tools`),
//! which depends on this library; nothing here depends on them.

pub mod alloc_count;
pub mod cli;
pub mod limits;
pub mod listen;
pub mod signals;
#[cfg(target_os = "linux")]
pub mod uring;
