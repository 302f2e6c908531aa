//! peer-tokio — the echo server a Rust user would write instead.
//!
//! Not a lesson: the comparison line in every benchmark. This is the
//! canonical tokio echo server, the one tokio's own examples show: a task per
//! connection that reads into a buffer and writes it all back. It runs on the
//! current-thread runtime, so like the lessons it uses one core, and the
//! comparison is between designs, not between numbers of threads.
//!
//! It keeps the lessons' conventions so the tests, the grader and the
//! benchmarks can start it like any lesson: `--addr` (port 0 for any free
//! port), one line `listening on ADDR` on stdout, SIGINT/SIGTERM to exit 0.
//!
//! ```text
//! cargo run --release --bin peer-tokio
//! cargo run --bin echo-check -- 127.0.0.1:7878
//! ```

use std::io;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use uring_echo_book::cli::CommonArgs;
use uring_echo_book::listen::{announce, bind_hint, bind_listener};

/// The canonical tokio echo server (current-thread runtime): the peer the
/// lessons are compared with.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    uring_echo_book::limits::raise_open_file_limit_or_warn();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> Result<(), String> {
    let addr = args.common.addr;
    // The same listening socket as the lessons' (SO_REUSEADDR, TCP_NODELAY,
    // a deep backlog), handed to tokio.
    let listener = bind_listener(addr)
        .and_then(|l| {
            l.set_nonblocking(true)?;
            TcpListener::from_std(l)
        })
        .map_err(|e| format!("cannot listen on {addr}: {e} ({})", bind_hint(&e)))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    announce(local);

    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| format!("cannot watch SIGINT: {e}"))?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("cannot watch SIGTERM: {e}"))?;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tokio::spawn(async move {
                        if let Err(e) = echo(stream).await {
                            eprintln!("{peer}: {e}");
                        }
                    });
                }
                Err(e) => {
                    eprintln!("accept failed: {e}");
                    // Out of descriptors: retrying at once would fail at
                    // once. Give the connections a moment to close.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
        }
    }
    // Dropping the runtime when `main` returns closes every connection.
    eprintln!("signal received: closing every connection");
    Ok(())
}

/// One connection: read what came, write all of it back, until EOF.
async fn echo(mut stream: TcpStream) -> io::Result<()> {
    let mut buf = vec![0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n]).await?;
    }
}
