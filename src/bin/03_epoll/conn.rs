//! The core: the pieces every other file uses. The token epoll hands back
//! with each event and how it names a connection, the connection itself,
//! and the epoll flags for what a connection wants to hear about.

use std::net::TcpStream;

use nix::sys::epoll::EpollFlags;

use crate::Trigger;

// ANCHOR: tokens
// Each registered descriptor carries a 64-bit token that epoll hands back
// with its events. Two tokens are reserved; every other token names a slot
// in the connection table (the "slab") plus that slot's generation.
pub(crate) const LISTENER: u64 = u64::MAX;
pub(crate) const SIGNALS: u64 = u64::MAX - 1;

/// `generation << 32 | index`. Why not a pointer to the connection? A
/// pointer goes stale when the table grows (a `Vec` moves its contents) or
/// the connection is freed, and nothing would tell us. An index is checked
/// against the table on every event.
///
/// Why not the file descriptor? Because the kernel reuses the lowest free
/// descriptor number at once. Close connection A (fd 7) while handling one
/// batch of events, accept connection B (fd 7 again), and a later event of
/// the same batch, queued for A, would be applied to B. A slot index has
/// the same problem, so the slot's generation, bumped on every reuse, goes
/// into the token too, and a stale event is recognised and dropped.
pub(crate) fn token(index: usize, generation: u32) -> u64 {
    (u64::from(generation) << 32) | index as u64
}

pub(crate) fn untoken(token: u64) -> (usize, u32) {
    ((token & 0xffff_ffff) as usize, (token >> 32) as u32)
}
// ANCHOR_END: tokens

// ANCHOR: conn
/// One client.
pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    /// Bumped each time this slot is reused; see [`token`].
    pub(crate) generation: u32,
    /// Bytes read but not yet written back, oldest first; `queue[sent..]`
    /// is still to be sent. Empty (and unallocated) while the peer keeps up.
    pub(crate) queue: Vec<u8>,
    pub(crate) sent: usize,
    /// The peer has shut down its side (read returned 0): finish sending,
    /// then close.
    pub(crate) peer_done: bool,
    /// Reading is paused because the queue is full (backpressure).
    pub(crate) paused: bool,
    /// What epoll is currently asked to report for this socket: level mode
    /// changes it as the queue fills and drains; edge mode never does.
    pub(crate) interest: Interest,
    /// Edge mode: this connection is on the server's `again` list, waiting
    /// for another turn. A connection goes on it at most once.
    pub(crate) on_again: bool,
}

/// Readable, writable, or both.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Interest {
    pub(crate) read: bool,
    pub(crate) write: bool,
}

impl Conn {
    pub(crate) fn queued(&self) -> usize {
        self.queue.len() - self.sent
    }
}
// ANCHOR_END: conn

// ANCHOR: flags
/// The epoll flags for an interest, in the chosen trigger mode.
pub(crate) fn flags(interest: Interest, trigger: Trigger) -> EpollFlags {
    let mut flags = EpollFlags::empty();
    if interest.read {
        flags |= EpollFlags::EPOLLIN;
    }
    if interest.write {
        flags |= EpollFlags::EPOLLOUT;
    }
    if trigger == Trigger::Edge {
        flags |= EpollFlags::EPOLLET;
    }
    flags
}
// ANCHOR_END: flags
