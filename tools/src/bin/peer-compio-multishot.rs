//! peer-compio-multishot — compio's echo with multishot receive and its
//! buffer pool: lesson 05's design, as a Rust user would get it from a
//! runtime.
//!
//! Not a lesson: a comparison line, beside `peer-compio`. compio's public
//! API offers what lesson 05 builds by hand:
//!
//! - `TcpListener::incoming()`: on io_uring (Linux 5.19+) one multishot
//!   accept that posts a completion per new connection;
//! - `AsyncReadMulti::read_multi` on `TcpStream`: one multishot receive per
//!   connection (Linux 6.0+), a stream of buffers the kernel picked from a
//!   registered buffer ring;
//! - the runtime's buffer pool, that ring: one per runtime, sized with
//!   `ProactorBuilder::buffer_pool_size` and `buffer_pool_buffer_len`
//!   (8 buffers of 8 KiB unless told otherwise). Here it gets lesson 05's
//!   defaults, `--buffers 1024 --buffer-size 4096`. A buffer goes back into
//!   the ring when its `BufferRef` is dropped: here, once it is written back.
//!
//! The echo loop is the plain one: take each buffer the stream yields,
//! write all of it back, until the stream ends (EOF). With one addition
//! that compio's API asks for: an empty pool (`ENOBUFS`) arrives as an
//! error of the stream, of kind `ResourceBusy` ("buffer ring has no
//! available buffer"), and the stream arms a new receive when it is polled
//! again; so that error means "go on", not "close". (Ended on it like any
//! other error, the loop also fails `idle`: 2000 connections that send at
//! once take more than 1024 buffers before any echo gives one back.)
//!
//! What compio does not offer is lesson 05's hardening: no bound on how many
//! buffers one connection holds, no reserve for connections that hold none.
//! A peer that sends and does not read keeps its receive taking buffers
//! while its echo waits, until the pool is empty; every other connection
//! with data waiting then re-arms and fails at once, again and again (the
//! server spins at full CPU), until the stuck peer reads again. No byte is
//! lost, but nobody else is served: this peer fails `stalled` every time,
//! and `stalled_many` in some runs (when its 8 MiB per peer do not all fit
//! in the kernel's socket buffers on the way back). The expectations table
//! in `tools/src/lessons.rs` (`PEERS`) says so.
//!
//! Built with compio's io_uring driver alone (no `polling` feature): on a
//! kernel or in a container without io_uring it says so in one line and
//! exits non-zero.
//!
//! ```text
//! cargo run --release --bin peer-compio-multishot
//! cargo run --bin echo-check -- 127.0.0.1:7878
//! ```

use std::process::ExitCode;

use clap::Parser;
use uring_echo_book::cli::CommonArgs;

/// compio's echo server with multishot accept, multishot receive and its
/// buffer pool (io_uring driver, one thread): a peer the lessons are
/// compared with.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,

    /// Buffers in compio's pool, shared by every connection (compio rounds
    /// the number up to a power of two; at most 32768).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u16).range(1..=32768))]
    buffers: u16,

    /// Size of each buffer in bytes.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=(1 << 20)))]
    buffer_size: u32,
}

#[cfg(not(target_os = "linux"))]
fn main() -> ExitCode {
    let _ = Args::parse();
    eprintln!("error: peer-compio-multishot needs Linux (io_uring); peer-tokio runs on any OS");
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
    use std::num::NonZero;
    use std::pin::pin;
    use std::time::Duration;

    use compio::BufResult;
    use compio::driver::ProactorBuilder;
    use compio::io::{AsyncReadMulti, AsyncWriteExt};
    use compio::net::{TcpListener, TcpStream};
    use compio::runtime::RuntimeBuilder;
    use futures_util::StreamExt;
    use uring_echo_book::listen::{announce, bind_hint, bind_listener};
    use uring_echo_tools::peer::explain_uring_error;

    use super::Args;

    pub fn run(args: Args) -> Result<(), String> {
        let mut proactor = ProactorBuilder::new();
        proactor
            .buffer_pool_size(NonZero::new(args.buffers).unwrap_or(NonZero::<u16>::MIN))
            .buffer_pool_buffer_len(args.buffer_size as usize);
        let runtime = RuntimeBuilder::new()
            .with_proactor(proactor)
            .build()
            .map_err(|e| explain_uring_error("compio", &e))?;
        // As in peer-compio: the library's `ctrlc` thread ends the process
        // with status 0 on SIGINT or SIGTERM.
        uring_echo_book::signals::exit_on_signal()
            .map_err(|e| format!("cannot watch SIGINT/SIGTERM: {e}"))?;
        runtime.block_on(serve(args))
    }

    async fn serve(args: Args) -> Result<(), String> {
        let addr = args.common.addr;
        // The same listening socket as the lessons', handed to compio.
        let listener = bind_listener(addr)
            .and_then(TcpListener::from_std)
            .map_err(|e| format!("cannot listen on {addr}: {e} ({})", bind_hint(&e)))?;
        let local = listener
            .local_addr()
            .map_err(|e| format!("cannot read the listening address: {e}"))?;
        announce(local);
        // compio makes the pool on first use; a kernel that cannot register
        // a buffer ring (older than 5.19, or a locked-memory limit) is
        // better said now, in one line, than at every connection.
        compio::runtime::Runtime::with_current(|rt| rt.buffer_pool().map(drop))
            .map_err(|e| format!("cannot register compio's buffer pool: {e}"))?;

        // One multishot accept: a stream of new connections. When it ends
        // (an error, or the kernel dropped it), the next poll arms another.
        let mut incoming = listener.incoming();
        while let Some(accepted) = incoming.next().await {
            match accepted {
                Ok(stream) => {
                    compio::runtime::spawn(async move {
                        // Asked now: after an error the socket may know no peer.
                        let peer = stream.peer_addr();
                        if let Err(e) = echo(stream).await {
                            match peer {
                                Ok(peer) => eprintln!("{peer}: {e}"),
                                Err(_) => eprintln!("a connection: {e}"),
                            }
                        }
                    })
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
        Ok(())
    }

    /// One connection: each buffer the kernel filled, written back whole,
    /// until EOF ends the stream.
    async fn echo(stream: TcpStream) -> io::Result<()> {
        // Two handles on the one socket: the receive stream borrows one for
        // its whole life, the writes use the other.
        let (mut reader, mut writer) = stream.into_split();
        // `0`: each receive may fill a whole buffer of the pool.
        let mut received = pin!(reader.read_multi(0));
        while let Some(buffer) = received.next().await {
            let buffer = match buffer {
                Ok(buffer) => buffer,
                // The pool was empty when data came: this receive is over,
                // and polling the stream again arms the next one.
                Err(e) if e.kind() == io::ErrorKind::ResourceBusy => continue,
                Err(e) => return Err(e),
            };
            // `write_all` hands the buffer back; dropping it returns it to
            // the pool, so the kernel may fill it again.
            let BufResult(written, _buffer) = writer.write_all(buffer).await;
            written?;
        }
        Ok(())
    }
}
