// The server of exercise 03-partial-writes, all of it but the `todo`
// region (`Conn` and `on_ready`), which the file that includes this one
// defines: the starter, `exercises/03-partial-writes/starter.rs`, or the
// reference solution. It is lesson 03 made small, in
// `exercises/common/epoll.rs`, which chapter 03's other exercise server
// shares: one thread, nonblocking sockets, a level-triggered epoll loop.

use std::process::ExitCode;

use clap::Parser;
#[cfg(target_os = "linux")]
use nix::sys::epoll::EpollTimeout;
use uring_echo_book::cli::CommonArgs;

#[cfg(target_os = "linux")]
#[path = "../common/epoll.rs"]
mod epoll;

// The connection, and serving one of its events: the exercise's region.
#[cfg(target_os = "linux")]
use todo::{Conn, on_ready};

/// A small level-triggered epoll echo server (exercise 03-partial-writes;
/// Linux).
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
}

#[cfg(target_os = "linux")]
fn main() -> ExitCode {
    let args = Args::parse();
    // The event loop: sleep until something is ready, serve it, again.
    epoll::run(args.common.addr, |server| {
        loop {
            server.turn(EpollTimeout::NONE)?;
        }
    })
}

// Elsewhere, the server says what it needs, and stops.
#[cfg(not(target_os = "linux"))]
fn main() -> ExitCode {
    let _ = Args::parse();
    eprintln!("error: this exercise needs Linux (epoll)");
    ExitCode::FAILURE
}
