//! Exercise 07-framing: a request cut by a buffer's end.
//!
//! Lesson 07, whole but for its framing: the region below is the module
//! `frame`, which finds where each request ends in the buffers the kernel
//! filled, and copies into the connection's carry only a request that a
//! buffer's end cut. With big buffers, almost nothing is cut and the
//! server looks right; with 64-byte buffers, almost everything is, and a
//! valid pipeline gets `-ERR Protocol error` half way.
//!
//! The rest of the server is `exercises/programs/07-resp.rs` (lesson 07's
//! own files), and its STRLEN command is exercise 07-strlen's region,
//! solved, in `exercises/solutions/07-strlen.rs`; you need not change it.
//!
//! Run it, and grade it:
//!
//! ```text
//! cargo run --example 07-framing -- --buffers 64 --buffer-size 64   # listens on 127.0.0.1:7878
//! cargo run --bin echo-check -- --exercise 07-framing               # builds, starts and grades it
//! ```
//!
//! The statement is `exercises/07-framing/README.md`.

include!("../programs/07-resp.rs");

// Exercise 07-strlen's region, solved: the STRLEN command.
#[path = "../solutions/07-strlen.rs"]
mod strlen;

#[cfg(target_os = "linux")]
// ANCHOR: todo
mod frame {
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

        /// The carry's request (`used` bytes) is done: empty the carry.
        fn unread(&mut self, used: usize) {
            // TODO: with 64-byte buffers, `resp_split` gets a protocol error in
            // the middle of a valid pipeline. Which bytes does the carry hold
            // when its request is done, and where did the ones after `used`
            // come from?
            debug_assert!(used <= *self.carried);
            *self.carried = 0;
        }
    }
}
// ANCHOR_END: todo
