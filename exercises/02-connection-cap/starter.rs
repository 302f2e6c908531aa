//! Exercise 02-connection-cap: a cap on connections.
//!
//! This is lesson 02's server, a thread per connection, with a new option,
//! `--max-conns N`, that does nothing yet. The goal: while N connections are
//! open, a new one is closed at once, so its client knows right away instead
//! of waiting; and a connection that ends, however it ends, frees its place.
//!
//! Lesson 02's `--max-threads` caps differently: it stops calling `accept`,
//! and the clients beyond the cap wait in the kernel's accept queue, for as
//! long as it takes. Here they are turned away, the way a server with a fixed
//! table of connections has to.
//!
//! The work is in `accept_loop`, below. The rest of the server is
//! `exercises/programs/02-connection-cap.rs` (the options and `main`) and
//! `exercises/common/blocking.rs` (the start; `accept`; `spawn`, which
//! starts a connection's thread; `echo`, lesson 02's read-and-write loop);
//! you need not change them.
//!
//! Run it, and grade it:
//!
//! ```text
//! cargo run --example 02-connection-cap -- --max-conns 2      # listens on 127.0.0.1:7878
//! cargo run --bin echo-check -- --exercise 02-connection-cap  # builds, starts and grades it
//! ```
//!
//! The statement is `exercises/02-connection-cap/README.md`.

include!("../programs/02-connection-cap.rs");

// ANCHOR: todo
mod todo {
    use std::net::TcpListener;

    use super::{accept, echo, spawn};

    /// Accepts clients forever and hands each one to a thread of its own.
    pub fn accept_loop(listener: &TcpListener, max_conns: Option<u64>) {
        match max_conns {
            Some(cap) => eprintln!("connection cap: {cap} (--max-conns)"),
            None => eprintln!("no connection cap"),
        }
        // TODO: the cap is printed and nothing else: with `--max-conns 4`, a
        // fifth, a tenth, a thousandth client are all served. Make the cap
        // true, and make sure every connection that ends frees its place,
        // however it ends.
        loop {
            // `accept` says on stderr why it failed, when it does.
            let Some((stream, peer)) = accept(listener) else {
                continue;
            };
            // If the thread cannot start, `spawn` says so, and drops the
            // closure, and the stream in it: this one connection closes.
            spawn(peer, move || match echo(stream) {
                Ok(()) => eprintln!("{peer}: done"),
                Err(e) => eprintln!("{peer}: {e}"),
            });
        }
    }
}
// ANCHOR_END: todo
