//! 01_blocking — the smallest echo server that is correct.
//!
//! One thread serves one client from connect to close, with blocking system
//! calls: `accept` waits for a client, `read` waits for bytes, `write` waits
//! for room in the kernel's send buffer. While one client is being served,
//! every other client waits in the kernel's accept queue. Open two `nc`
//! sessions and see: the second one gets no echo until the first hangs up.
//! That wait is what the rest of the book removes.
//!
//! Run it:
//!
//! ```text
//! cargo run --bin 01_blocking                     # listens on 127.0.0.1:7878
//! cargo run --bin 01_blocking -- --addr [::1]:0   # IPv6, any free port
//! nc 127.0.0.1 7878                               # type a line, get it back
//! ```

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use clap::Parser;
use socket2::{Domain, Socket, Type};
use uring_echo_book::cli::CommonArgs;
use uring_echo_book::limits::raise_open_file_limit_or_warn;
use uring_echo_book::listen::{announce, bind_hint};
use uring_echo_book::signals::exit_on_signal;

/// A blocking echo server that serves one client at a time.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
}

// ANCHOR: main
fn main() -> ExitCode {
    let args = Args::parse();
    raise_open_file_limit_or_warn();
    // A blocking server sits in `accept` or `read` and cannot also watch for
    // Ctrl-C, so a helper thread does: it exits the process with status 0 and
    // the kernel closes every socket we hold.
    if let Err(e) = exit_on_signal() {
        eprintln!("error: cannot install the SIGINT/SIGTERM handler: {e}");
        return ExitCode::FAILURE;
    }

    let listener = match listen(args.common.addr) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!(
                "error: cannot listen on {}: {e} ({})",
                args.common.addr,
                bind_hint(&e)
            );
            return ExitCode::FAILURE;
        }
    };
    // With `--addr 127.0.0.1:0` the kernel picked the port during `bind`;
    // `local_addr` (the `getsockname` system call) tells us which.
    match listener.local_addr() {
        Ok(addr) => announce(addr),
        Err(e) => {
            eprintln!("error: cannot read the listening address: {e}");
            return ExitCode::FAILURE;
        }
    }

    accept_loop(&listener);
    ExitCode::SUCCESS
}
// ANCHOR_END: main

// ANCHOR: setup
/// Creates the listening socket, one system call at a time.
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    // socket(): a new, unconnected TCP endpoint. The kernel hands back a file
    // descriptor, a small integer naming the socket in every later call.
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // SO_REUSEADDR: after a restart, the previous run's connections may still
    // sit in TIME_WAIT on this port; without this option `bind` would fail
    // with "Address already in use" for a minute or so.
    socket.set_reuse_address(true)?;
    // TCP_NODELAY, which every accepted socket inherits: send each write at
    // once. By default (Nagle's algorithm) the kernel holds back a small
    // segment while an earlier one is unacknowledged, and the peer delays its
    // acknowledgement by up to 40 ms. An echo of 10,000 bytes leaves in three
    // writes (our buffer is 4 KiB), so the last one waited: about 44 ms per
    // echo, measured, against well under 1 ms with this option.
    socket.set_tcp_nodelay(true)?;
    // bind(): claim the address and port. Port 0 asks the kernel for any free one.
    socket.bind(&addr.into())?;
    // listen(): from now on the kernel completes TCP handshakes on its own and
    // queues the new connections, up to this many (Linux lets one more in),
    // until we `accept` them. This queue is where a second client waits while
    // we serve the first.
    socket.listen(128)?;
    Ok(socket.into())
}
// ANCHOR_END: setup

// ANCHOR: accept
/// Serves clients one after the other, forever.
fn accept_loop(listener: &TcpListener) {
    loop {
        // accept() blocks until a client has connected, then returns a new
        // socket for that one client; the listening socket stays as it was,
        // ready for the next.
        match listener.accept() {
            Ok((stream, peer)) => {
                // Everything happens on this one thread: until `serve`
                // returns, nobody calls `accept`, and the next client waits.
                if let Err(e) = serve(stream) {
                    // A client that resets or vanishes ends its own session
                    // only; the server goes on to the next one.
                    eprintln!("{peer}: {e}");
                }
                // `stream` was moved into `serve` and dropped there: the
                // drop is the close() system call.
            }
            Err(e) => {
                eprintln!("accept failed: {e}");
                if is_out_of_descriptors(&e) {
                    // Out of file descriptors (EMFILE/ENFILE): trying again at
                    // once fails the same way, so give the system a moment.
                    thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
}
// ANCHOR_END: accept

// ANCHOR: out_of_descriptors
/// EMFILE (this process) or ENFILE (the whole system) ran out of descriptors.
fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(23 | 24)) // ENFILE, EMFILE
}
// ANCHOR_END: out_of_descriptors

// ANCHOR: serve
/// Echoes one client's bytes back until it closes its side.
fn serve(mut stream: TcpStream) -> io::Result<()> {
    // 4 KiB is one page: big enough that a typical message arrives in one
    // read, small enough that its cost never matters.
    let mut buf = [0u8; 4096];
    loop {
        // read() blocks until the peer sends something or closes. It returns
        // whatever has arrived, from 1 byte up to the buffer's size: TCP is a
        // stream of bytes, not of messages.
        let n = match stream.read(&mut buf) {
            // Zero bytes means the peer closed its side: we are done.
            Ok(0) => return Ok(()),
            Ok(n) => n,
            // A signal interrupted the wait; nothing was read, so try again.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // ECONNRESET and friends: this client is gone.
            Err(e) => return Err(e),
        };
        // `write_all`, not `write`: the kernel may take fewer bytes than we
        // offer when its send buffer is full, and an echo that drops the rest
        // is not an echo. `write_all` calls write() until every byte is taken,
        // blocking while the peer is slow to read.
        //
        // A peer that closed may make write() fail with EPIPE. Rust ignores
        // the SIGPIPE signal that would otherwise kill the process, so we see
        // the error here instead, and only this client's session ends.
        stream.write_all(&buf[..n])?;
    }
}
// ANCHOR_END: serve
