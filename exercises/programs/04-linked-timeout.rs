// The server of exercise 04-linked-timeout, all of it but the `todo`
// region (`set_idle_timeout`, `Requests`, `submit_recv`, `on_timeout` and
// `close`), which the file that includes this one defines: the starter,
// `exercises/04-linked-timeout/starter.rs`, or the reference solution.
//
// It is lesson 04 cut down to its core, `exercises/common/uring.rs`, which
// chapter 04's other exercise server shares, and correct: `on_send`, below,
// sends the rest after a short send, as exercise 04-short-sends has it.

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
use {io_uring::opcode, setup::Server, std::io, todo::Requests, uring_echo_book::uring::Needed};

#[cfg(target_os = "linux")]
fn main() -> ExitCode {
    let args = Args::parse();
    todo::set_idle_timeout(args.idle_timeout);
    let timer = Needed {
        code: opcode::LinkTimeout::CODE,
        name: "IORING_OP_LINK_TIMEOUT",
        since: "5.5",
    };
    // One page per connection, as in lesson 04; the kernel's SO_SNDBUF.
    setup::run(Server::new(args.common.addr, 4096, None, &[timer]))
}

/// Lesson 04's io_uring echo server, compact, with an idle timeout
/// (exercise 04-linked-timeout; Linux).
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,

    /// Close a connection that has sent nothing for this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout: u64,
}

#[cfg(target_os = "linux")]
impl Server {
    /// The send finished: `res` is how many bytes the kernel took, or an
    /// error.
    fn on_send(&mut self, index: usize, res: i32) -> io::Result<()> {
        let Some(conn) = self.conns[index].as_mut() else {
            return Ok(());
        };
        if res < 0 {
            return self.close(index); // EPIPE, ECONNRESET: the peer is gone
        }
        conn.sent += res as usize;
        if conn.sent < conn.filled {
            // A short send (exercise 04-short-sends): send the rest before
            // receiving anything new.
            return self.submit_send(index);
        }
        self.submit_recv(index)
    }
}

// Elsewhere, the server says what it needs, and stops.
#[cfg(not(target_os = "linux"))]
fn main() -> ExitCode {
    let _ = Args::parse();
    eprintln!("error: this exercise needs Linux (io_uring)");
    ExitCode::FAILURE
}
