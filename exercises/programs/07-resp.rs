// The server of exercises 07-framing and 07-strlen, all of it but their
// regions, which the file that includes this one defines as the modules
// `frame` (framing requests across buffers) and `strlen` (a new command):
// each starter has its own region to change and takes the other one,
// solved, from `exercises/solutions/`; the reference solution,
// `exercises/solutions/07-resp.rs`, takes both.
//
// It is lesson 07 itself: every file of `src/bin/07_uring_resp/` is taken
// in as it is (and lesson 05's, which lesson 07 takes in), except
// `frame.rs`, which is exercise 07-framing's region; and the command table
// is the lesson's, with one command more in front of it, STRLEN, which is
// exercise 07-strlen's region.

use std::process::ExitCode;

use clap::Parser;

#[path = "../../src/bin/07_uring_resp/options.rs"]
mod options;
pub(crate) use options::{Args, BatchChoice, RecvChoice, Taskrun};

#[path = "../../src/bin/07_uring_resp/commands.rs"]
mod lesson_commands;
#[path = "../../src/bin/07_uring_resp/reply.rs"]
mod reply;
#[path = "../../src/bin/07_uring_resp/resp.rs"]
mod resp;
#[path = "../../src/bin/07_uring_resp/store.rs"]
mod store;

// The lesson's command table, with STRLEN in front of it.
mod commands {
    pub(crate) use crate::lesson_commands::{After, Request};
    use crate::reply::{Full, Reply};
    use crate::store::Store;

    pub(crate) fn execute(
        request: &Request,
        store: &mut Store,
        now: u64,
        reply: &mut Reply,
    ) -> Result<After, Full> {
        if request.arg(0).eq_ignore_ascii_case(b"strlen") {
            return crate::strlen::strlen(request, store, now, reply);
        }
        crate::lesson_commands::execute(request, store, now, reply)
    }
}

#[cfg(target_os = "linux")]
#[path = "../../src/bin/05_uring_multishot/accept.rs"]
mod accept;
#[cfg(target_os = "linux")]
#[path = "../../src/bin/07_uring_resp/arena.rs"]
mod arena;
#[cfg(target_os = "linux")]
#[path = "../../src/bin/05_uring_multishot/batch.rs"]
mod batch;
#[cfg(target_os = "linux")]
#[path = "../../src/bin/07_uring_resp/conn.rs"]
mod conn;
#[cfg(target_os = "linux")]
#[path = "../../src/bin/07_uring_resp/event_loop.rs"]
mod event_loop;
#[cfg(target_os = "linux")]
#[path = "../../src/bin/05_uring_multishot/fairness.rs"]
mod fairness;
#[cfg(target_os = "linux")]
#[path = "../../src/bin/05_uring_multishot/pool.rs"]
mod pool;
#[cfg(target_os = "linux")]
#[path = "../../src/bin/05_uring_multishot/probe.rs"]
mod probe;
#[cfg(target_os = "linux")]
#[path = "../../src/bin/05_uring_multishot/push.rs"]
mod push;
#[cfg(target_os = "linux")]
#[path = "../../src/bin/07_uring_resp/recv.rs"]
mod recv;
#[cfg(target_os = "linux")]
#[path = "../../src/bin/07_uring_resp/send.rs"]
mod send;
#[cfg(target_os = "linux")]
#[path = "../../src/bin/07_uring_resp/serve.rs"]
mod serve;
#[cfg(target_os = "linux")]
#[path = "../../src/bin/05_uring_multishot/setup.rs"]
mod setup;
#[cfg(target_os = "linux")]
#[path = "../../src/bin/07_uring_resp/state.rs"]
mod state;
#[cfg(target_os = "linux")]
pub(crate) use state::Extra;
#[cfg(target_os = "linux")]
#[path = "../../src/bin/05_uring_multishot/shutdown.rs"]
mod shutdown;
#[cfg(target_os = "linux")]
#[path = "../../src/bin/05_uring_multishot/stats.rs"]
mod stats;
#[cfg(target_os = "linux")]
#[path = "../../src/bin/07_uring_resp/sweep.rs"]
mod sweep;
#[cfg(target_os = "linux")]
#[path = "../../src/bin/05_uring_multishot/taskrun.rs"]
mod taskrun;

#[cfg(not(target_os = "linux"))]
fn main() -> ExitCode {
    let _ = Args::parse();
    eprintln!("error: this server needs Linux 6.0+ (io_uring)");
    ExitCode::FAILURE
}

#[cfg(target_os = "linux")]
fn main() -> ExitCode {
    let args = Args::parse();
    uring_echo_book::limits::raise_open_file_limit_or_warn();
    event_loop::serve(&args)
}
