//! Exercise 07-framing, the reference solution: the `frame` region of the
//! server in `exercises/programs/07-resp.rs`, solved: lesson 07's own
//! framing (`src/bin/07_uring_resp/frame.rs`). The reference solution's
//! program, `exercises/solutions/07-resp.rs`, takes it in, and so does
//! exercise 07-strlen's starter.
//!
//! When a request cut by a buffer's end is whole, the carry holds it and
//! the bytes after it, which came from the current buffer: the last ones
//! copied. The starter emptied the carry and dropped them, so the parser
//! went on from the middle of the next request, and found garbage: a
//! protocol error in a valid pipeline. Stepping back in the buffer by as
//! many bytes reads them again where they lie, at no cost.

// ANCHOR: solution
use crate::resp::{Limits, Parsed, ProtocolError, parse};

/// The next step for a connection's input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// A whole request, `used` bytes, starting at `start` of the carry (if
    /// `in_carry`) or of the buffer. Its arguments are in `args`. Run it,
    /// then call `done` with this value.
    Request {
        in_carry: bool,
        start: usize,
        used: usize,
    },
    /// This buffer is used up (a partial request may wait in the carry).
    NeedMore,
    Error(ProtocolError),
}

/// A connection's input: the carry, and the buffer being read.
pub(crate) struct Input<'a> {
    /// The carry: `max_request` bytes of this connection's own memory, its
    /// first `carried` bytes the start of a request cut by a buffer's end.
    pub(crate) carry: &'a mut [u8],
    pub(crate) carried: &'a mut usize,
    /// The received bytes, and how far we have read them.
    pub(crate) buffer: &'a [u8],
    pub(crate) pos: &'a mut usize,
}

impl Input<'_> {
    /// Finds the next request, copying into the carry where a buffer's end
    /// cuts one.
    pub(crate) fn next(&mut self, limits: &Limits, args: &mut Vec<(u32, u32)>) -> Next {
        loop {
            if *self.carried == 0 {
                let rest = &self.buffer[*self.pos..];
                if rest.is_empty() {
                    return Next::NeedMore;
                }
                match parse(rest, limits, args) {
                    Parsed::Command(used) => {
                        let start = *self.pos;
                        return Next::Request {
                            in_carry: false,
                            start,
                            used,
                        };
                    }
                    Parsed::Skip(used) => *self.pos += used,
                    Parsed::Error(e) => return Next::Error(e),
                    // Cut by the buffer's end: carry the start of it.
                    Parsed::Incomplete => self.extend_carry(),
                }
            } else {
                match parse(&self.carry[..*self.carried], limits, args) {
                    Parsed::Command(used) => {
                        return Next::Request {
                            in_carry: true,
                            start: 0,
                            used,
                        };
                    }
                    Parsed::Skip(used) => self.unread(used),
                    Parsed::Error(e) => return Next::Error(e),
                    Parsed::Incomplete if *self.pos == self.buffer.len() => {
                        return Next::NeedMore;
                    }
                    Parsed::Incomplete => self.extend_carry(),
                }
            }
        }
    }

    /// The request `next` returned has run: step past it.
    pub(crate) fn done(&mut self, request: Next) {
        match request {
            Next::Request {
                in_carry: false,
                used,
                ..
            } => *self.pos += used,
            Next::Request {
                in_carry: true,
                used,
                ..
            } => self.unread(used),
            _ => {}
        }
    }

    /// Appends as much of the buffer's rest as fits to the carry. `parse`
    /// guarantees that a partial request is shorter than `max_request`,
    /// the carry's size, so a partial request always fits whole.
    fn extend_carry(&mut self) {
        let rest = &self.buffer[*self.pos..];
        let n = rest.len().min(self.carry.len() - *self.carried);
        self.carry[*self.carried..*self.carried + n].copy_from_slice(&rest[..n]);
        *self.carried += n;
        *self.pos += n;
    }

    /// The carry's request (`used` bytes) is done. The carry's bytes after
    /// it came from the current buffer, the last ones we copied: rather than
    /// move them, read them again where they lie, and empty the carry.
    fn unread(&mut self, used: usize) {
        let extra = *self.carried - used;
        debug_assert!(extra <= *self.pos);
        *self.pos -= extra;
        *self.carried = 0;
    }
}
// ANCHOR_END: solution
