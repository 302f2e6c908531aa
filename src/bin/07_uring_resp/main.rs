//! 07_uring_resp — from echo to a protocol: a pipelined RESP server (a
//! small Redis) on lesson 05's io_uring loop.
//!
//! An echo server never has to know where one message ends. A real
//! protocol does, for every byte, across buffer boundaries the kernel
//! chooses: a request can start in one received buffer and end in the
//! next. And a client that *pipelines* sends many requests before it reads
//! a reply, so one received buffer can hold sixty of them, whose replies
//! must leave in order, in as few sends as possible.
//!
//! Lesson 05's loop is kept whole (multishot accept and receive, the
//! registered buffer ring with its reserve, one send in flight per
//! connection, `--batch auto`): its files are included from
//! `src/bin/05_uring_multishot/` where they do not change. What is new:
//!
//! - **framing** (`resp.rs`, `frame.rs`): requests are parsed where the
//!   kernel put them; only one cut by a buffer's end is copied, into the
//!   connection's carry;
//! - **replies** (`reply.rs`, `send.rs`): appended to the connection's
//!   reply buffer and sent once per batch of completions; a full reply
//!   buffer stops the parsing, and so the receiving (backpressure);
//! - **state** (`state.rs`): what the protocol adds to 05's `Server`, in
//!   its one field for a later lesson's additions (`extra`);
//! - **commands** (`commands.rs`, `store.rs`): PING, ECHO, SET (EX, PX),
//!   GET, DEL, EXISTS, INCR, FLUSHDB, QUIT, and the handshakes of
//!   `redis-cli` and `redis-benchmark`, on a single-threaded map with
//!   expiry and a memory bound.
//!
//! Run it, and talk to it with the real Redis tools:
//!
//! ```text
//! cargo run --release --bin 07_uring_resp -- --addr 127.0.0.1:6380
//! redis-cli -p 6380 set greeting hello
//! redis-cli -p 6380 get greeting
//! redis-benchmark -p 6380 -t ping_inline,set,get -c 50 -P 16 -q
//! ```
//!
//! The `mod` lines below list the files in reading order: the core first,
//! then the hardening.

use std::process::ExitCode;

use clap::Parser;
use uring_echo_book::alloc_count::CountingAllocator;

// The options, and the event loop with the server's life around it.
mod options;
#[cfg(all(target_os = "linux", test))]
pub(crate) use options::parse_batch;
pub(crate) use options::{Args, BatchChoice, RecvChoice, Taskrun};
#[cfg(target_os = "linux")]
mod event_loop;

// The core, in reading order. Lesson 05's own files where they do not
// change: user_data and a connection's state (this lesson's, with its
// input and replies), the pool and its rings (05's), each connection's
// carry and reply buffer, the server's state and set-up, queuing requests
// and accepting (05's), receiving;
#[cfg(target_os = "linux")]
#[path = "../05_uring_multishot/accept.rs"]
mod accept;
#[cfg(target_os = "linux")]
mod arena;
#[cfg(target_os = "linux")]
mod conn;
#[cfg(target_os = "linux")]
#[path = "../05_uring_multishot/pool.rs"]
mod pool;
#[cfg(target_os = "linux")]
#[path = "../05_uring_multishot/push.rs"]
mod push;
#[cfg(target_os = "linux")]
mod recv;
#[cfg(target_os = "linux")]
#[path = "../05_uring_multishot/setup.rs"]
mod setup;
// what the protocol adds to 05's server (`Server::extra`);
#[cfg(target_os = "linux")]
mod state;
#[cfg(target_os = "linux")]
pub(crate) use state::Extra;
// the protocol: one request's bounds and parse, framing across buffers,
// serving a connection's input, writing replies, the commands, the map;
mod commands;
#[cfg(target_os = "linux")]
mod frame;
mod reply;
mod resp;
#[cfg(target_os = "linux")]
mod serve;
mod store;
// sending the replies, and closing.
#[cfg(target_os = "linux")]
mod send;

// The hardening: lesson 05's reserve and line for buffers, multishot
// probe, task-run modes, batching, shutdown and counters; and this
// lesson's own sweep of expired keys.
#[cfg(target_os = "linux")]
#[path = "../05_uring_multishot/batch.rs"]
mod batch;
#[cfg(target_os = "linux")]
#[path = "../05_uring_multishot/fairness.rs"]
mod fairness;
#[cfg(target_os = "linux")]
#[path = "../05_uring_multishot/probe.rs"]
mod probe;
#[cfg(target_os = "linux")]
#[path = "../05_uring_multishot/shutdown.rs"]
mod shutdown;
#[cfg(target_os = "linux")]
#[path = "../05_uring_multishot/stats.rs"]
mod stats;
#[cfg(target_os = "linux")]
mod sweep;
#[cfg(target_os = "linux")]
#[path = "../05_uring_multishot/taskrun.rs"]
mod taskrun;

/// Counts every allocation, so the stats at exit can show how many the
/// event loop made (only the map's, for new keys and bigger values).
#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

#[cfg(not(target_os = "linux"))]
fn main() -> ExitCode {
    let _ = Args::parse();
    eprintln!("error: 07_uring_resp needs Linux 6.0+ (io_uring); lessons 01 and 02 run on any OS");
    ExitCode::FAILURE
}

#[cfg(target_os = "linux")]
fn main() -> ExitCode {
    let args = Args::parse();
    uring_echo_book::limits::raise_open_file_limit_or_warn();
    event_loop::serve(&args)
}
