//! Exercise 02-connection-cap: a cap on connections.
//!
//! This is lesson 02's server, a thread per connection, with a new option,
//! `--max-conns N`, that does nothing yet. The goal: while N connections are
//! open, a new one is closed at once, so its client knows right away instead
//! of waiting; and a connection that ends, however it ends, frees its place.
//!
//! Lesson 02's `--max-threads` caps differently: it stops calling `accept`,
//! and the clients beyond the cap wait in the kernel's accept queue, for as
//! long as it takes. Here they are turned away, the way a server with a fixed
//! table of connections has to.
//!
//! Run it, and grade it:
//!
//! ```text
//! cargo run --example 02-connection-cap -- --max-conns 2      # listens on 127.0.0.1:7878
//! cargo run --bin echo-check -- --exercise 02-connection-cap  # builds, starts and grades it
//! ```
//!
//! The statement is `exercises/02-connection-cap/README.md`.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use clap::Parser;
use uring_echo_book::cli::CommonArgs;
use uring_echo_book::limits::raise_open_file_limit_or_warn;
use uring_echo_book::listen::{announce, bind_or_explain};
use uring_echo_book::signals::exit_on_signal;

/// Lesson 02's thread-per-connection echo server, with a connection cap to add.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,

    /// Keep at most this many connections open (default: no cap). A client
    /// that connects while this many are open is closed at once.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    max_conns: Option<u64>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    raise_open_file_limit_or_warn();
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
    accept_loop(&listener, args.max_conns);
    ExitCode::SUCCESS
}

// ANCHOR: todo
/// Accepts clients forever and hands each one to a thread of its own.
fn accept_loop(listener: &TcpListener, max_conns: Option<u64>) {
    match max_conns {
        Some(cap) => eprintln!("connection cap: {cap} (--max-conns)"),
        None => eprintln!("no connection cap"),
    }
    // TODO: the cap is printed and nothing else: with `--max-conns 4`, a
    // fifth, a tenth, a thousandth client are all served. Make the cap true,
    // and make sure every connection that ends frees its place, however it
    // ends.
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                // `Builder::spawn` returns an error where `thread::spawn`
                // would panic; dropping the closure then closes this one
                // socket and nothing else.
                let spawned = thread::Builder::new().spawn(move || match serve(stream) {
                    Ok(()) => eprintln!("{peer}: done"),
                    Err(e) => eprintln!("{peer}: {e}"),
                });
                if let Err(e) = spawned {
                    eprintln!("{peer}: cannot start a thread ({e}); closing this connection");
                }
            }
            Err(e) => {
                eprintln!("accept failed: {e}");
                if is_out_of_descriptors(&e) {
                    // EMFILE/ENFILE: accepting again at once fails the same
                    // way; give the connection threads time to close some.
                    thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
}
// ANCHOR_END: todo

/// EMFILE (this process) or ENFILE (the whole system) ran out of descriptors.
fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(23 | 24)) // ENFILE, EMFILE
}

/// Echoes one client's bytes back until it closes its side: lesson 02's loop.
fn serve(mut stream: TcpStream) -> io::Result<()> {
    let mut buf = [0u8; 4096];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        stream.write_all(&buf[..n])?;
    }
}
