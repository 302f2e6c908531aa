//! What the blocking exercise servers of chapters 01 and 02 share, written
//! once: starting up as lessons 01 and 02 do, accepting, lesson 01's accept
//! loop, and an echo known to be right. The bugs to find and the features
//! to add are in each exercise's own starter, never here.
//!
//! The programs in `exercises/programs/` take it in with
//! `#[path = "../common/blocking.rs"] mod blocking;`.

use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use clap::Parser;
use uring_echo_book::cli::CommonArgs;
use uring_echo_book::{limits, listen, signals};

// The options of a server that has none of its own: `--addr`.
/// A blocking echo server of an exercise: its starter (or its solution)
/// says which, and what to do.
#[derive(Parser)]
pub struct AddrOnly {
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `main` of a blocking exercise server: raise the open-file limit, let
/// SIGINT and SIGTERM end the process, listen on `addr` and print the one
/// `listening on ADDR` line, then hand the listener to `accept_loop`. A
/// failure on the way is one line on stderr and a non-zero exit.
pub fn run(addr: SocketAddr, accept_loop: impl FnOnce(&TcpListener)) -> ExitCode {
    match start(addr) {
        Ok(listener) => {
            accept_loop(&listener);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Everything before the first `accept`; `bind_or_explain` does what lesson
/// 01 spells out (socket, SO_REUSEADDR, TCP_NODELAY, bind, listen).
fn start(addr: SocketAddr) -> Result<TcpListener, String> {
    limits::raise_open_file_limit_or_warn();
    signals::exit_on_signal()
        .map_err(|e| format!("cannot install the SIGINT/SIGTERM handler: {e}"))?;
    let listener = listen::bind_or_explain(addr)?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    listen::announce(local);
    Ok(listener)
}

/// The next client, or `None` when `accept` failed, which it says on
/// stderr. Out of descriptors (EMFILE, ENFILE), trying again at once fails
/// the same way, so it first gives the connections a moment to close some.
pub fn accept(listener: &TcpListener) -> Option<(TcpStream, SocketAddr)> {
    let e = match listener.accept() {
        Ok(client) => return Some(client),
        Err(e) => e,
    };
    eprintln!("accept failed: {e}");
    if matches!(e.raw_os_error(), Some(23 | 24)) {
        thread::sleep(Duration::from_millis(100)); // ENFILE, EMFILE
    }
    None
}

/// Lesson 01's accept loop: one client at a time, from connect to close,
/// each served by `serve`. The next client waits in the kernel's accept
/// queue until `serve` returns.
pub fn one_at_a_time(listener: &TcpListener, mut serve: impl FnMut(TcpStream) -> io::Result<()>) {
    loop {
        if let Some((stream, peer)) = accept(listener) {
            eprintln!("{peer}: connected");
            match serve(stream) {
                Ok(()) => eprintln!("{peer}: done"),
                Err(e) => eprintln!("{peer}: {e}"),
            }
        }
    }
}

/// Starts a connection's thread. `Builder::spawn` returns an error where
/// `thread::spawn` would panic; the closure is dropped then, and with it
/// what it owns (the socket: this one connection closes, nothing else).
pub fn spawn(peer: SocketAddr, connection: impl FnOnce() + Send + 'static) {
    if let Err(e) = thread::Builder::new().spawn(connection) {
        eprintln!("{peer}: cannot start a thread ({e}); closing this connection");
    }
}

/// Echoes the client's bytes back until it closes its side: lesson 01's
/// `serve`, with `io::copy` running its loop (`read` into a buffer,
/// `write_all` what came, again until `read` returns 0, and again after
/// EINTR). An error ends it: a reset, a failed write, or a read that gave up.
pub fn echo(stream: TcpStream) -> io::Result<()> {
    // `&TcpStream` reads and writes, so one socket is both ends of the copy.
    io::copy(&mut &stream, &mut &stream).map(drop)
}

/// One `read` into `buf`: how many bytes came, or `None` once the client
/// has closed its side (`read` returned 0). Tried again after EINTR.
pub fn read_some(stream: &mut TcpStream, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        match stream.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            done => return done.map(|n| (n > 0).then_some(n)),
        }
    }
}
