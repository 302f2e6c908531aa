//! The core, first part: what a request's user_data says, and the state
//! of one connection. No buffer in it: a connection holds buffers of the
//! pool (`pool.rs`) only while their bytes wait to be sent back.

use std::os::fd::OwnedFd;

use crate::pool::{NONE, OPEN};

// ANCHOR: user_data
// 64 bits of user_data per request, as in lesson 04:
//
//   63      56 55                  32 31                               0
//  +----------+----------------------+----------------------------------+
//  |   kind   |  generation (24 bit) |   connection index (32 bit)      |
//  +----------+----------------------+----------------------------------+
//
// With multishot requests the generation matters more than before: one
// request keeps producing completions, so "which connection, which life of
// that slot" must be answerable for every one of them.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    Accept = 1,
    Recv = 2,
    Send = 3,
    Signal = 4,
    Timeout = 5,
    Cancel = 6,
}

pub(crate) fn pack(kind: Kind, index: usize, generation: u32) -> u64 {
    ((kind as u64) << 56) | (u64::from(generation & 0xff_ffff) << 32) | (index as u64 & 0xffff_ffff)
}

pub(crate) fn unpack(user_data: u64) -> (Option<Kind>, usize, u32) {
    let kind = match user_data >> 56 {
        1 => Some(Kind::Accept),
        2 => Some(Kind::Recv),
        3 => Some(Kind::Send),
        4 => Some(Kind::Signal),
        5 => Some(Kind::Timeout),
        6 => Some(Kind::Cancel),
        _ => None,
    };
    (
        kind,
        (user_data & 0xffff_ffff) as usize,
        ((user_data >> 32) & 0xff_ffff) as u32,
    )
}
// ANCHOR_END: user_data

// ANCHOR: conn
/// Where a multishot request (a connection's receive, or the accept) stands.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Shot {
    /// Not armed: it ended, or never started.
    Idle,
    /// Armed: the kernel posts a completion whenever there is something.
    Armed,
    /// We asked the kernel to cancel it; its last completion is still due.
    Cancelling,
}

/// How a connection receives from the open pool: a multishot request that
/// takes buffers as data comes, or one request per buffer (see
/// `choose_recv`, in `setup.rs`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum RecvMode {
    Multishot,
    OneBuffer,
}

impl RecvMode {
    pub(crate) fn name(self) -> &'static str {
        match self {
            RecvMode::Multishot => "multishot",
            RecvMode::OneBuffer => "one-buffer",
        }
    }
}

// ANCHOR: conn_struct
/// One slot of the connection table, allocated once at start-up.
pub(crate) struct Conn {
    /// The socket; `None` marks a free slot.
    pub(crate) socket: Option<OwnedFd>,
    pub(crate) generation: u32,
    pub(crate) recv: Shot,
    /// The group the armed receive draws from: OPEN or RESERVE.
    pub(crate) recv_from: u16,
    /// A receive met an empty open pool (ENOBUFS): the data waits in the
    /// socket, and the next receive comes from the reserve.
    pub(crate) starved: bool,
    /// A send is in flight. At most one per connection: two could complete
    /// out of order after a short send, and bytes would be reordered.
    pub(crate) sending: bool,
    /// Received buffers waiting to be sent back, oldest first, linked
    /// through `Pool::next`; `offset` bytes of the first are already sent.
    pub(crate) head: u16,
    pub(crate) tail: u16,
    pub(crate) held: u32,
    pub(crate) offset: usize,
    /// The peer shut down its side: a receive returned 0.
    pub(crate) peer_done: bool,
    /// An error ended this connection: close it once nothing is in flight.
    pub(crate) failed: bool,
    /// This slot is in `Server::waiting`, in line for a buffer.
    /// It belongs to the slot, not to one connection: a slot closed while it
    /// waits keeps its place, and the wake-up finds nothing to do.
    pub(crate) waiting: bool,
    /// The last window of `--batch auto` in which this connection was
    /// counted as busy (see `batch.rs`).
    pub(crate) window: u32,
}
// ANCHOR_END: conn_struct

impl Conn {
    pub(crate) fn free() -> Conn {
        Conn {
            socket: None,
            generation: 0,
            recv: Shot::Idle,
            recv_from: OPEN,
            starved: false,
            sending: false,
            head: NONE,
            tail: NONE,
            held: 0,
            offset: 0,
            peer_done: false,
            failed: false,
            waiting: false,
            window: 0,
        }
    }
}
// ANCHOR_END: conn

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_round_trips() {
        for (kind, index, generation) in [
            (Kind::Recv, 0, 0),
            (Kind::Send, 16383, 0xff_ffff),
            (Kind::Accept, 0, 0),
        ] {
            assert_eq!(
                unpack(pack(kind, index, generation)),
                (Some(kind), index, generation)
            );
        }
    }
}
