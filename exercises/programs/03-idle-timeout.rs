// The server of exercise 03-idle-timeout, all of it but the `todo` region
// (`Idle`, what a connection keeps for the timeout, and `run`, the event
// loop), which the file that includes this one defines: the starter,
// `exercises/03-idle-timeout/starter.rs`, or the reference solution.
//
// It is lesson 03 made small, and correct: one thread, nonblocking sockets,
// a level-triggered epoll loop (`exercises/common/epoll.rs`, which chapter
// 03's other exercise server shares), and lesson 03's own write path: its
// `echo.rs`, which keeps what the socket did not take and sends it when
// there is room, while `on_ready` below reads nothing until it is sent
// (backpressure).

use std::process::ExitCode;
#[cfg(target_os = "linux")]
use std::time::Duration;

use clap::Parser;
use uring_echo_book::cli::CommonArgs;

#[cfg(target_os = "linux")]
#[path = "../common/epoll.rs"]
mod epoll;

// Lesson 03's own files, as they are: `echo` writes back what the socket
// takes and queues the rest, `flush` sends the queue; they count what they
// do into lesson 03's `Stats`.
#[cfg(target_os = "linux")]
#[path = "../../src/bin/03_epoll/echo.rs"]
mod echo;
#[cfg(target_os = "linux")]
#[path = "../../src/bin/03_epoll/stats.rs"]
mod stats;

#[cfg(target_os = "linux")]
use {
    conn::Conn,
    echo::{echo, flush},
    epoll::{Server, read_some},
    nix::sys::epoll::EpollFlags,
    stats::Stats,
    std::io,
};

/// A small level-triggered epoll echo server that should close idle
/// connections (exercise 03-idle-timeout; Linux).
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,

    /// Close a connection after this many seconds without any traffic.
    /// Without it, a connection stays open until its client closes it.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout: Option<u64>,
}

#[cfg(target_os = "linux")]
fn main() -> ExitCode {
    let args = Args::parse();
    let idle_timeout = args.idle_timeout.map(Duration::from_secs);
    epoll::run(args.common.addr, |server| server.run(idle_timeout))
}

/// One client, with the fields lesson 03's `echo.rs` uses (it names them
/// `crate::conn::Conn`, as in the lesson).
#[cfg(target_os = "linux")]
mod conn {
    use std::net::TcpStream;

    use nix::sys::epoll::EpollFlags;

    pub(crate) struct Conn {
        pub(crate) stream: TcpStream,
        /// What epoll is asked to report for this socket.
        pub(crate) interest: EpollFlags,
        /// Bytes read but not yet written back, oldest first; `queue[sent..]`
        /// is still to be sent. Empty (and unallocated) while the peer
        /// keeps up.
        pub(crate) queue: Vec<u8>,
        pub(crate) sent: usize,
        /// What the idle timeout keeps for this connection: the exercise's.
        pub(crate) idle: crate::todo::Idle,
    }

    impl Conn {
        /// A client just accepted: epoll is to report it readable.
        pub(crate) fn new(stream: TcpStream) -> Conn {
            Conn {
                stream,
                interest: EpollFlags::EPOLLIN,
                queue: Vec::new(),
                sent: 0,
                idle: crate::todo::Idle::new(),
            }
        }

        pub(crate) fn queued(&self) -> usize {
            self.queue.len() - self.sent
        }
    }
}

/// The socket is ready, or has an error or hang-up pending. Every event
/// touches the connection's `Idle`. Then: send what is queued; read only
/// when nothing is (backpressure: a client that does not read costs at most
/// one read of queue); echo what was read. Returns what epoll should report
/// next, or `None` when the client is done.
#[cfg(target_os = "linux")]
fn on_ready(conn: &mut Conn, scratch: &mut [u8]) -> io::Result<Option<EpollFlags>> {
    conn.idle.touch();
    // This server keeps no counters: `echo` and `flush` count into one that
    // is thrown away.
    let mut stats = Stats::default();
    flush(conn, &mut stats)?;
    if conn.queued() > 0 {
        return Ok(Some(EpollFlags::EPOLLOUT));
    }
    let n = match read_some(&mut conn.stream, scratch)? {
        // Nothing after all: wait for the next "readable".
        None => return Ok(Some(EpollFlags::EPOLLIN)),
        // The peer's FIN, with every byte echoed: done.
        Some(0) => return Ok(None),
        Some(n) => n,
    };
    echo(conn, &scratch[..n], &mut stats)?;
    // "Writable" only while bytes wait: a socket with room to write is
    // writable nearly all the time, and asking regardless would wake us for
    // nothing.
    Ok(Some(if conn.queued() > 0 {
        EpollFlags::EPOLLOUT
    } else {
        EpollFlags::EPOLLIN
    }))
}

// Elsewhere, the server says what it needs, and stops.
#[cfg(not(target_os = "linux"))]
fn main() -> ExitCode {
    let _ = Args::parse();
    eprintln!("error: this exercise needs Linux (epoll)");
    ExitCode::FAILURE
}
