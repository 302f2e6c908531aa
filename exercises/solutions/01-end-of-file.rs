//! Exercise 01-end-of-file, the reference solution.
//!
//! `read` returns 0 when the peer has closed its side: there will never be
//! more bytes. The starter treated that 0 as a message of zero bytes, echoed
//! nothing, and read again, which returned 0 again at once: a busy loop on a
//! dead connection that never went back to `accept`.
//!
//! ```text
//! cargo run --bin echo-check -- --exercise 01-end-of-file --solution
//! ```

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;

use clap::Parser;
use uring_echo_book::cli::CommonArgs;
use uring_echo_book::listen::{announce, bind_or_explain};
use uring_echo_book::signals::exit_on_signal;

/// Lesson 01's blocking echo server, the bug fixed.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = exit_on_signal() {
        eprintln!("error: cannot install the SIGINT/SIGTERM handler: {e}");
        return ExitCode::FAILURE;
    }
    let listener = match bind_or_explain(args.common.addr) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match listener.local_addr() {
        Ok(addr) => announce(addr),
        Err(e) => {
            eprintln!("error: cannot read the listening address: {e}");
            return ExitCode::FAILURE;
        }
    }
    accept_loop(&listener);
    ExitCode::SUCCESS
}

fn accept_loop(listener: &TcpListener) {
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                eprintln!("{peer}: connected");
                match serve(stream) {
                    Ok(()) => eprintln!("{peer}: done"),
                    Err(e) => eprintln!("{peer}: {e}"),
                }
            }
            Err(e) => eprintln!("accept failed: {e}"),
        }
    }
}

// ANCHOR: solution
fn serve(mut stream: TcpStream) -> io::Result<()> {
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf)?;
        // Zero bytes is not an empty message: it is the end of the stream.
        // The peer has closed its side, and every later read returns 0 at
        // once, so looping on would spin forever on a finished client.
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n])?;
    }
}
// ANCHOR_END: solution
