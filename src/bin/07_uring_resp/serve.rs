//! The core: serving a connection's input. Where lesson 05 queued each
//! received buffer to be sent back, here each is parsed: the requests in
//! it run in order, their replies go into the connection's reply buffer,
//! and the buffer goes back into the ring as soon as it is parsed, while
//! the replies wait for one send. A reply buffer that fills stops the
//! parsing, with the unparsed buffers held, which stops the receiving
//! (lesson 05's backpressure), until sends make room.

use std::io;

use crate::commands::{After, Request, execute};
use crate::conn::{Kind, Shot, pack};
use crate::frame::{Input, Next};
use crate::pool::NONE;
use crate::recv::Arm;
use crate::reply::{Full, Reply, SMALL_REPLY};
use crate::resp::ProtocolError;
use crate::setup::Server;

/// Why the parsing of one buffer stopped.
#[derive(Debug, PartialEq, Eq)]
enum Stop {
    /// The buffer is parsed to its end: it can go back into the ring.
    Used,
    /// The reply buffer has no room for the next reply.
    Full,
    /// QUIT or a protocol error: no more requests from this connection.
    Closing,
}

// ANCHOR: serve
impl Server {
    // ANCHOR: serve_loop
    /// Runs the connection's received requests, buffer by buffer, until
    /// its input is used up, its reply buffer is full, or it is closing.
    pub(crate) fn serve(&mut self, index: usize) -> io::Result<()> {
        let mut stop = Stop::Used;
        while stop == Stop::Used {
            let conn = &self.conns[index];
            if conn.head == NONE || conn.closing || conn.failed || self.stopping {
                break;
            }
            let bid = conn.head;
            let len = self.pool.len[usize::from(bid)] as usize;
            // SAFETY: buffer `bid` came to us in a completion and is out of
            // the ring: the kernel will not write it until `give_back`,
            // which comes only after this slice's last use, below.
            let buffer = unsafe { std::slice::from_raw_parts(self.pool.addr(bid, 0), len) };
            stop = self.serve_buffer(index, buffer);
            if stop == Stop::Used {
                self.release_head(index);
            }
        }
        if stop == Stop::Closing {
            self.stop_reading(index)?;
        }
        if stop == Stop::Full {
            self.extra.resp.full_pauses += 1;
        }
        let conn = &mut self.conns[index];
        if conn.replies > conn.sent && !conn.flagged {
            // Sent after this batch of completions: one send for the
            // replies to everything this batch brought.
            conn.flagged = true;
            self.extra.to_flush.push(index as u32);
        }
        if conn.held <= self.max_per_conn / 2 {
            // Buffers went back: receive again if the share stopped it.
            self.arm_recv(index, Arm::Again)?;
        }
        Ok(())
    }

    /// Parses and runs the requests of one buffer (after the carry's).
    fn serve_buffer(&mut self, index: usize, buffer: &[u8]) -> Stop {
        let conn = &mut self.conns[index];
        let (carry, free) = self.extra.arena.parts(index, conn.replies);
        let mut reply = Reply::new(free);
        let mut input = Input {
            carry,
            carried: &mut conn.carried,
            buffer,
            pos: &mut conn.offset,
        };
        let stop = loop {
            if reply.room() < SMALL_REPLY {
                break Stop::Full;
            }
            let next = input.next(&self.extra.limits, &mut self.extra.args);
            let Next::Request {
                in_carry,
                start,
                used,
            } = next
            else {
                if let Next::Error(e) = next {
                    protocol_error(&mut reply, e);
                    self.extra.resp.protocol_errors += 1;
                    break Stop::Closing;
                }
                break Stop::Used;
            };
            let base = if in_carry { &*input.carry } else { buffer };
            let request = Request {
                base: &base[start..start + used],
                spans: &self.extra.args,
            };
            match execute(&request, &mut self.extra.store, self.extra.now, &mut reply) {
                Ok(after) => {
                    self.extra.resp.commands += 1;
                    self.extra.resp.from_carry += u64::from(in_carry);
                    input.done(next);
                    if after == After::Close {
                        break Stop::Closing;
                    }
                }
                // The request stays where it is, unrun, until there is room.
                Err(Full) => break Stop::Full,
            }
        };
        conn.replies += reply.written;
        stop
    }
    // ANCHOR_END: serve_loop

    // ANCHOR: stop_reading
    /// The connection's oldest buffer is parsed: back into the ring.
    fn release_head(&mut self, index: usize) {
        let conn = &mut self.conns[index];
        let bid = conn.head;
        conn.head = self.pool.next[usize::from(bid)];
        if conn.head == NONE {
            conn.tail = NONE;
        }
        conn.offset = 0;
        conn.held -= 1;
        self.pool.give_back(bid);
    }

    /// QUIT or a protocol error: read no more from this connection. Its
    /// unparsed buffers go back, its receive is cancelled; it closes once
    /// its replies are sent (`close_if_done`), as Redis closes "after reply".
    fn stop_reading(&mut self, index: usize) -> io::Result<()> {
        while self.conns[index].head != NONE {
            self.release_head(index);
        }
        let conn = &mut self.conns[index];
        conn.closing = true;
        conn.carried = 0;
        if conn.recv == Shot::Armed {
            conn.recv = Shot::Cancelling;
            let target = pack(Kind::Recv, index, conn.generation);
            self.cancel(target)?;
        }
        Ok(())
    }
}

/// `-ERR Protocol error: ...`, in Redis's words.
fn protocol_error(reply: &mut Reply, error: ProtocolError) {
    let (text, got) = error.message();
    reply.raw(b"-ERR Protocol error: ");
    reply.raw(text.as_bytes());
    if let Some(byte) = got {
        reply.raw(&[byte, b'\'']);
    }
    reply.raw(b"\r\n");
}
// ANCHOR_END: stop_reading
// ANCHOR_END: serve

/// Counters of the protocol side, printed at exit after lesson 05's.
#[derive(Default)]
pub(crate) struct RespStats {
    pub(crate) commands: u64,
    /// Requests that a buffer's end cut, framed from the carry.
    pub(crate) from_carry: u64,
    pub(crate) protocol_errors: u64,
    /// Times a reply buffer filled and parsing waited for a send.
    pub(crate) full_pauses: u64,
    pub(crate) expired_swept: u64,
}

impl std::fmt::Display for RespStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "commands {} from_carry {} protocol_errors {} full_pauses {} expired_swept {}",
            self.commands,
            self.from_carry,
            self.protocol_errors,
            self.full_pauses,
            self.expired_swept
        )
    }
}
