//! The options: lesson 05's, and the protocol's bounds (`--max-request`,
//! `--max-args`, `--reply-buffer`, `--max-memory`).

use clap::{Parser, ValueEnum};
use uring_echo_book::cli::CommonArgs;

// ANCHOR: options
/// A pipelined RESP (Redis protocol) server on io_uring with multishot
/// accept, multishot recv and a registered buffer ring (Linux 6.0+).
#[derive(Parser)]
#[command(version)]
pub(crate) struct Args {
    #[command(flatten)]
    pub(crate) common: CommonArgs,

    /// Entries in the submission queue.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=32768))]
    pub(crate) ring_entries: u32,

    /// Buffers in the shared pool (a power of two, from 2 to 32768). A
    /// quarter of them (at least one) is the reserve for connections that
    /// hold no buffer; the rest is the open pool every receive draws from.
    #[arg(long, default_value_t = 1024, value_parser = parse_buffers)]
    pub(crate) buffers: u16,

    /// Size of each buffer in bytes.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=(1 << 20)))]
    pub(crate) buffer_size: u32,

    /// Buffers of the open pool one connection may hold (received, not yet
    /// sent back) before we stop receiving from it. At most a quarter of
    /// the open pool, whatever this says.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=32768))]
    pub(crate) max_buffers_per_conn: u32,

    /// Most connections served at once: the connection table is allocated
    /// at start-up, this big. Accepting pauses at the cap: clients beyond
    /// it wait in the kernel's listen queue until a slot frees up.
    #[arg(long, default_value_t = 16384, value_parser = clap::value_parser!(u32).range(1..=30000))]
    pub(crate) max_conns: u32,

    /// How connections receive from the open pool: `multishot` (one request
    /// per connection, buffers taken in bursts), `one-buffer` (one request
    /// per buffer, so a connection never holds more than its share), or
    /// `auto`: multishot where the kernel bounds a burst (Linux 6.8) and the
    /// open pool is big enough for bursts, one-buffer otherwise.
    #[arg(long, value_enum, default_value_t = RecvChoice::Auto)]
    pub(crate) recv: RecvChoice,

    /// How the kernel runs completion work for this ring. `auto` tries
    /// `defer`, then `coop`, then `plain`, and says which it got.
    #[arg(long, value_enum, default_value_t = Taskrun::Auto)]
    pub(crate) taskrun: Taskrun,

    /// SO_SNDBUF for every connection, in bytes (default: the kernel's).
    /// A send buffer smaller than one of our buffers makes short sends
    /// frequent: try `--buffer-size 65536 --sndbuf 4096` and watch the
    /// `short_sends` counter at exit.
    #[arg(long, value_name = "BYTES")]
    pub(crate) sndbuf: Option<usize>,

    /// Completions each io_uring_enter waits for: `auto`, or a number. 1
    /// returns as soon as there is anything to do: the lowest latency. More
    /// make fewer system calls under heavy load, at a cost in latency and,
    /// with few busy clients, in throughput (the chapter measures both).
    /// `auto` waits for more only while 16 or more connections are busy,
    /// and the server is busy too or batches tried now and then fill.
    /// Above 1 it needs Linux 6.12: past --batch-wait-usec after the first
    /// completion, the wait returns with what has come.
    #[arg(long, default_value = "auto", value_parser = parse_batch)]
    pub(crate) batch: BatchChoice,

    /// When waiting for a batch: the longest an enter waits for the whole
    /// batch after the first completion, in microseconds.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub(crate) batch_wait_usec: u32,

    /// Bytes of one request, all its arguments together; a bulk that would
    /// pass it is "Protocol error: invalid bulk length". Also the size of
    /// each connection's carry.
    #[arg(long, default_value_t = 64 * 1024, value_parser = clap::value_parser!(u32).range(64..=(64 << 20)))]
    pub(crate) max_request: u32,

    /// Arguments of one request; more is "Protocol error: invalid
    /// multibulk length".
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=(1 << 20)))]
    pub(crate) max_args: u32,

    /// Bytes of replies a connection may have waiting to be sent; past
    /// that, its requests wait unparsed, and then its receive stops. At
    /// least --max-request plus 1024.
    #[arg(long, default_value_t = 128 * 1024, value_parser = clap::value_parser!(u32).range(1088..=(128 << 20)))]
    pub(crate) reply_buffer: u32,

    /// Bytes the keys and values may take (an estimate, with a fixed cost
    /// per key); a write past it gets "-OOM command not allowed when used
    /// memory > 'maxmemory'.".
    #[arg(long, default_value_t = 256 << 20)]
    pub(crate) max_memory: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
pub(crate) enum RecvChoice {
    Auto,
    Multishot,
    OneBuffer,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
pub(crate) enum Taskrun {
    Auto,
    /// SINGLE_ISSUER | DEFER_TASKRUN (Linux 6.1): completion work runs only
    /// when we enter the kernel to wait for it, in batches.
    Defer,
    /// COOP_TASKRUN (Linux 5.19): the kernel does not interrupt us to run
    /// completion work; it runs at our next system call.
    Coop,
    /// Neither: completion work may interrupt the program at any time.
    Plain,
}

pub(crate) fn parse_buffers(text: &str) -> Result<u16, String> {
    let n: u32 = text.parse().map_err(|e| format!("{e}"))?;
    if !(2..=32768).contains(&n) || !n.is_power_of_two() {
        return Err(
            "a power of two from 2 to 32768 (the kernel's rule for buffer rings, and one \
             buffer at least for the reserve)"
                .into(),
        );
    }
    Ok(n as u16)
}
/// What `--batch` asked for (see `batch.rs`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum BatchChoice {
    /// Wait for a batch only while it costs nothing: many busy connections
    /// and a busy server.
    Auto,
    /// Always wait for this many completions (or the time limit).
    Fixed(u32),
}

/// Parses `--batch`: `auto`, or a number from 1 to 4096.
pub(crate) fn parse_batch(text: &str) -> Result<BatchChoice, String> {
    if text == "auto" {
        return Ok(BatchChoice::Auto);
    }
    match text.parse::<u32>() {
        Ok(n) if (1..=4096).contains(&n) => Ok(BatchChoice::Fixed(n)),
        _ => Err("`auto`, or a number of completions from 1 to 4096".into()),
    }
}
// ANCHOR_END: options
