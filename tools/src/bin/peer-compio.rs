//! peer-compio — the echo server a Rust user would write with compio.
//!
//! Not a lesson: a comparison line, like `peer-tokio`. compio is a
//! completion-based runtime; on Linux its driver is io_uring. As in monoio,
//! a read or a write takes its buffer by value and gives it back with the
//! result (`BufResult(result, buffer)`), because the kernel owns the buffer
//! while the operation runs. This is the plain echo loop of compio's
//! `TcpListener` and `TcpStream`: a task per connection that reads into a
//! buffer and writes all of it back, until EOF, on one thread.
//! `peer-compio-multishot` is the same server with compio's multishot
//! receive and buffer pool.
//!
//! Built with compio's io_uring driver alone (no `polling` feature): on a
//! kernel or in a container without io_uring it says so in one line and
//! exits non-zero, instead of quietly becoming a poll server.
//!
//! It keeps the lessons' conventions so the tests, the grader and the
//! benchmarks can start it like any lesson: `--addr` (port 0 for any free
//! port), one line `listening on ADDR` on stdout, SIGINT/SIGTERM to exit 0.
//!
//! ```text
//! cargo run --release --bin peer-compio
//! cargo run --bin echo-check -- 127.0.0.1:7878
//! ```

use std::process::ExitCode;

use clap::Parser;
use uring_echo_book::cli::CommonArgs;

/// The plain compio echo server (io_uring driver, one thread): a peer the
/// lessons are compared with.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
}

#[cfg(not(target_os = "linux"))]
fn main() -> ExitCode {
    let _ = Args::parse();
    eprintln!("error: peer-compio needs Linux (io_uring); peer-tokio runs on any OS");
    ExitCode::FAILURE
}

#[cfg(target_os = "linux")]
fn main() -> ExitCode {
    let args = Args::parse();
    uring_echo_book::limits::raise_open_file_limit_or_warn();
    match linux::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io;
    use std::time::Duration;

    use compio::BufResult;
    use compio::io::{AsyncRead, AsyncWriteExt};
    use compio::net::{TcpListener, TcpStream};
    use compio::runtime::Runtime;
    use uring_echo_book::listen::{announce, bind_hint, bind_listener};
    use uring_echo_tools::peer::explain_uring_error;

    use super::Args;

    pub fn run(args: Args) -> Result<(), String> {
        let runtime = Runtime::new().map_err(|e| explain_uring_error("compio", &e))?;
        // compio's own signal futures (the `signal` feature) would need a
        // select between them and `accept`; the library's `ctrlc` thread
        // does the same job: SIGINT or SIGTERM ends the process with status
        // 0, and the kernel closes every connection.
        uring_echo_book::signals::exit_on_signal()
            .map_err(|e| format!("cannot watch SIGINT/SIGTERM: {e}"))?;
        runtime.block_on(serve(args))
    }

    async fn serve(args: Args) -> Result<(), String> {
        let addr = args.common.addr;
        // The same listening socket as the lessons' (SO_REUSEADDR,
        // TCP_NODELAY, a deep backlog), handed to compio, inside the
        // runtime, which the socket is attached to.
        let listener = bind_listener(addr)
            .and_then(TcpListener::from_std)
            .map_err(|e| format!("cannot listen on {addr}: {e} ({})", bind_hint(&e)))?;
        let local = listener
            .local_addr()
            .map_err(|e| format!("cannot read the listening address: {e}"))?;
        announce(local);

        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    compio::runtime::spawn(async move {
                        if let Err(e) = echo(stream).await {
                            eprintln!("{peer}: {e}");
                        }
                    })
                    // A task runs to its end without anyone awaiting it.
                    .detach();
                }
                Err(e) => {
                    eprintln!("accept failed: {e}");
                    // Out of descriptors: retrying at once would fail at
                    // once. Give the connections a moment to close.
                    compio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// One connection: read what came, write all of it back, until EOF.
    async fn echo(mut stream: TcpStream) -> io::Result<()> {
        // 4 KiB, as in peer-tokio and the lessons. The buffer travels: it is
        // lent to each read and each write and comes back with the result.
        let mut buf = Vec::with_capacity(4096);
        loop {
            // A read writes from the start of the buffer and sets its
            // length to the count read only when that is longer than what
            // the buffer held: hence the `clear` after each echo, or a
            // short read would send stale bytes from a longer one.
            let BufResult(read, lent) = stream.read(buf).await;
            buf = lent;
            if read? == 0 {
                return Ok(());
            }
            let BufResult(written, lent) = stream.write_all(buf).await;
            buf = lent;
            written?;
            buf.clear();
        }
    }
}
