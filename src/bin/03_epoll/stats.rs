//! Hardening, of the observable kind: the counters the server keeps, and
//! the one `stats:` line it prints on stderr at exit.

/// What the event loop did, printed at exit so `strace -c` figures can be
/// checked against the program's own count.
#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) accepted: u64,
    pub(crate) closed: u64,
    pub(crate) waits: u64,
    pub(crate) reads: u64,
    pub(crate) writes: u64,
    pub(crate) would_block: u64,
    pub(crate) short_writes: u64,
    pub(crate) backpressure_pauses: u64,
    pub(crate) accept_pauses: u64,
    pub(crate) bytes: u64,
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "stats: accepted {} closed {} epoll_waits {} reads {} writes {} eagain {} \
             short_writes {} backpressure_pauses {} accept_pauses {} bytes_echoed {}",
            self.accepted,
            self.closed,
            self.waits,
            self.reads,
            self.writes,
            self.would_block,
            self.short_writes,
            self.backpressure_pauses,
            self.accept_pauses,
            self.bytes
        )
    }
}
