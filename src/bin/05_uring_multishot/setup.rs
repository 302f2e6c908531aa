//! The core: the server's state, and setting it up. First the ring (in the
//! task-run mode `taskrun.rs` picks, its features checked, the multishot
//! receive by `probe.rs`) and the pool registered with it; then each
//! connection's share of the pool, and how connections receive; then the
//! sockets, and every allocation the event loop will live on.
//! `Server::new`, after those steps, puts them together.

use std::collections::VecDeque;
use std::net::{SocketAddr, TcpListener};

use io_uring::{IoUring, opcode, types};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use uring_echo_book::uring::{self, Needed};

use crate::BatchChoice;
use crate::batch::Batching;
use crate::conn::{Conn, RecvMode, Shot};
use crate::pool::Pool;
use crate::probe;
use crate::shutdown::KernelBytes;
use crate::stats::Stats;
use crate::taskrun::build_ring;
use crate::{Args, RecvChoice};

// ANCHOR: server
/// Everything the event loop works on, allocated at start-up.
pub(crate) struct Server {
    pub(crate) ring: IoUring,
    pub(crate) pool: Pool,
    pub(crate) listener: std::net::TcpListener,
    pub(crate) signals: SignalFd,
    /// The kernel writes a `signalfd_siginfo` here when a signal arrives.
    pub(crate) siginfo: KernelBytes,
    pub(crate) conns: Box<[Conn]>,
    /// Free slots of `conns`, and the slots waiting for buffers, oldest
    /// first. Both have room for every slot from the start, so pushing onto
    /// them never allocates.
    pub(crate) free: Vec<u32>,
    pub(crate) waiting: VecDeque<u32>,
    /// Buffers of the open pool one connection may hold before its receive
    /// is stopped.
    pub(crate) max_per_conn: u32,
    pub(crate) recv_mode: RecvMode,
    pub(crate) buffer_size: u32,
    pub(crate) accept: Shot,
    /// The armed accept is a multishot one (many free slots), not a
    /// single-shot one (near the cap).
    pub(crate) accept_multishot: bool,
    pub(crate) timeout_armed: bool,
    /// Requests whose last completion has not arrived yet.
    pub(crate) in_flight: usize,
    /// How many completions each enter waits for (`--batch`), and how long
    /// it waits for all of them, after the first, before it takes what has come.
    pub(crate) batching: Batching,
    pub(crate) batch_wait: types::SubmitArgs<'static, 'static>,
    /// The last batch wait ran out with nothing to show: wait plainly next.
    pub(crate) idle: bool,
    /// Enters in a row that the kernel asked us to retry (EAGAIN, EBUSY,
    /// EINTR), and signal reads in a row that brought no signal.
    pub(crate) retries: u32,
    pub(crate) signal_errors: u32,
    pub(crate) stopping: bool,
    /// Completions copied out of the ring: (user_data, result, flags).
    pub(crate) batch: Vec<(u64, i32, u32)>,
    pub(crate) stats: Stats,
    /// What a lesson built on this file adds to the server: nothing in 05
    /// (`Extra` in `main.rs`); lesson 07's protocol state (`state.rs`).
    pub(crate) extra: crate::Extra,
}
// ANCHOR_END: server

// ANCHOR: setup
// ANCHOR: setup_ring
/// The ring, in the task-run mode asked for, checked for everything the
/// server needs; with the task-run mode it got and the size of its
/// completion queue.
fn setup_ring(args: &Args) -> Result<(IoUring, &'static str, u32), String> {
    // The completion queue must hold every completion that can be
    // pending at once. Multishot requests make that bigger than in 04:
    // each buffer can be named by one pending receive completion, and each
    // connection can have the last completion of its receive, a send and a
    // cancel pending. Past that the kernel keeps the overflow on a list
    // (`cq_overflowed` at exit says whether it ever did).
    let max_conns = args.max_conns as usize;
    let cq_entries = (usize::from(args.buffers) + 3 * max_conns + 16)
        .next_power_of_two()
        .min(65536) as u32;
    let (mut ring, taskrun) = build_ring(args.taskrun, args.ring_entries, cq_entries)?;
    require_opcodes(&ring)?;
    // The opcode probe cannot tell a multishot receive from a plain one:
    // they share an opcode. So we try one (`probe.rs`). A kernel that
    // passes has buffer rings and multishot accept too (5.19, older than 6.0).
    probe::check_multishot_recv(&mut ring)?;
    // Waiting for a batch with a time limit on the batch, but not on
    // the wait itself, is the "min-wait" of Linux 6.12, which the ring
    // reports as a feature flag.
    if let BatchChoice::Fixed(n @ 2..) = args.batch
        && !ring.params().is_feature_min_timeout()
    {
        return Err(format!(
            "--batch {n} needs Linux 6.12 (IORING_FEAT_MIN_TIMEOUT), which this kernel \
             lacks; leave --batch at auto or 1"
        ));
    }
    Ok((ring, taskrun, cq_entries))
}

