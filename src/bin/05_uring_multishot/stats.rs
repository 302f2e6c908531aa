//! Hardening: the counters, printed as one `stats:` line at exit. They
//! are how the chapter's claims are checked: `max_held` measures a burst,
//! `stale` would show a completion that reached the wrong connection, and
//! `allocations_after_startup` proves that the loop allocates nothing.

/// What the server did, printed at exit.
#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) taskrun: &'static str,
    pub(crate) enters: u64,
    /// Enters that waited for more than one completion (`--batch`).
    pub(crate) batched_enters: u64,
    /// Batch waits whose time limit ran out before anything came.
    pub(crate) batch_timeouts: u64,
    pub(crate) completions: u64,
    pub(crate) accepted: u64,
    pub(crate) refused: u64,
    pub(crate) closed: u64,
    pub(crate) recv_completions: u64,
    pub(crate) rearms: u64,
    pub(crate) enobufs: u64,
    pub(crate) reserve_recvs: u64,
    pub(crate) waits: u64,
    pub(crate) backpressure_pauses: u64,
    pub(crate) max_held: u32,
    pub(crate) sends: u64,
    pub(crate) short_sends: u64,
    pub(crate) conn_errors: u64,
    pub(crate) accept_pauses: u64,
    pub(crate) stale: u64,
    /// Reaps that found the kernel keeping completions on its overflow list
    /// (`IORING_SQ_CQ_OVERFLOW`): the completion queue was full.
    pub(crate) cq_overflowed: u64,
    /// Completions the kernel dropped, because it could not even keep them
    /// on its overflow list (`CompletionQueue::overflow()`).
    pub(crate) cq_dropped: u32,
    pub(crate) allocations_after_startup: u64,
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "stats: taskrun {} enters {} batched_enters {} batch_timeouts {} completions {} accepted {} refused {} closed {} \
             recv_completions {} rearms {} enobufs {} reserve_recvs {} waits {} backpressure_pauses {} \
             max_held {} sends {} short_sends {} conn_errors {} accept_pauses {} stale {} \
             cq_overflowed {} cq_dropped {} allocations_after_startup {}",
            self.taskrun,
            self.enters,
            self.batched_enters,
            self.batch_timeouts,
            self.completions,
            self.accepted,
            self.refused,
            self.closed,
            self.recv_completions,
            self.rearms,
            self.enobufs,
            self.reserve_recvs,
            self.waits,
            self.backpressure_pauses,
            self.max_held,
            self.sends,
            self.short_sends,
            self.conn_errors,
            self.accept_pauses,
            self.stale,
            self.cq_overflowed,
            self.cq_dropped,
            self.allocations_after_startup
        )
    }
}
