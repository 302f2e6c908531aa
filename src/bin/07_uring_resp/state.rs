//! What a protocol adds to lesson 05's server. The server itself, and
//! setting it up (the ring, the pool and its rings, each connection's share,
//! the sockets), are lesson 05's `setup.rs`, included unchanged; its
//! `Server` has one field for what a lesson built on it adds, `extra`, and
//! this is lesson 07's: each connection's carry and reply buffer (the
//! arena), the limits on requests, and the map.

use std::io;
use std::time::Instant;

use crate::Args;
use crate::arena::Arena;
use crate::resp::Limits;
use crate::serve::RespStats;
use crate::setup::Server;
use crate::store::Store;

// ANCHOR: extra
/// Lesson 07's part of the server's state, allocated at start-up.
pub(crate) struct Extra {
    /// Every connection's carry and reply buffer.
    pub(crate) arena: Arena,
    pub(crate) limits: Limits,
    /// The current request's arguments, as spans; room for `max_args`.
    pub(crate) args: Vec<(u32, u32)>,
    /// Connections with replies to send after this batch of completions;
    /// room for every slot.
    pub(crate) to_flush: Vec<u32>,
    pub(crate) store: Store,
    /// The clock, read once per batch: milliseconds since `started`.
    pub(crate) now: u64,
    pub(crate) started: Instant,
    pub(crate) sweep_armed: bool,
    pub(crate) resp: RespStats,
}

impl Extra {
    /// `--batch auto` may try batches while the server is not busy, and
    /// keep them while they fill (`batch.rs`): here the clients set the
    /// pace, and a batch saves them a wake-up per reply.
    pub(crate) const BATCH_TRIALS: bool = true;

    pub(crate) fn new(args: &Args, max_conns: usize) -> Result<Extra, String> {
        let limits = limits(args)?;
        let arena = Arena::new(max_conns, limits.max_request, args.reply_buffer as usize)?;
        Ok(Extra {
            arena,
            limits,
            args: Vec::with_capacity(limits.max_args),
            to_flush: Vec::with_capacity(max_conns),
            store: Store::new(args.max_memory as usize),
            now: 0,
            started: Instant::now(),
            sweep_armed: false,
            resp: RespStats::default(),
        })
    }

    /// The start-up line about requests and the map.
    pub(crate) fn describe(&self, args: &Args) {
        let limits = &self.limits;
        eprintln!(
            "resp: requests of at most {} bytes and {} arguments, inline lines of at most {} \
             bytes, {} bytes of replies per connection, {} bytes for keys and values",
            limits.max_request,
            limits.max_args,
            limits.max_inline,
            args.reply_buffer,
            args.max_memory
        );
    }
}

impl Server {
    /// What lesson 07 queues at start-up besides 05's requests: the timer of
    /// the expiry sweep (`sweep.rs`).
    pub(crate) fn start_extra(&mut self) -> io::Result<()> {
        self.arm_sweep()
    }
}
// ANCHOR_END: extra

// ANCHOR: limits
/// The limits on requests, checked against each other: a request must fit
/// in the carry, and the biggest reply (a value as long as a request) in
/// an empty reply buffer, or a connection could wait forever for room.
fn limits(args: &Args) -> Result<Limits, String> {
    let max_request = args.max_request as usize;
    if (args.reply_buffer as usize) < max_request + 1024 {
        return Err(format!(
            "--reply-buffer {} is too small for --max-request {max_request}: it must hold the \
             biggest reply, a value that long, with 1024 bytes to spare",
            args.reply_buffer
        ));
    }
    Ok(Limits {
        max_args: args.max_args as usize,
        max_request,
        // Redis's 64 KiB, or less when requests are smaller.
        max_inline: (64 * 1024).min(max_request - 1),
    })
}
// ANCHOR_END: limits