/// Checks that the kernel has every operation the server submits, as in
/// lesson 04, and names the first kernel of each that is missing.
fn require_opcodes(ring: &IoUring) -> Result<(), String> {
    uring::require(
        ring,
        &[
            Needed {
                code: opcode::Accept::CODE,
                name: "IORING_OP_ACCEPT",
                since: "5.5",
            },
            Needed {
                code: opcode::Recv::CODE,
                name: "IORING_OP_RECV",
                since: "5.6",
            },
            Needed {
                code: opcode::Send::CODE,
                name: "IORING_OP_SEND",
                since: "5.6",
            },
            Needed {
                code: opcode::Read::CODE,
                name: "IORING_OP_READ",
                since: "5.6",
            },
            Needed {
                code: opcode::Timeout::CODE,
                name: "IORING_OP_TIMEOUT",
                since: "5.4",
            },
            Needed {
                code: opcode::AsyncCancel::CODE,
                name: "IORING_OP_ASYNC_CANCEL",
                since: "5.5",
            },
        ],
    )
}

/// The pool, its two rings registered with `ring`.
fn setup_pool(ring: &IoUring, args: &Args) -> Result<Pool, String> {
    let pool = Pool::new(args.buffers, args.buffer_size)?;
    // ENOMEM here is the locked-memory limit, not an old kernel: the
    // kernel pins the rings' entries and charges them to `ulimit -l`,
    // like the io_uring itself. The library's line says which it was.
    pool.register(ring)
        .map_err(|e| uring::explain_buf_ring_error(&e))?;
    Ok(pool)
}
// ANCHOR_END: setup_ring

// ANCHOR: share
/// A connection's share: the open pool's buffers it may hold before we stop
/// receiving from it. At most a quarter of the open pool, whatever the
/// option says. Then how connections receive, and why.
fn share(args: &Args, pool: &Pool) -> (u32, RecvMode, &'static str) {
    let max_per_conn = args.max_buffers_per_conn.min((pool.open as u32 / 4).max(1));
    if max_per_conn < args.max_buffers_per_conn {
        eprintln!(
            "--max-buffers-per-conn {} is more than a quarter of the {} open buffers; using \
             {max_per_conn}",
            args.max_buffers_per_conn, pool.open
        );
    }
    let (recv_mode, why) = choose_recv(
        args.recv,
        uring::kernel_version(),
        pool.open as u32,
        max_per_conn,
    );
    (max_per_conn, recv_mode, why)
}
// ANCHOR_END: share

// ANCHOR: choose_recv
/// How far past its share a connection's multishot receive can run before
/// our cancel takes effect, in buffers: measured, not promised. While data
/// keeps coming the kernel receives up to 32 times in a row on one wake-up
/// (`MULTISHOT_MAX_RETRY`, since Linux 6.8; before 6.8 nothing bounded it),
/// and may run the request again before we see its completions: `max_held`
/// reached the share plus 97 on a 2-core machine with Linux 6.18.
const BURST: u32 = 128;

/// Chooses how connections receive from the open pool, and says why.
///
/// A burst can no longer starve anyone (the reserve sees to that), but it
/// can leave everyone else with only the reserve's one-buffer receives. So
/// `auto` uses multishot only where a burst is bounded (Linux 6.8) and the
/// open pool holds twice a share and a burst; one-buffer otherwise, which
/// costs one request per receive again, like lesson 04.
fn choose_recv(
    choice: RecvChoice,
    kernel: Option<(u32, u32)>,
    open: u32,
    share: u32,
) -> (RecvMode, &'static str) {
    match choice {
        RecvChoice::Multishot => (RecvMode::Multishot, "--recv multishot"),
        RecvChoice::OneBuffer => (RecvMode::OneBuffer, "--recv one-buffer"),
        RecvChoice::Auto if kernel.is_some_and(|k| k < (6, 8)) => (
            RecvMode::OneBuffer,
            "a kernel before 6.8 does not bound a multishot burst",
        ),
        RecvChoice::Auto if open < 2 * (share + BURST) => (
            RecvMode::OneBuffer,
            "the open pool is too small for multishot bursts",
        ),
        RecvChoice::Auto => (RecvMode::Multishot, "auto"),
    }
}
// ANCHOR_END: choose_recv

// ANCHOR: setup_rest
/// The listening socket, and the signalfd that SIGINT and SIGTERM arrive
/// on; with the address we listen on, port 0 resolved.
fn open_sockets(args: &Args) -> Result<(TcpListener, SignalFd, SocketAddr), String> {
    let addr = args.common.addr;
    let listener = uring_echo_book::listen::bind_or_explain(addr)?;
    if let Some(size) = args.sndbuf {
        // Accepted sockets inherit the listener's buffer sizes.
        socket2::SockRef::from(&listener)
            .set_send_buffer_size(size)
            .map_err(|e| format!("cannot set SO_SNDBUF: {e}"))?;
    }

    // SIGINT and SIGTERM arrive as reads on a signalfd, as in lesson 04.
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGINT);
    mask.add(Signal::SIGTERM);
    mask.thread_block()
        .map_err(|e| format!("cannot block SIGINT/SIGTERM: {e}"))?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC)
        .map_err(|e| format!("cannot create a signalfd: {e}"))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    Ok((listener, signals, local))
}

