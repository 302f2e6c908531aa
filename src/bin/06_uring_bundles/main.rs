//! 06_uring_bundles — lesson 05, and then every newer io_uring feature for
//! networking, each behind its own option, each measured on its own.
//!
//! Lesson 05 cut the bytes into one completion and one send per 4 KiB
//! buffer, with one send in flight per connection: with 16 requests in
//! flight on a connection it spent about 1.5 times lesson 03's CPU per echo.
//! This lesson adds, one option each:
//!
//! - `--recv-bundle`: a **receive bundle** (Linux 6.10). One completion
//!   covers several buffers, the consecutive entries of the buffer ring
//!   starting at the one it names;
//! - `--send-gather`: several queued buffers leave in **one send**
//!   (`sendmsg` with a list of buffers) instead of one send each;
//! - `--fixed-files`: each connection's socket in the ring's **registered
//!   file table**, so no request looks the descriptor up again;
//! - `--direct-accept`: the accept puts each new socket straight into
//!   that table (a **direct descriptor**), so no descriptor exists at all;
//! - `--buf-inc`: **incremental buffer consumption** (Linux 6.12): a
//!   receive fills a buffer only as far as its bytes go;
//! - `--register-ring`: the ring's own descriptor **registered**, so each
//!   enter names it by an index;
//! - `--send-zc`: **zero-copy send** (Linux 6.0) from the pool registered as
//!   a fixed buffer, with the notification that says whether the kernel
//!   copied after all (on loopback it does);
//! - `--sqpoll`: a kernel thread that **polls the submission queue**, so
//!   submitting needs no system call; it costs a thread that spins.
//!
//! Each is detected at start-up; a kernel without one says so in one line
//! and the lesson runs without it. Everything else is lesson 05's: the
//! shared pool with its reserve, the per-connection share, the cap, the
//! shutdown, no allocation once serving. The files that do not change are
//! 05's own, included by path.
//!
//! Run it:
//!
//! ```text
//! cargo run --release --bin 06_uring_bundles
//! cargo run --release --bin 06_uring_bundles -- --recv-bundle off --send-gather off  # 05 again
//! cargo run --release --bin 06_uring_bundles -- --send-zc on   # watch zc_copied at exit
//! cargo run --bin echo-check -- 127.0.0.1:7878
//! ```

use std::process::ExitCode;

use clap::Parser;
use uring_echo_book::alloc_count::{self, CountingAllocator};

#[cfg(target_os = "linux")]
use setup::Server;
// The options are read everywhere as `crate::Args` and friends.
use options::Args;
#[cfg(all(target_os = "linux", test))]
use options::parse_batch;
#[cfg(target_os = "linux")]
use options::{BatchChoice, RecvChoice, Switch, Taskrun};

// The options, one switch per feature (not Linux-only: `--help` works anywhere).
mod options;

// The core, in reading order. Unchanged from lesson 05: what a request's
// user_data says, and a connection's state;
#[cfg(target_os = "linux")]
#[path = "../05_uring_multishot/conn.rs"]
mod conn;
// new: the pool, which now knows the order of its rings (bundles);
#[cfg(target_os = "linux")]
mod pool;
// new: the features, each detected at start-up, and the memory sends use;
#[cfg(target_os = "linux")]
mod features;
// new: the ring, kept with the submitter that may have registered its
// descriptor; the server's state, and setting it up;
#[cfg(target_os = "linux")]
mod ring;
#[cfg(target_os = "linux")]
mod setup;
// unchanged: accepting, and queuing a request;
#[cfg(target_os = "linux")]
#[path = "../05_uring_multishot/accept.rs"]
mod accept;
#[cfg(target_os = "linux")]
#[path = "../05_uring_multishot/push.rs"]
mod push;
// new: receiving (bundles), and sending (gathered, zero-copy).
#[cfg(target_os = "linux")]
mod recv;
#[cfg(target_os = "linux")]
mod send;
// new: a connection's queue of buffers, in (a bundle's, in ring order)
// and out (what a send's result covers).
#[cfg(target_os = "linux")]
mod bundle;
#[cfg(target_os = "linux")]
mod sent;
// new: a receive's bytes as pieces of buffers (incremental consumption).
#[cfg(target_os = "linux")]
mod inc;
// new: accepting into the file table, and closing what is only there.
#[cfg(target_os = "linux")]
mod direct;
// the event loop, 05's, with a send's completions going to `send.rs`.
#[cfg(target_os = "linux")]
mod event_loop;

// The hardening, unchanged from lesson 05: the reserve and the line;
#[cfg(target_os = "linux")]
#[path = "../05_uring_multishot/fairness.rs"]
mod fairness;
// trying a multishot receive, which no opcode probe can see;
#[cfg(target_os = "linux")]
#[path = "../05_uring_multishot/probe.rs"]
mod probe;
// the best task-run mode this kernel has;
#[cfg(target_os = "linux")]
#[path = "../05_uring_multishot/taskrun.rs"]
mod taskrun;
// how many completions each enter waits for (`--batch auto`);
#[cfg(target_os = "linux")]
#[path = "../05_uring_multishot/batch.rs"]
mod batch;
// signals, and a shutdown that waits for the kernel;
#[cfg(target_os = "linux")]
#[path = "../05_uring_multishot/shutdown.rs"]
mod shutdown;
// the counters printed at exit (06's own are in `features.rs`).
#[cfg(target_os = "linux")]
#[path = "../05_uring_multishot/stats.rs"]
mod stats;

/// Counts every allocation, so the stats at exit can show that the event
/// loop made none.
#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

#[cfg(not(target_os = "linux"))]
fn main() -> ExitCode {
    let _ = Args::parse();
    eprintln!(
        "error: 06_uring_bundles needs Linux 6.0+ (io_uring); lessons 01 and 02 run on any OS"
    );
    ExitCode::FAILURE
}

#[cfg(target_os = "linux")]
fn main() -> ExitCode {
    let args = Args::parse();
    uring_echo_book::limits::raise_open_file_limit_or_warn();
    let mut server = match Server::new(&args) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Everything the server needs is allocated by now. From here on, the
    // count must not move until the loop ends.
    let before = alloc_count::allocations();
    let result = server.run();
    server.stats.allocations_after_startup = alloc_count::allocations() - before;
    let result = result.and_then(|()| {
        eprintln!("signal received: closing every connection");
        server.close_idle_direct()?;
        server.shutdown()
    });
    match result {
        Ok(()) => {
            // Every enter since start-up went through the ring's one
            // submitter: with the descriptor registered, each passed its
            // index (`ring.rs`).
            if server.ring.registered {
                server.more.registered_enters = server.stats.enters;
            }
            // One `stats:` line: 05's counters, then 06's own.
            eprintln!("{} {}", server.stats, server.more);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: the event loop failed: {e}");
            // Requests may still be in flight, and the kernel may still write
            // into the pool and into `siginfo`: never free them. The process
            // is exiting, which takes the ring down first.
            std::mem::forget(server);
            ExitCode::FAILURE
        }
    }
}
