//! peer-monoio — the echo server a Rust user would write with monoio.
//!
//! Not a lesson: a comparison line, like `peer-tokio`. monoio is a
//! thread-per-core runtime whose driver is io_uring: every read and write
//! is a request on a ring, and a buffer is *given* to the runtime for the
//! operation and handed back with its result (`(result, buffer)`), because
//! the kernel may write into it after the future that asked was dropped.
//! This is the plain echo loop its users write: a task per connection that
//! reads into a buffer and writes all of it back, until EOF. One thread,
//! one ring, as in the lessons.
//!
//! Built with monoio's io_uring driver alone (no `legacy` feature): on a
//! kernel or in a container without io_uring it says so in one line and
//! exits non-zero, instead of quietly becoming an epoll server.
//!
//! It keeps the lessons' conventions so the tests, the grader and the
//! benchmarks can start it like any lesson: `--addr` (port 0 for any free
//! port), one line `listening on ADDR` on stdout, SIGINT/SIGTERM to exit 0.
//!
//! ```text
//! cargo run --release --bin peer-monoio
//! cargo run --bin echo-check -- 127.0.0.1:7878
//! ```

use std::process::ExitCode;

use clap::Parser;
use uring_echo_book::cli::CommonArgs;

/// The plain monoio echo server (io_uring driver, one thread): a peer the
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
    eprintln!("error: peer-monoio needs Linux (io_uring); peer-tokio runs on any OS");
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

    use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
    use monoio::net::{TcpListener, TcpStream};
    use monoio::{IoUringDriver, RuntimeBuilder};
    use uring_echo_book::listen::{announce, bind_hint, bind_listener};
    use uring_echo_tools::peer::explain_uring_error;

    use super::Args;

    pub fn run(args: Args) -> Result<(), String> {
        // The timer only serves the pause after a failed accept (below).
        let mut runtime = RuntimeBuilder::<IoUringDriver>::new()
            .enable_timer()
            .build()
            .map_err(|e| explain_uring_error("monoio", &e))?;
        // monoio has no signal handling without its `signal` feature, which
        // is the same `ctrlc` thread as the library's helper: SIGINT or
        // SIGTERM ends the process with status 0, and the kernel closes
        // every connection.
        uring_echo_book::signals::exit_on_signal()
            .map_err(|e| format!("cannot watch SIGINT/SIGTERM: {e}"))?;
        runtime.block_on(serve(args))
    }

    async fn serve(args: Args) -> Result<(), String> {
        let addr = args.common.addr;
        // The same listening socket as the lessons' (SO_REUSEADDR,
        // TCP_NODELAY, a deep backlog), handed to monoio. This must happen
        // inside the runtime: monoio ties the socket to the current ring.
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
                    monoio::spawn(async move {
                        if let Err(e) = echo(stream).await {
                            eprintln!("{peer}: {e}");
                        }
                    });
                }
                Err(e) => {
                    eprintln!("accept failed: {e}");
                    // Out of descriptors: retrying at once would fail at
                    // once. Give the connections a moment to close.
                    monoio::time::sleep(Duration::from_millis(100)).await;
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
            let (read, lent) = stream.read(buf).await;
            buf = lent;
            if read? == 0 {
                return Ok(());
            }
            let (written, lent) = stream.write_all(buf).await;
            buf = lent;
            written?;
            buf.clear();
        }
    }
}
