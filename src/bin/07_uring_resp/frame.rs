//! The core: framing across buffers. The kernel cuts the byte stream into
//! buffers wherever it likes, so a request can start in one buffer and end
//! in the next (or three later). Most requests lie whole inside one buffer,
//! and are parsed where they lie. Only a request cut by a buffer's end is
//! copied, into the connection's *carry*, which the next buffers' bytes
//! extend until the request is whole.
//!
//! ```text
//!   buffer 1                        buffer 2
//!   +---------------+------------+  +-------+-----------------------+
//!   | GET a  GET b  | SET k v... |  | ...al | GET c  GET d          |
//!   +---------------+------------+  +-------+-----------------------+
//!     parsed in place  \ copied       \ copied until whole; then the
//!                       v              v rest is parsed in place again
//!                      carry: | SET k v... ...al |
//! ```
//!
//! The carry takes the whole rest of the next buffer (we cannot know where
//! the request ends before it is whole), and once the request is whole,
//! what it did not use is left in the buffer: the next request is parsed
//! in place again. So a request is copied at most once, and only when it
//! was cut.

use crate::resp::{Limits, Parsed, ProtocolError, parse};

// ANCHOR: frame
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
// ANCHOR_END: frame

/// Property tests, with a small generator of our own (no dependency): any
/// split of any valid pipeline frames to the same requests, and arbitrary
/// bytes, split anywhere, never panic.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::tests::LIMITS;

    /// xorshift64*: a deterministic stream of pseudo-random numbers.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// A random valid pipeline and the requests it holds.
    fn pipeline(rng: &mut Rng) -> (Vec<u8>, Vec<Vec<Vec<u8>>>) {
        let (mut bytes, mut requests) = (Vec::new(), Vec::new());
        for _ in 0..rng.below(20) + 1 {
            let inline = rng.below(4) == 0;
            let count = rng.below(5) + 1;
            let args: Vec<Vec<u8>> = (0..count)
                .map(|_| {
                    let len = if inline {
                        1 + rng.below(8)
                    } else {
                        rng.below(300)
                    };
                    (0..len)
                        .map(|_| {
                            if inline {
                                b'a' + rng.below(26) as u8
                            } else {
                                rng.below(256) as u8
                            }
                        })
                        .collect()
                })
                .collect();
            if inline {
                bytes.extend(args.join(&b' ').iter());
                bytes.extend(b"\r\n");
            } else {
                bytes.extend(format!("*{count}\r\n").bytes());
                for a in &args {
                    bytes.extend(format!("${}\r\n", a.len()).bytes());
                    bytes.extend(a);
                    bytes.extend(b"\r\n");
                }
            }
            if rng.below(8) == 0 {
                bytes.extend(b"*0\r\n"); // skipped, no request
            }
            requests.push(args);
        }
        (bytes, requests)
    }

    /// Feeds `bytes` cut at `cuts`, as buffers would bring them, and
    /// collects the requests framed (or the error that ended them).
    fn frame(bytes: &[u8], cuts: &[usize]) -> (Vec<Vec<Vec<u8>>>, Option<ProtocolError>) {
        let mut carry = vec![0u8; LIMITS.max_request];
        let mut carried = 0;
        let (mut out, mut args) = (Vec::new(), Vec::new());
        let mut from = 0;
        for &to in cuts.iter().chain(std::iter::once(&bytes.len())) {
            let buffer = &bytes[from..to];
            from = to;
            let mut pos = 0;
            let mut input = Input {
                carry: &mut carry,
                carried: &mut carried,
                buffer,
                pos: &mut pos,
            };
            loop {
                match input.next(&LIMITS, &mut args) {
                    Next::NeedMore => break,
                    Next::Error(e) => return (out, Some(e)),
                    request @ Next::Request {
                        in_carry, start, ..
                    } => {
                        let base: &[u8] = if in_carry { input.carry } else { buffer };
                        out.push(
                            args.iter()
                                .map(|&(s, e)| {
                                    base[start + s as usize..start + e as usize].to_vec()
                                })
                                .collect(),
                        );
                        input.done(request);
                    }
                }
            }
        }
        (out, None)
    }

    fn random_cuts(rng: &mut Rng, len: usize) -> Vec<usize> {
        let mut cuts: Vec<usize> = (0..rng.below(12)).map(|_| rng.below(len + 1)).collect();
        if rng.below(3) == 0 {
            cuts.extend((1..len).step_by(1 + rng.below(3))); // tiny buffers
        }
        cuts.sort_unstable();
        cuts
    }

    #[test]
    fn any_split_of_a_valid_pipeline_frames_the_same_requests() {
        let mut rng = Rng(0x5eed_1234_abcd_0001);
        for round in 0..2000 {
            let (bytes, requests) = pipeline(&mut rng);
            assert_eq!(
                frame(&bytes, &[]),
                (requests.clone(), None),
                "round {round}"
            );
            let cuts = random_cuts(&mut rng, bytes.len());
            assert_eq!(
                frame(&bytes, &cuts),
                (requests, None),
                "round {round}, cuts {cuts:?}"
            );
        }
    }

    #[test]
    fn arbitrary_bytes_split_anywhere_never_panic_and_frame_alike() {
        let mut rng = Rng(0x0bad_cafe_0000_0007);
        let alphabet = b"*$\r\n0123456789-abc \"'x";
        for _ in 0..5000 {
            let len = rng.below(200);
            let bytes: Vec<u8> = (0..len)
                .map(|_| match rng.below(4) {
                    0 => rng.below(256) as u8,
                    _ => alphabet[rng.below(alphabet.len())],
                })
                .collect();
            let whole = frame(&bytes, &[]);
            let cuts = random_cuts(&mut rng, bytes.len());
            assert_eq!(frame(&bytes, &cuts), whole, "{bytes:?} cut at {cuts:?}");
        }
    }

    #[test]
    fn a_request_cut_by_a_buffer_is_copied_once_and_the_rest_read_in_place() {
        let bytes = b"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\na\r\n";
        let (mut carry, mut carried, mut args) = (vec![0; 4096], 0, Vec::new());
        let mut pos = 0;
        let first = &bytes[..20];
        let mut input = Input {
            carry: &mut carry,
            carried: &mut carried,
            buffer: first,
            pos: &mut pos,
        };
        let ping = input.next(&LIMITS, &mut args);
        assert_eq!(
            ping,
            Next::Request {
                in_carry: false,
                start: 0,
                used: 14
            }
        );
        input.done(ping);
        assert_eq!(input.next(&LIMITS, &mut args), Next::NeedMore);
        assert_eq!(carried, 6, "the cut request's start is carried");
        let (mut pos, second) = (0, &bytes[20..]);
        let mut input = Input {
            carry: &mut carry,
            carried: &mut carried,
            buffer: second,
            pos: &mut pos,
        };
        let get = input.next(&LIMITS, &mut args);
        assert_eq!(
            get,
            Next::Request {
                in_carry: true,
                start: 0,
                used: 20
            }
        );
        input.done(get);
        assert_eq!((carried, pos), (0, second.len()));
    }
}
