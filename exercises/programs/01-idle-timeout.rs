// The server of exercise 01-idle-timeout, all of it but `todo::serve`,
// which the file that includes this one defines: the starter,
// `exercises/01-idle-timeout/starter.rs`, or the reference solution. It is
// lesson 01's blocking server with one more option; the pieces it shares
// with the other blocking exercise servers are in
// `exercises/common/blocking.rs`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use uring_echo_book::cli::CommonArgs;

// Each blocking exercise server uses some of these helpers, none all of
// them: the allow keeps the ones this one leaves out from being warned of.
#[allow(dead_code)]
#[path = "../common/blocking.rs"]
mod blocking;

use blocking::echo;

fn main() -> ExitCode {
    let args = Args::parse();
    let idle_timeout = Duration::from_secs(args.idle_timeout);
    eprintln!("idle timeout: {idle_timeout:?}");
    // One client at a time, from connect to close, as in lesson 01; each
    // one served by `todo::serve`, which `echo`es its bytes.
    blocking::run(args.common.addr, |listener| {
        blocking::one_at_a_time(listener, |stream| todo::serve(stream, idle_timeout))
    })
}

/// Lesson 01's blocking echo server, with an idle timeout (exercise
/// 01-idle-timeout).
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,

    /// Hang up on a client that has sent nothing for this many seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout: u64,
}
