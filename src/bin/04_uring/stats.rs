//! The counters the server prints at exit, one `stats:` line on stderr.
//! Hardening: they change nothing the server does, and show what it did
//! (how many `io_uring_enter` calls, short sends, stale completions).

/// What the server did, printed at exit.
#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) enters: u64,
    pub(crate) completions: u64,
    pub(crate) accepted: u64,
    pub(crate) closed: u64,
    pub(crate) recvs: u64,
    pub(crate) sends: u64,
    pub(crate) short_sends: u64,
    pub(crate) accept_pauses: u64,
    pub(crate) stale: u64,
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "stats: enters {} completions {} accepted {} closed {} recvs {} sends {} \
             short_sends {} accept_pauses {} stale {}",
            self.enters,
            self.completions,
            self.accepted,
            self.closed,
            self.recvs,
            self.sends,
            self.short_sends,
            self.accept_pauses,
            self.stale
        )
    }
}
