// Exercises 06-bundle-order and 06-bundle-lengths: lesson 06 itself, every
// file of it taken in from `src/bin/06_uring_bundles/` (and 05's files that
// 06 takes in) but one, `bundle.rs`: the exercise's region, which the file
// that includes this one defines as `mod bundle`.

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
#[path = "../../src/bin/06_uring_bundles/options.rs"]
mod options;

// The core, in reading order. Unchanged from lesson 05: what a request's
// user_data says, and a connection's state;
#[cfg(target_os = "linux")]
#[path = "../../src/bin/05_uring_multishot/conn.rs"]
mod conn;
// new: the pool, which now knows the order of its rings (bundles);
#[cfg(target_os = "linux")]
#[path = "../../src/bin/06_uring_bundles/pool.rs"]
mod pool;
// new: the features, each detected at start-up, and the memory sends use;
#[cfg(target_os = "linux")]
#[path = "../../src/bin/06_uring_bundles/features.rs"]
mod features;
// new: the ring, kept with the submitter that may have registered its
// descriptor; the server's state, and setting it up;
#[cfg(target_os = "linux")]
#[path = "../../src/bin/06_uring_bundles/ring.rs"]
mod ring;
#[cfg(target_os = "linux")]
#[path = "../../src/bin/06_uring_bundles/setup.rs"]
mod setup;
// unchanged: accepting, and queuing a request;
#[cfg(target_os = "linux")]
#[path = "../../src/bin/05_uring_multishot/accept.rs"]
mod accept;
#[cfg(target_os = "linux")]
#[path = "../../src/bin/05_uring_multishot/push.rs"]
mod push;
// new: receiving (bundles), and sending (gathered, zero-copy).
#[cfg(target_os = "linux")]
#[path = "../../src/bin/06_uring_bundles/recv.rs"]
mod recv;
#[cfg(target_os = "linux")]
#[path = "../../src/bin/06_uring_bundles/send.rs"]
mod send;
// the region: a bundle's buffers joining the connection's queue, which the
// including file defines (`mod bundle`); and what a send's result covers.
#[cfg(target_os = "linux")]
#[path = "../../src/bin/06_uring_bundles/sent.rs"]
mod sent;
// a receive's bytes as pieces of buffers (incremental consumption).
#[cfg(target_os = "linux")]
#[path = "../../src/bin/06_uring_bundles/inc.rs"]
mod inc;
// accepting into the file table, and closing what is only there.
#[cfg(target_os = "linux")]
#[path = "../../src/bin/06_uring_bundles/direct.rs"]
mod direct;
// the event loop, 05's, with a send's completions going to `send.rs`.
#[cfg(target_os = "linux")]
#[path = "../../src/bin/06_uring_bundles/event_loop.rs"]
mod event_loop;

// The hardening, unchanged from lesson 05: the reserve and the line;
#[cfg(target_os = "linux")]
#[path = "../../src/bin/05_uring_multishot/fairness.rs"]
mod fairness;
// trying a multishot receive, which no opcode probe can see;
#[cfg(target_os = "linux")]
#[path = "../../src/bin/05_uring_multishot/probe.rs"]
mod probe;
// the best task-run mode this kernel has;
#[cfg(target_os = "linux")]
#[path = "../../src/bin/05_uring_multishot/taskrun.rs"]
mod taskrun;
// how many completions each enter waits for (`--batch auto`);
#[cfg(target_os = "linux")]
#[path = "../../src/bin/05_uring_multishot/batch.rs"]
mod batch;
// signals, and a shutdown that waits for the kernel;
#[cfg(target_os = "linux")]
#[path = "../../src/bin/05_uring_multishot/shutdown.rs"]
mod shutdown;
// the counters printed at exit (06's own are in `features.rs`).
#[cfg(target_os = "linux")]
#[path = "../../src/bin/05_uring_multishot/stats.rs"]
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
