//! Exercise 02-connection-cap, the reference solution.
//!
//! A counter of open connections, shared by the accept loop (which adds one
//! for each connection it accepts) and the connection threads (each takes
//! its one away when it ends). Two choices make it hold:
//!
//! - The count goes up in the accept loop, before the thread starts, not in
//!   the thread: the accept loop decides at once, from a count that already
//!   includes every connection it has let in.
//! - The count goes down in a `Drop`, not after `serve` returns: a guard
//!   that owns one count and gives it back when dropped. The thread drops it
//!   however it ends: `echo` returning an error, a panic unwinding, or the
//!   thread never starting (then `spawn` drops its closure, guard and all).
//!   A decrement written after `echo(stream)?` would leak a place on every
//!   peer that resets, and after enough resets nobody would be served.
//!
//! Only `accept_loop` differs from the starter; the rest of the server is
//! `exercises/programs/02-connection-cap.rs` and `exercises/common/blocking.rs`.
//!
//! ```text
//! cargo run --bin echo-check -- --exercise 02-connection-cap --solution
//! ```

include!("../programs/02-connection-cap.rs");

// ANCHOR: solution
mod todo {
    use std::net::TcpListener;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::{accept, echo, spawn};

    /// One open connection's place in the count; dropping it frees the place.
    struct Place(Arc<AtomicU64>);

    impl Drop for Place {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Accepts clients forever and hands each one to a thread of its own,
    /// while fewer than `max_conns` are open; closes the others at once.
    pub fn accept_loop(listener: &TcpListener, max_conns: Option<u64>) {
        match max_conns {
            Some(cap) => eprintln!("connection cap: {cap} (--max-conns)"),
            None => eprintln!("no connection cap"),
        }
        // An atomic, not a `Mutex<u64>`: one number, changed by one
        // instruction. `Relaxed` is enough because the count guards no other
        // data; all we need is that no increment or decrement is lost.
        let open = Arc::new(AtomicU64::new(0));
        loop {
            // `accept` says on stderr why it failed, when it does.
            let Some((stream, peer)) = accept(listener) else {
                continue;
            };
            // Count this connection first, then look: `fetch_add` returns how
            // many were open before it. Only this thread adds, so nobody can
            // slip in between; the threads only take away, which can only
            // make room.
            let before = open.fetch_add(1, Ordering::Relaxed);
            let place = Place(Arc::clone(&open));
            if max_conns.is_some_and(|cap| before >= cap) {
                // Dropping the stream closes it: the client sees its
                // connection end (EOF, or a reset if it had sent bytes we
                // never read). Dropping `place` gives the count back.
                eprintln!("{peer}: {before} connections open already; closing this one");
                drop(place);
                drop(stream);
                continue;
            }
            // The place moves into the closure: if the thread cannot start,
            // `spawn` drops the closure, place and all; if it runs, `_place`
            // lives until the thread ends, however it ends.
            spawn(peer, move || {
                let _place = place;
                match echo(stream) {
                    Ok(()) => eprintln!("{peer}: done"),
                    Err(e) => eprintln!("{peer}: {e}"),
                }
            });
        }
    }
}
// ANCHOR_END: solution
