//! 03_epoll — one thread, thousands of clients, and not a byte lost.
//!
//! Lesson 02 gave every connection a thread so that one slow client could
//! not block the rest. This lesson gets the same from a single thread: every
//! socket is *nonblocking*, so `read` and `write` return at once with
//! `EAGAIN` ("would block") instead of waiting, and one `epoll_wait` call
//! tells us which sockets are ready. The thread goes where there is work.
//!
//! Nonblocking I/O moves a job from the kernel to us. A blocking `write_all`
//! waited until the peer made room; a nonblocking `write` takes what fits and
//! returns. Whatever it did not take we must keep, in order, and send when
//! epoll says the socket is writable again. Many epoll echo servers people
//! copy from skip this and silently drop bytes under load. And because we
//! now keep bytes for a peer, a peer that never reads could make us keep
//! bytes without end: so past `--max-queued-bytes` we stop reading from it
//! (backpressure) until it catches up.
//!
//! Run it:
//!
//! ```text
//! cargo run --bin 03_epoll                        # level-triggered, 127.0.0.1:7878
//! cargo run --bin 03_epoll -- --trigger edge      # edge-triggered
//! cargo run --bin echo-check -- 127.0.0.1:7878    # every check passes
//! ```
//!
//! This file holds the options, `main` and the event loop. The other files
//! are listed below, the core first (the smallest complete server), then
//! the hardening, in the order the chapter reads them.

// epoll and signalfd are Linux system calls: every module but this one is
// Linux only, and is gated here, once.

// The core. The tokens epoll hands back, a connection, the epoll flags.
#[cfg(target_os = "linux")]
mod conn;

// The server's state, and how it starts.
#[cfg(target_os = "linux")]
mod setup;

// Accepting connections and registering them with epoll.
#[cfg(target_os = "linux")]
mod accept;

// Serving a connection's event: read, echo, backpressure, what epoll
// should watch next, close.
#[cfg(target_os = "linux")]
mod drive;

// Writing back, and keeping what the kernel did not take.
#[cfg(target_os = "linux")]
mod echo;

// The hardening. Out of file descriptors (EMFILE): pause accepting.
#[cfg(target_os = "linux")]
mod descriptors;

// Edge mode: the list of connections owed another turn.
#[cfg(target_os = "linux")]
mod again;

// SIGINT and SIGTERM as an event of the loop, and closing down.
#[cfg(target_os = "linux")]
mod shutdown;

// The counters printed at exit.
#[cfg(target_os = "linux")]
mod stats;

use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use uring_echo_book::cli::CommonArgs;

// What the Linux-only code of this file (`main` and the event loop) uses.
#[cfg(target_os = "linux")]
use {
    conn::{LISTENER, SIGNALS},
    nix::errno::Errno,
    nix::sys::epoll::{EpollEvent, EpollTimeout},
    setup::Server,
    std::io,
    std::time::Instant,
};

// ANCHOR: options
/// A single-threaded echo server on nonblocking sockets and epoll (Linux).
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,

    /// How epoll reports readiness. `level`: as long as a socket is ready,
    /// every epoll_wait reports it again. `edge`: only when it *becomes*
    /// ready, so each event must be drained until EAGAIN.
    #[arg(long, value_enum, default_value_t = Trigger::Level)]
    trigger: Trigger,

    /// Bytes one connection may have waiting to be sent before we stop
    /// reading from it. Bounds the memory a peer that never reads can cost.
    #[arg(long, default_value_t = 256 * 1024, value_parser = clap::value_parser!(u64).range(1..))]
    max_queued_bytes: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Trigger {
    Level,
    Edge,
}
// ANCHOR_END: options

/// epoll is a Linux system call; so is signalfd. Lessons 01 and 02 run anywhere.
#[cfg(not(target_os = "linux"))]
fn main() -> ExitCode {
    let _ = Args::parse();
    eprintln!("error: 03_epoll needs Linux (epoll and signalfd); lessons 01 and 02 run on any OS");
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
            eprintln!("error: the event loop failed: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(target_os = "linux")]
impl Server {
    // ANCHOR: event_loop
    // ANCHOR: run
    /// Waits for events and handles them, until SIGINT or SIGTERM.
    fn run(&mut self) -> io::Result<()> {
        let mut events = vec![EpollEvent::empty(); 1024];
        loop {
            // A pause in accepting (EMFILE/ENFILE) that has run its time
            // ends here, whatever else is going on. No connection closed to
            // free a descriptor, but descriptors may be free anyway: after
            // ENFILE another process may have closed files, or someone
            // raised our limit. Checked on every turn, not only when the
            // loop is idle: a server with steady traffic never is.
            self.resume_accepting_if_due();
            // Block until something is ready, or for as long as
            // `wait_timeout` allows.
            let timeout = self.wait_timeout();
            let n = match self.epoll.wait(&mut events, timeout) {
                Ok(n) => n,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            };
            self.stats.waits += 1;
            for event in &events[..n] {
                match event.data() {
                    LISTENER => self.accept_waiting(),
                    SIGNALS => {
                        if let Ok(Some(info)) = self.signals.read_signal() {
                            eprintln!(
                                "signal {} received: closing every connection",
                                info.ssi_signo
                            );
                            self.shutdown();
                            return Ok(());
                        }
                    }
                    token => self.on_ready(token),
                }
            }
            // Edge mode: the connections whose turn ran out get their next
            // one now, after everyone epoll reported (and the signal) had
            // theirs (see `again.rs`).
            self.serve_again();
        }
    }
    // ANCHOR_END: run

    // ANCHOR: wait_timeout
    /// How long `epoll_wait` may sleep. Until something is ready, as a
    /// rule. While connections wait for another turn (edge mode), we only
    /// look. While accepting is paused, we sleep no longer than the pause
    /// has left, rounded up to epoll's milliseconds (waking a moment early
    /// would only mean waiting again).
    fn wait_timeout(&self) -> EpollTimeout {
        if !self.again.is_empty() {
            EpollTimeout::ZERO
        } else if let Some(until) = self.accept_paused_until {
            let left = until.saturating_duration_since(Instant::now());
            EpollTimeout::try_from(left.as_millis() + 1).unwrap_or(EpollTimeout::MAX)
        } else {
            EpollTimeout::NONE
        }
    }
    // ANCHOR_END: wait_timeout
    // ANCHOR_END: event_loop
}
