// The server of exercise 04-short-sends, all of it but `on_send`, which the
// file that includes this one defines in its `todo` region: the starter,
// `exercises/04-short-sends/starter.rs`, or the reference solution.
//
// It is lesson 04 cut down to its core, `exercises/common/uring.rs`, which
// chapter 04's other exercise server shares, with one request at a time per
// connection: `submit_recv` and `close`, below, are lesson 04's.

use std::process::ExitCode;

use clap::Parser;
use uring_echo_book::cli::CommonArgs;

// The server, all but the parts an exercise is about; `setup` is where
// lesson 04 keeps its `Server`, and where the lesson's own files look for
// it.
#[cfg(target_os = "linux")]
#[path = "../common/uring.rs"]
mod setup;

#[cfg(target_os = "linux")]
use {
    io_uring::{opcode, types},
    setup::Server,
    setup::conn::{Kind, pack},
    std::io,
    std::os::fd::AsRawFd,
};

#[cfg(target_os = "linux")]
fn main() -> ExitCode {
    let args = Args::parse();
    let sndbuf = args
        .sndbuf
        .map_or("the kernel's".into(), |b| format!("{b} B"));
    eprintln!("buffers of {} B, SO_SNDBUF {sndbuf}", args.buffer_size);
    let addr = args.common.addr;
    setup::run(Server::new(addr, args.buffer_size, args.sndbuf, &[]))
}

/// Lesson 04's io_uring echo server, compact (exercise 04-short-sends;
/// Linux).
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,

    /// Each connection's buffer, in bytes: what one receive can bring and
    /// one send must get out.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=(1 << 20)))]
    buffer_size: u32,

    /// SO_SNDBUF for every connection, in bytes (default: the kernel's).
    /// Smaller than the buffer, it makes the kernel take part of a send.
    #[arg(long, value_name = "BYTES")]
    sndbuf: Option<usize>,
}

/// A connection's requests in the kernel, whose completions have not come
/// yet: here never more than one.
#[cfg(target_os = "linux")]
struct Requests {
    in_flight: u32,
}

#[cfg(target_os = "linux")]
impl Requests {
    fn new() -> Requests {
        Requests { in_flight: 0 }
    }

    fn started(&mut self) {
        self.in_flight += 1;
    }

    fn finished(&mut self) {
        self.in_flight -= 1;
    }
}

#[cfg(target_os = "linux")]
impl Server {
    /// Receives into the connection's whole buffer.
    fn submit_recv(&mut self, index: usize) -> io::Result<()> {
        let Some(conn) = self.conns[index].as_mut() else {
            return Ok(());
        };
        let fd = types::Fd(conn.socket.as_raw_fd());
        let entry = opcode::Recv::new(fd, conn.buf.addr(0), conn.buf.len() as u32)
            .build()
            .user_data(pack(Kind::Recv, index, conn.generation));
        conn.requests.started();
        // SAFETY: the kernel writes into `conn.buf`. Its bytes stay put when
        // `conns` grows (only the `KernelBuf`, an address, moves); they are
        // freed only with the `Conn`, which `close` drops only from a
        // completion, when this connection's one request has come back; and
        // we never read or write them ourselves.
        unsafe { self.push(entry) }
    }

    /// A completion of `Kind::Timeout`: this server submits none.
    fn on_timeout(&mut self, index: usize, res: i32) -> io::Result<()> {
        eprintln!("connection {index}: a timer completed ({res}), but none was submitted");
        Ok(())
    }

    /// Called only from a completion, so the kernel holds nothing of the
    /// connection any more: its socket may be closed and its buffer freed.
    fn close(&mut self, index: usize) -> io::Result<()> {
        if let Some(conn) = self.conns[index].take() {
            debug_assert_eq!(
                conn.requests.in_flight, 0,
                "a buffer freed while the kernel holds it"
            );
            self.free.push(index);
        }
        if self.accepting {
            return Ok(());
        }
        self.submit_accept() // a descriptor is free again
    }
}

// Elsewhere, the server says what it needs, and stops.
#[cfg(not(target_os = "linux"))]
fn main() -> ExitCode {
    let _ = Args::parse();
    eprintln!("error: this exercise needs Linux (io_uring)");
    ExitCode::FAILURE
}