impl Server {
    /// Sets the server up, step by step as above, allocates everything the
    /// loop will need, and queues the first requests: the signal read and
    /// the accept.
    pub(crate) fn new(args: &Args) -> Result<Server, String> {
        let (ring, taskrun, cq_entries) = setup_ring(args)?;
        let pool = setup_pool(&ring, args)?;
        let (max_per_conn, recv_mode, why) = share(args, &pool);
        let (listener, signals, local) = open_sockets(args)?;

        // Everything the loop will ever need is allocated here, at full size.
        let max_conns = args.max_conns as usize;
        let mut free = Vec::with_capacity(max_conns);
        free.extend((0..max_conns as u32).rev());
        let ring_has_min_wait = ring.params().is_feature_min_timeout();
        let extra = crate::Extra::new(args, max_conns)?;
        let mut server = Server {
            ring,
            pool,
            listener,
            signals,
            siginfo: KernelBytes::new(),
            conns: (0..max_conns).map(|_| Conn::free()).collect(),
            free,
            waiting: VecDeque::with_capacity(max_conns),
            max_per_conn,
            recv_mode,
            buffer_size: args.buffer_size,
            accept: Shot::Idle,
            accept_multishot: false,
            timeout_armed: false,
            in_flight: 0,
            // Whether `--batch auto` may try batches while the server is not
            // busy (`batch.rs`): not for an echo server, whose own CPU is the
            // figure; lesson 07 says yes.
            batching: Batching::new(args.batch, ring_has_min_wait, crate::Extra::BATCH_TRIALS),
            batch_wait: types::SubmitArgs::new().min_wait_usec(args.batch_wait_usec),
            idle: false,
            retries: 0,
            signal_errors: 0,
            stopping: false,
            batch: Vec::with_capacity(cq_entries as usize),
            stats: Stats {
                taskrun,
                ..Stats::default()
            },
            extra,
        };
        if let Err(e) = server
            .submit_signal_read()
            .and_then(|()| server.arm_accept())
            .and_then(|()| server.start_extra())
        {
            // The signal read may be queued or in flight, writing into
            // `siginfo`: never free it.
            std::mem::forget(server);
            return Err(e.to_string());
        }
        server.describe(args, why, cq_entries);
        uring_echo_book::listen::announce(local);
        Ok(server)
    }

    /// Says on stderr how the server is set up, and why.
    fn describe(&self, args: &Args, why: &str, cq_entries: u32) {
        let (open, reserve) = (self.pool.open, self.pool.count - self.pool.open);
        let (taskrun, max_per_conn) = (self.stats.taskrun, self.max_per_conn);
        eprintln!(
            "io_uring: taskrun {taskrun}, {open} buffers of {} bytes and a reserve of {reserve}, \
             at most {max_per_conn} per connection, {} receives ({why}), {cq_entries} completion \
             entries, {}",
            args.buffer_size,
            self.recv_mode.name(),
            self.batching.describe(args.batch_wait_usec),
        );
        self.extra.describe(args);
    }
}
// ANCHOR_END: setup_rest
// ANCHOR_END: setup

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_picks_one_buffer_receives_before_linux_6_8() {
        // Before 6.8 nothing bounds a multishot burst.
        let (mode, why) = choose_recv(RecvChoice::Auto, Some((6, 7)), 768, 64);
        assert_eq!(mode, RecvMode::OneBuffer);
        assert!(why.contains("6.8"), "{why}");
        assert_eq!(
            choose_recv(RecvChoice::Auto, Some((6, 1)), 768, 64).0,
            RecvMode::OneBuffer
        );
        // From 6.8 on, with the default pool: multishot.
        for kernel in [(6, 8), (6, 18), (7, 0)] {
            assert_eq!(
                choose_recv(RecvChoice::Auto, Some(kernel), 768, 64).0,
                RecvMode::Multishot,
                "{kernel:?}"
            );
        }
        // A version we cannot read does not stop the lesson.
        assert_eq!(
            choose_recv(RecvChoice::Auto, None, 768, 64).0,
            RecvMode::Multishot
        );
    }

    #[test]
    fn auto_picks_one_buffer_receives_for_a_small_pool() {
        // 4 buffers: 3 open, a share of 1, far less than two bursts.
        assert_eq!(
            choose_recv(RecvChoice::Auto, Some((6, 18)), 3, 1).0,
            RecvMode::OneBuffer
        );
        // Exactly two shares and two bursts is enough.
        assert_eq!(
            choose_recv(RecvChoice::Auto, Some((6, 18)), 2 * (64 + BURST), 64).0,
            RecvMode::Multishot
        );
    }

    #[test]
    fn a_choice_on_the_command_line_wins() {
        for kernel in [Some((6, 1)), Some((6, 18)), None] {
            assert_eq!(
                choose_recv(RecvChoice::Multishot, kernel, 3, 1).0,
                RecvMode::Multishot
            );
            assert_eq!(
                choose_recv(RecvChoice::OneBuffer, kernel, 768, 64).0,
                RecvMode::OneBuffer
            );
        }
    }
}
