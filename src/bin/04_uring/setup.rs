//! The server's state, and how it is built: the ring sized so that its
//! completion queue never overflows, the operations the kernel must offer,
//! the listening socket. The core; the signalfd it also opens is explained
//! in `shutdown.rs`.

use io_uring::{IoUring, opcode};
use nix::libc;
use nix::sys::signalfd::SignalFd;
use uring_echo_book::uring::{self, Needed};

use crate::Args;
use crate::conn::{Conn, KernelBuf};
use crate::shutdown::signal_fd;
use crate::stats::Stats;

// ANCHOR: server
pub(crate) struct Server {
    pub(crate) ring: IoUring,
    pub(crate) listener: std::net::TcpListener,
    pub(crate) signals: SignalFd,
    /// The kernel writes a `signalfd_siginfo` (128 bytes) here when a signal
    /// arrives: memory lent to the kernel, like a connection's buffer.
    pub(crate) siginfo: KernelBuf,
    pub(crate) conns: Vec<Option<Conn>>,
    pub(crate) free: Vec<usize>,
    pub(crate) generations: Vec<u32>,
    pub(crate) max_conns: usize,
    pub(crate) buffer_size: usize,
    /// Requests the kernel holds and whose completion we have not yet seen.
    /// At exit we wait for this to reach zero before freeing any memory.
    pub(crate) in_flight: usize,
    pub(crate) accepting: bool,
    /// Accepting is paused (EMFILE or --max-conns) and a timeout is armed.
    pub(crate) timeout_armed: bool,
    pub(crate) stopping: bool,
    /// Completions copied out of the ring, reused from batch to batch.
    pub(crate) batch: Vec<(u64, i32)>,
    pub(crate) stats: Stats,
}
// ANCHOR_END: server

// ANCHOR: setup
// ANCHOR: new
impl Server {
    /// The ring, the listener and the signalfd, then the first two
    /// requests: the signal read and the accept. An error is the one line
    /// the user sees.
    pub(crate) fn new(args: &Args) -> Result<Server, String> {
        let max_conns = usize::try_from(args.max_conns).unwrap_or(30000);
        let (ring, cq_entries) = build_ring(args.ring_entries, max_conns)?;
        uring::require(&ring, &NEEDED)?;
        let listener = listen(args)?;
        let signals = signal_fd()?;

        let local = listener
            .local_addr()
            .map_err(|e| format!("cannot read the listening address: {e}"))?;
        let mut server = Server {
            ring,
            listener,
            signals,
            siginfo: KernelBuf::new(std::mem::size_of::<libc::signalfd_siginfo>()),
            conns: Vec::new(),
            free: Vec::new(),
            generations: Vec::new(),
            max_conns,
            buffer_size: args.buffer_size as usize,
            in_flight: 0,
            accepting: false,
            timeout_armed: false,
            stopping: false,
            batch: Vec::with_capacity(cq_entries as usize),
            stats: Stats::default(),
        };
        server.submit_signal_read().map_err(|e| e.to_string())?;
        server.submit_accept().map_err(|e| e.to_string())?;
        uring_echo_book::listen::announce(local);
        Ok(server)
    }
}
// ANCHOR_END: new

// ANCHOR: build_ring
/// The ring, and the size of its completion queue.
fn build_ring(ring_entries: u32, max_conns: usize) -> Result<(IoUring, u32), String> {
    // The completion queue must hold every completion that can be
    // pending at once, or the kernel has to keep the overflow aside (and
    // old kernels drop it). At most: one request per connection, the
    // accept, the signal read and the timeout, and at exit one cancel
    // for each of those.
    let cq_entries = (2 * (max_conns + 4))
        // The kernel also wants it at least as big as the submission queue.
        .max(2 * ring_entries as usize)
        .next_power_of_two()
        .min(65536) as u32;
    let mut builder: io_uring::Builder = IoUring::builder();
    // Not IORING_SETUP_SUBMIT_ALL (Linux 5.18). Without it, an entry
    // the kernel refuses as it takes it (it still posts a completion for
    // it, with the error) ends that enter's submitting early, and the
    // entries after it wait in the queue for the next enter, which our
    // loop makes at once. Nothing is lost or reordered: the flag would
    // save one enter in a rare case, at the price of a fallback for
    // older kernels.
    builder.setup_cqsize(cq_entries).setup_clamp();
    let ring = uring::build(&builder, ring_entries)?;
    Ok((ring, cq_entries))
}
// ANCHOR_END: build_ring

// ANCHOR: needed
/// Every operation this server asks the kernel for, checked once at start.
const NEEDED: [Needed; 6] = [
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
];
// ANCHOR_END: needed

// ANCHOR: listen
/// The listening socket, with `--sndbuf` applied.
fn listen(args: &Args) -> Result<std::net::TcpListener, String> {
    let addr = args.common.addr;
    let listener = uring_echo_book::listen::bind_or_explain(addr)?;
    if let Some(size) = args.sndbuf {
        // Accepted sockets inherit the listener's buffer sizes.
        socket2::SockRef::from(&listener)
            .set_send_buffer_size(size)
            .map_err(|e| format!("cannot set SO_SNDBUF: {e}"))?;
    }
    Ok(listener)
}
// ANCHOR_END: listen
// ANCHOR_END: setup
