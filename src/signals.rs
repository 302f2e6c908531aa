//! SIGINT/SIGTERM for the blocking lessons.
//!
//! A blocking server spends its life inside `accept` or `read`, where it cannot
//! also watch for a signal. So 01 and 02 hand the job to this helper: a
//! separate thread waits for Ctrl-C (SIGINT) or `kill` (SIGTERM), says so on
//! stderr and ends the process with status 0. The kernel then closes every
//! socket the process held, which each peer sees as the end of its stream.
//! From lesson 03 on, a signal is one more event of the lesson's own loop.

use std::io;
use std::process;

/// Installs the handler. Call it once, early in `main`.
pub fn exit_on_signal() -> io::Result<()> {
    ctrlc::set_handler(|| {
        eprintln!("signal received: closing every connection and exiting");
        process::exit(0);
    })
    .map_err(io::Error::other)
}
