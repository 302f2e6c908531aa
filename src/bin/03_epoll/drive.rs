//! The core: serving one connection's event. `on_ready` finds the
//! connection its token names and runs `drive`, which sends what is
//! queued, then reads and echoes while the queue has room (backpressure)
//! and the turn lasts; then, in level mode, `update_interest` tells epoll
//! what to watch next, and `close` frees the slot when the connection is
//! done.

use std::io::{self, Read};

use nix::sys::epoll::EpollEvent;

use crate::Trigger;
use crate::conn::{Conn, Interest, flags, token, untoken};
use crate::echo::{echo, flush};
use crate::setup::Server;
use crate::stats::Stats;

impl Server {
    // ANCHOR: on_ready
    /// A connection's socket is readable, writable, or has an error or hang-up
    /// pending. Whatever epoll said, the same two steps serve: send what is
    /// queued, then read what there is room for.
    pub(crate) fn on_ready(&mut self, token: u64) {
        let (index, generation) = untoken(token);
        let Some(conn) = self.conns.get_mut(index).and_then(Option::as_mut) else {
            return; // closed earlier in this batch of events
        };
        if conn.generation != generation {
            return; // an event for the slot's previous connection
        }
        let outcome = drive(
            conn,
            &mut self.scratch,
            self.max_queued,
            self.trigger,
            &mut self.stats,
        );
        match outcome {
            Ok(Next::Keep) => self.update_interest(index),
            Ok(Next::TurnOver) => {
                self.update_interest(index);
                // Level mode: epoll reports the unread bytes again by
                // itself. Edge mode: it will not (see `again.rs`).
                self.put_on_again(index, token);
            }
            Ok(Next::Close) => self.close(index),
            Err(e) => {
                // ECONNRESET, EPIPE, ...: this client is gone. Nobody else is
                // affected. (Rust ignores SIGPIPE, so EPIPE is only an error.)
                if !matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                ) {
                    eprintln!("connection error: {e}");
                }
                self.close(index);
            }
        }
    }
    // ANCHOR_END: on_ready

    // ANCHOR: interest
    /// Level-triggered only: watch for "writable" exactly while bytes are
    /// queued (a socket with room to write is writable nearly all the time,
    /// and asking regardless would wake us for nothing), and for "readable"
    /// only while we are willing to read (backpressure).
    fn update_interest(&mut self, index: usize) {
        if self.trigger == Trigger::Edge {
            return;
        }
        let max_queued = self.max_queued;
        let Some(conn) = self.conns[index].as_mut() else {
            return;
        };
        let wanted = Interest {
            read: !conn.peer_done && conn.queued() < max_queued,
            write: conn.queued() > 0,
        };
        if wanted != conn.interest {
            let mut event =
                EpollEvent::new(flags(wanted, self.trigger), token(index, conn.generation));
            match self.epoll.modify(&conn.stream, &mut event) {
                Ok(()) => conn.interest = wanted,
                Err(e) => {
                    eprintln!("cannot change what epoll watches: {e}");
                    self.close(index);
                }
            }
        }
    }
    // ANCHOR_END: interest

    // ANCHOR: close
    /// Closes a connection and frees its slot. Closing the descriptor also
    /// removes it from the epoll set, so no `epoll_ctl(DEL)` is needed.
    pub(crate) fn close(&mut self, index: usize) {
        if self.conns[index].take().is_some() {
            self.free.push(index);
            self.stats.closed += 1;
            // A descriptor is free again: if accepting was paused for lack
            // of one, try now.
            self.resume_accepting();
        }
    }
    // ANCHOR_END: close
}

/// What to do with a connection after serving an event.
enum Next {
    Keep,
    /// Its turn ran out with bytes perhaps still waiting: serve it again
    /// after the others.
    TurnOver,
    Close,
}

// ANCHOR: drive
// ANCHOR: reads_per_turn
/// The most reads one connection gets per turn: 256 KiB with our 64 KiB
/// scratch buffer. Without a limit, a turn lasts as long as reads come back
/// full, which is as long as the peer keeps sending faster than we echo,
/// and meanwhile every other client, and SIGINT, waits. The fault suite
/// (now `tests/signals.rs`) found this: 128 clients streaming flat out on a
/// busy machine kept the server from its signal for 13 seconds.
const READS_PER_TURN: u32 = 4;
// ANCHOR_END: reads_per_turn

// ANCHOR: drive_fn
/// Serves one readiness event: first send what is queued, then read and echo
/// what has arrived, as long as the queue has room and the turn lasts.
fn drive(
    conn: &mut Conn,
    scratch: &mut [u8],
    max_queued: usize,
    trigger: Trigger,
    stats: &mut Stats,
) -> io::Result<Next> {
    flush(conn, stats)?;
    let mut reads = 0;
    let mut turn_over = false;
    while !conn.peer_done && conn.queued() < max_queued {
        if reads == READS_PER_TURN {
            turn_over = true;
            break;
        }
        reads += 1;
        stats.reads += 1;
        let n = match conn.stream.read(scratch) {
            // The peer shut down its side: nothing more will come.
            Ok(0) => {
                conn.peer_done = true;
                break;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                stats.would_block += 1;
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        echo(conn, &scratch[..n], stats)?;
        // Level-triggered: a short read means the socket's receive queue was
        // empty a moment ago; if more arrives, epoll will say so again, and
        // we save the read that would only return EAGAIN. Edge-triggered:
        // epoll reports only *new* readiness, so we must read until EAGAIN
        // or data already waiting would never be reported again.
        if trigger == Trigger::Level && n < scratch.len() {
            break;
        }
    }
    // Backpressure: the queue is full, so we stopped reading, and the peer's
    // bytes wait in the kernel (which in turn stops the peer's sends with
    // TCP flow control). In edge mode no new edge will come for data already
    // waiting; the next "writable" edge, when the peer reads, brings us back
    // here, and the loop above resumes once the queue has drained.
    let paused = !conn.peer_done && conn.queued() >= max_queued;
    if paused && !conn.paused {
        stats.backpressure_pauses += 1;
    }
    conn.paused = paused;
    if conn.peer_done && conn.queued() == 0 {
        return Ok(Next::Close); // every byte echoed: close, which sends our FIN
    }
    Ok(if turn_over {
        Next::TurnOver
    } else {
        Next::Keep
    })
}
// ANCHOR_END: drive_fn
// ANCHOR_END: drive
