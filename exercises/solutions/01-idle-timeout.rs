//! Exercise 01-idle-timeout, the reference solution.
//!
//! A read timeout on the socket (`SO_RCVTIMEO`, which `set_read_timeout`
//! sets) makes a blocked `read` give up after that long with an error. We
//! treat that error as the end of the session: the client was idle, we hang
//! up, and the accept loop moves on to the next client.
//!
//! ```text
//! cargo run --bin echo-check -- --exercise 01-idle-timeout --solution
//! ```

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use uring_echo_book::cli::CommonArgs;
use uring_echo_book::listen::{announce, bind_or_explain};
use uring_echo_book::signals::exit_on_signal;

/// Lesson 01's blocking echo server, with an idle timeout.
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

// ANCHOR: solution
fn accept_loop(listener: &TcpListener, idle_timeout: Duration) {
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                // Every read on this socket now waits at most `idle_timeout`.
                // It is a per-read limit, so a client that keeps talking is
                // never cut off: each read that gets bytes starts a new wait.
                if let Err(e) = stream.set_read_timeout(Some(idle_timeout)) {
                    eprintln!("{peer}: cannot set a read timeout: {e}");
                    continue;
                }
                eprintln!("{peer}: connected");
                match serve(stream) {
                    Ok(()) => eprintln!("{peer}: done"),
                    // A read that timed out fails with WouldBlock on Linux
                    // (EAGAIN, the same code as a nonblocking read with
                    // nothing to read) and TimedOut on Windows. Dropping the
                    // stream closes it: the client sees end of file.
                    Err(e) if is_timeout(&e) => {
                        eprintln!("{peer}: idle for {idle_timeout:?}, hung up")
                    }
                    Err(e) => eprintln!("{peer}: {e}"),
                }
            }
            Err(e) => eprintln!("accept failed: {e}"),
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
// ANCHOR_END: solution

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
