//! The one line every server prints on stdout.
//!
//! Tests, benches and the grader start a server on port 0, let the kernel pick
//! a free port, and read the real address back from this line. It is the only
//! thing a server writes to stdout; everything else goes to stderr.

use std::io::{self, Write};
use std::net::SocketAddr;

/// The prefix of the line, shared with the code that reads it.
pub const LISTENING_PREFIX: &str = "listening on ";

/// Prints `listening on ADDR` and flushes it at once.
///
/// `addr` must be the socket's *local* address (`listener.local_addr()`), not
/// the one asked for: with port 0 only the former carries the real port.
pub fn announce(addr: SocketAddr) {
    let mut out = io::stdout().lock();
    // stdout may be a pipe read by a test; when the reader is gone there is
    // nobody left to tell, so a failed write is not worth stopping a server for.
    let _ = writeln!(out, "{LISTENING_PREFIX}{addr}");
    let _ = out.flush();
}

/// Parses a line printed by [`announce`].
pub fn parse_announcement(line: &str) -> Option<SocketAddr> {
    line.trim_end().strip_prefix(LISTENING_PREFIX)?.parse().ok()
}

/// A one-line hint for the commonest ways `bind` fails.
pub fn bind_hint(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::AddrInUse => {
            "another program already listens there; stop it, or pick another port with --addr 127.0.0.1:0"
        }
        io::ErrorKind::AddrNotAvailable => {
            "this machine has no such address; try 127.0.0.1 or [::1]"
        }
        io::ErrorKind::PermissionDenied => {
            "ports below 1024 need privileges; pick a port above 1024"
        }
        _ => "check the address given with --addr",
    }
}

/// How many finished handshakes the kernel queues for a server that has not
/// called `accept` yet. Linux caps it at `net.core.somaxconn` (4096 on recent
/// kernels). A burst of thousands of connects needs a deep queue: when the
/// queue is full the kernel drops the SYN and the client retries a second
/// later.
pub const BACKLOG: i32 = 4096;

/// `socket`, `SO_REUSEADDR`, `TCP_NODELAY`, `bind`, `listen`: the steps lesson 01 spells
/// out, for the lessons after it.
pub fn bind_listener(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    // Inherited by every accepted socket: no Nagle delay on an echo that
    // leaves in several writes (lesson 01 explains it).
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// [`bind_listener`], with a failure explained in one line for a person:
/// `cannot listen on ADDR: ERROR (what to do)`.
pub fn bind_or_explain(addr: SocketAddr) -> Result<std::net::TcpListener, String> {
    bind_listener(addr).map_err(|e| format!("cannot listen on {addr}: {e} ({})", bind_hint(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcement_round_trips() {
        for text in ["127.0.0.1:7878", "[::1]:40000"] {
            let addr: SocketAddr = text.parse().unwrap();
            let line = format!("{LISTENING_PREFIX}{addr}\n");
            assert_eq!(parse_announcement(&line), Some(addr));
            assert!(line.contains(text), "printed as Rust prints it");
        }
        assert_eq!(parse_announcement("listening on nowhere"), None);
        assert_eq!(parse_announcement("error: port in use"), None);
    }
}
