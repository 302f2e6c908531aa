//! Exercise 01-idle-timeout: an idle client must not hold the server forever.
//!
//! Lesson 01 serves one client at a time, so a client that connects and then
//! says nothing keeps everyone else waiting, for ever. This starter is lesson
//! 01's server with a `--idle-timeout SECS` option that does nothing yet.
//!
//! ```text
//! cargo run --example 01-idle-timeout -- --idle-timeout 1
//! cargo run --bin echo-check -- --exercise 01-idle-timeout
//! ```
//!
//! The statement is `exercises/01-idle-timeout/README.md`.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use uring_echo_book::cli::CommonArgs;
use uring_echo_book::listen::{announce, bind_or_explain};
use uring_echo_book::signals::exit_on_signal;

/// Lesson 01's blocking echo server, with an idle timeout to add.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,

    /// Hang up on a client that has sent nothing for this many seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout: u64,
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
    let idle_timeout = Duration::from_secs(args.idle_timeout);
    eprintln!("idle timeout: {idle_timeout:?}");
    accept_loop(&listener, idle_timeout);
    ExitCode::SUCCESS
}

// ANCHOR: todo
/// One client at a time, from connect to close, as in lesson 01.
fn accept_loop(listener: &TcpListener, idle_timeout: Duration) {
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                // TODO: a client that has sent nothing for `idle_timeout` must
                // be hung up on, so that the next client gets its turn; and
                // that is a normal end of a session, not an error to report.
                eprintln!("{peer}: connected (idle timeout {idle_timeout:?}, not enforced yet)");
                match serve(stream) {
                    Ok(()) => eprintln!("{peer}: done"),
                    Err(e) => eprintln!("{peer}: {e}"),
                }
            }
            Err(e) => eprintln!("accept failed: {e}"),
        }
    }
}
// ANCHOR_END: todo

/// Echoes everything the client sends until it hangs up.
fn serve(mut stream: TcpStream) -> io::Result<()> {
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n])?;
    }
}
