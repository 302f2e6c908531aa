//! The core: the server's state, and how it starts. A listening socket
//! made nonblocking, a signalfd, and an epoll instance that watches both.

use std::collections::VecDeque;
use std::time::Instant;

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::signalfd::SignalFd;

use crate::conn::{Conn, LISTENER, SIGNALS};
use crate::shutdown::signal_fd;
use crate::stats::Stats;
use crate::{Args, Trigger};

// ANCHOR: server
/// The whole server: one epoll instance, the listening socket, the signal
/// descriptor, and the table of connections.
pub(crate) struct Server {
    pub(crate) epoll: Epoll,
    pub(crate) listener: std::net::TcpListener,
    pub(crate) signals: SignalFd,
    /// The slab: connection `i` lives in `conns[i]`; `None` is a free slot,
    /// and `free` lists them so a slot is reused before the table grows.
    pub(crate) conns: Vec<Option<Conn>>,
    pub(crate) free: Vec<usize>,
    pub(crate) generations: Vec<u32>,
    /// One read buffer for every connection. We read into it and write
    /// straight back out; only bytes the peer cannot take yet are copied
    /// into that connection's own queue. A connection that keeps up costs
    /// no buffer at all.
    pub(crate) scratch: Box<[u8]>,
    pub(crate) trigger: Trigger,
    pub(crate) max_queued: usize,
    /// After EMFILE/ENFILE, accepting is paused until this moment, or until
    /// a connection closes, whichever comes first (see `descriptors.rs`).
    pub(crate) accept_paused_until: Option<Instant>,
    /// Edge mode: connections whose turn ended with bytes perhaps still
    /// unread (see `READS_PER_TURN`), to be served again before we sleep,
    /// first come first served, each at most once (`Conn::on_again`).
    pub(crate) again: VecDeque<u64>,
    pub(crate) stats: Stats,
}
// ANCHOR_END: server

impl Server {
    // ANCHOR: setup
    pub(crate) fn new(args: &Args) -> Result<Server, String> {
        let addr = args.common.addr;
        // socket, SO_REUSEADDR, bind, listen: as in lesson 01.
        let listener = uring_echo_book::listen::bind_or_explain(addr)?;
        // New: the listening socket is nonblocking too, so `accept` returns
        // EAGAIN when the queue is empty instead of waiting.
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("cannot make the listener nonblocking: {e}"))?;

        // SIGINT and SIGTERM become readable bytes on a descriptor, one more
        // event for the loop (see `shutdown.rs`).
        let signals = signal_fd()?;

        // epoll_create1: the kernel object that watches descriptors for us.
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)
            .map_err(|e| format!("cannot create an epoll instance: {e}"))?;
        // The listener is always level-triggered: if we stop accepting half
        // way (EMFILE), it must tell us again that connections are waiting.
        epoll
            .add(&listener, EpollEvent::new(EpollFlags::EPOLLIN, LISTENER))
            .map_err(|e| format!("cannot watch the listener: {e}"))?;
        epoll
            .add(&signals, EpollEvent::new(EpollFlags::EPOLLIN, SIGNALS))
            .map_err(|e| format!("cannot watch the signalfd: {e}"))?;

        let local = listener
            .local_addr()
            .map_err(|e| format!("cannot read the listening address: {e}"))?;
        uring_echo_book::listen::announce(local);
        Ok(Server {
            epoll,
            listener,
            signals,
            conns: Vec::new(),
            free: Vec::new(),
            generations: Vec::new(),
            scratch: vec![0u8; 64 * 1024].into_boxed_slice(),
            trigger: args.trigger,
            max_queued: usize::try_from(args.max_queued_bytes).unwrap_or(usize::MAX),
            accept_paused_until: None,
            again: VecDeque::new(),
            stats: Stats::default(),
        })
    }
    // ANCHOR_END: setup
}
