// The server of exercise 01-end-of-file, all of it but `todo::serve`, which
// the file that includes this one defines: the starter,
// `exercises/01-end-of-file/starter.rs`, or the reference solution. It is
// lesson 01's blocking server; the pieces it shares with the other blocking
// exercise servers are in `exercises/common/blocking.rs`.

use std::process::ExitCode;

use clap::Parser;

// Each blocking exercise server uses some of these helpers, none all of
// them: the allow keeps the ones this one leaves out from being warned of.
#[allow(dead_code)]
#[path = "../common/blocking.rs"]
mod blocking;

fn main() -> ExitCode {
    let args = blocking::AddrOnly::parse();
    // One client at a time, from connect to close, as in lesson 01; each
    // one served by `todo::serve`.
    blocking::run(args.common.addr, |listener| {
        blocking::one_at_a_time(listener, todo::serve)
    })
}
