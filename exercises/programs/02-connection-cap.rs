// The server of exercise 02-connection-cap, all of it but
// `todo::accept_loop`, which the file that includes this one defines: the
// starter, `exercises/02-connection-cap/starter.rs`, or the reference
// solution. It is lesson 02's server, a thread per connection, with a
// different option for a cap; what it shares with the other blocking
// exercise servers (the start, `accept`, `spawn`, `echo`) is in
// `exercises/common/blocking.rs`.

use std::process::ExitCode;

use clap::Parser;
use uring_echo_book::cli::CommonArgs;

// Each blocking exercise server uses some of these helpers, none all of
// them: the allow keeps the ones this one leaves out from being warned of.
#[allow(dead_code)]
#[path = "../common/blocking.rs"]
mod blocking;

use blocking::{accept, echo, spawn};

fn main() -> ExitCode {
    let args = Args::parse();
    blocking::run(args.common.addr, |listener| {
        todo::accept_loop(listener, args.max_conns)
    })
}

/// Lesson 02's thread-per-connection echo server, with a connection cap
/// (exercise 02-connection-cap).
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,

    /// Keep at most this many connections open (default: no cap). A client
    /// that connects while this many are open is closed at once.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    max_conns: Option<u64>,
}
