//! 04_uring — completions instead of readiness: a first io_uring server.
//!
//! Lesson 03 asked the kernel "which sockets are ready?" and then did the
//! reads and writes itself, two or more system calls per echo. With io_uring
//! we ask the kernel to *do* the operations: we write requests ("receive
//! into this buffer", "send these bytes") into a submission queue shared
//! with the kernel, and the kernel writes a result for each into a
//! completion queue when it is done. One `io_uring_enter` call hands over a
//! whole batch of requests and waits for a batch of results.
//!
//! This lesson uses the simplest form of each operation: one `Accept` in
//! flight at a time, and per connection one `Recv` into the connection's own
//! 4 KiB buffer, then one `Send` of what arrived (again for the rest, if the
//! kernel sent only part), then the next `Recv`. The new difficulty is
//! ownership: while the kernel holds a request, it holds a pointer into our
//! memory, and the borrow checker cannot see that.
//!
//! Run it:
//!
//! ```text
//! cargo run --bin 04_uring
//! cargo run --bin echo-check -- 127.0.0.1:7878
//! strace -c -f cargo run --release --bin 04_uring    # count io_uring_enter calls
//! ```
//!
//! The files, in the order the chapter reads them. The core, the smallest
//! complete server:
//!
//! - `main.rs`: the options, `main`, and the event loop (at the end);
//! - `conn.rs`: `user_data`, a connection, and `KernelBuf`, the memory we
//!   lend the kernel;
//! - `setup.rs`: the server's state, the ring and the listening socket;
//! - `ring.rs`: `push` and `enter`, how requests reach the kernel;
//! - `accept.rs`, `recv_send.rs`: the requests and their completions.
//!
//! The hardening, one concern a file:
//!
//! - `accept_pause.rs`: out of descriptors, pause accepting, do not spin;
//! - `shutdown.rs`: signals through the ring, cancel and reap at exit;
//! - `stats.rs`: the counters printed at exit.

use std::process::ExitCode;

use clap::Parser;
use uring_echo_book::cli::CommonArgs;

// io_uring is Linux's, so everything but the options and `main` is built
// on Linux only. Items that one file uses from another are `pub(crate)`:
// visible anywhere in this program, and nowhere else.

// The core, in the order the chapter reads it:
#[cfg(target_os = "linux")]
mod conn;

#[cfg(target_os = "linux")]
mod setup;

#[cfg(target_os = "linux")]
mod ring;

#[cfg(target_os = "linux")]
mod accept;

#[cfg(target_os = "linux")]
mod recv_send;

// The hardening:
#[cfg(target_os = "linux")]
mod accept_pause;

#[cfg(target_os = "linux")]
mod shutdown;

#[cfg(target_os = "linux")]
mod stats;

#[cfg(target_os = "linux")]
use {
    conn::{Kind, unpack},
    setup::Server,
    std::io,
};

// ANCHOR: options
/// A single-threaded echo server on io_uring with single-shot operations (Linux).
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,

    /// Entries in the submission queue: how many requests can be queued
    /// before one `io_uring_enter` hands them to the kernel. More are fine:
    /// when the queue is full we submit and carry on.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=32768))]
    ring_entries: u32,

    /// Most connections served at once. The completion queue is sized from
    /// it so that it can never overflow; accepting pauses at the cap.
    #[arg(long, default_value_t = 16384, value_parser = clap::value_parser!(u64).range(1..=30000))]
    max_conns: u64,

    /// Each connection's buffer, in bytes: what one receive can bring and
    /// one send must get out. One page by default.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=(1 << 20)))]
    buffer_size: u32,

    /// SO_SNDBUF for every connection, in bytes (default: the kernel's).
    /// A send buffer smaller than one of our buffers makes short sends
    /// frequent: try `--buffer-size 65536 --sndbuf 4096` and watch the
    /// `short_sends` counter at exit.
    #[arg(long, value_name = "BYTES")]
    sndbuf: Option<usize>,
}
// ANCHOR_END: options

#[cfg(not(target_os = "linux"))]
fn main() -> ExitCode {
    let _ = Args::parse();
    eprintln!("error: 04_uring needs Linux (io_uring); lessons 01 and 02 run on any OS");
    ExitCode::FAILURE
}

#[cfg(target_os = "linux")]
fn main() -> ExitCode {
    let args = Args::parse();
    uring_echo_book::limits::raise_open_file_limit_or_warn();
    let mut server = match Server::new(&args) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match server.run() {
        Ok(()) => {
            eprintln!("{}", server.stats);
            ExitCode::SUCCESS
        }
        Err(e) => {
            // Requests may still be in flight, and the kernel may still write
            // into their buffers: `Server`'s `Drop` (in `shutdown.rs`)
            // leaks those rather than free them. The process is exiting.
            eprintln!("error: the event loop failed: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(target_os = "linux")]
impl Server {
    // ANCHOR: event_loop
    /// Submits, waits, handles completions; until SIGINT or SIGTERM.
    fn run(&mut self) -> io::Result<()> {
        while !self.stopping {
            // One system call: hand the kernel every queued request and
            // sleep until at least one completion is there.
            self.enter(1)?;
            self.reap()?;
        }
        self.shutdown()
    }

    /// Handles every completion in the queue.
    fn reap(&mut self) -> io::Result<()> {
        // Copy the completions out first: handling one queues new requests,
        // which needs the ring, which the completion queue borrows.
        let mut batch = std::mem::take(&mut self.batch);
        batch.clear();
        batch.extend(
            self.ring
                .completion()
                .map(|cqe| (cqe.user_data(), cqe.result())),
        );
        for &(user_data, res) in &batch {
            self.in_flight -= 1;
            self.stats.completions += 1;
            self.on_completion(user_data, res)?;
        }
        self.batch = batch;
        Ok(())
    }

    fn on_completion(&mut self, user_data: u64, res: i32) -> io::Result<()> {
        let (kind, index, generation) = unpack(user_data);
        match kind {
            Some(Kind::Accept) => self.on_accept(res),
            Some(Kind::Recv | Kind::Send) => {
                let current = self.conns.get_mut(index).and_then(Option::as_mut);
                match current {
                    Some(conn) if conn.generation == generation => {
                        conn.in_flight = None;
                        if kind == Some(Kind::Recv) {
                            self.on_recv(index, res)
                        } else {
                            self.on_send(index, res)
                        }
                    }
                    // Cannot happen while a connection is closed only with
                    // nothing in flight; counted, so a bug would show.
                    _ => {
                        self.stats.stale += 1;
                        Ok(())
                    }
                }
            }
            Some(Kind::Signal) => self.on_signal(),
            Some(Kind::Timeout) => self.on_timeout(),
            Some(Kind::Cancel) | None => Ok(()),
        }
    }
    // ANCHOR_END: event_loop
}
