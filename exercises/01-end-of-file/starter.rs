//! Exercise 01-end-of-file: the client that left.
//!
//! This is lesson 01's server with one line changed, the way it is often
//! written from memory. It answers the first client perfectly. Then nobody
//! else is ever served, and one CPU runs at 100%.
//!
//! Run it, and grade it:
//!
//! ```text
//! cargo run --example 01-end-of-file                       # listens on 127.0.0.1:7878
//! cargo run --bin echo-check -- --exercise 01-end-of-file  # builds, starts and grades it
//! ```
//!
//! The statement is `exercises/01-end-of-file/README.md`.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;

use clap::Parser;
use uring_echo_book::cli::CommonArgs;
use uring_echo_book::listen::{announce, bind_or_explain};
use uring_echo_book::signals::exit_on_signal;

/// Lesson 01's blocking echo server, with a bug to find.
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
    // `bind_listener` does what lesson 01 spells out: socket, SO_REUSEADDR,
    // TCP_NODELAY, bind, listen.
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

/// One client at a time, from connect to close, as in lesson 01.
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

// ANCHOR: todo
/// Echoes everything the client sends until the client is done.
fn serve(mut stream: TcpStream) -> io::Result<()> {
    let mut buf = [0u8; 4096];
    loop {
        // TODO: once the first client hangs up, this loop never lets the
        // server serve anyone else. Find out why (`strace -p PID` shows it
        // in a second), then fix it here.
        let n = stream.read(&mut buf)?;
        stream.write_all(&buf[..n])?;
    }
}
// ANCHOR_END: todo
