//! How many completions each `io_uring_enter` waits for (hardening: a
//! tuning of the event loop, not part of the core).
//!
//! Waiting for one completion returns as soon as there is work, so no
//! reply waits on another client's. But a server faster than its clients
//! then finds a few completions per enter, and makes an enter every echo or
//! two. Waiting for a batch (with Linux 6.12's min-wait: N completions, or
//! `--batch-wait-usec` after the first) cuts the enters, and it has two
//! prices, both measured (chapter 05, "What it costs"):
//!
//! - with few clients, every client waits for its own echo while the batch
//!   gathers: 8 ping-pong clients lost half their echoes per second;
//! - with a server that is not busy, the wait usually ends on its timer,
//!   and a sleep that ends on a timer costs more than one that ends on a
//!   completion: at a fixed 94,338 echoes a second, `--batch 32` cost 1.54×
//!   the server CPU per echo of waiting for one.
//!
//! Neither price is paid when many connections are busy *and* the server is
//! busy: completions then come faster than it handles them, and a batch
//! fills before its timer. So `--batch auto` (the default) counts the
//! connections that received anything in the last millisecond and measures
//! the share of the last 10 ms the server's thread spent on the CPU, and
//! waits for a batch (half as many completions as busy connections, at
//! most [`MOST`]) only while at least [`BUSY`] connections are busy and the
//! thread is busy at least [`BUSY_SHARE_ON`] of the time; it stops below
//! [`BUSY_SHARE_OFF`]. `--batch N` fixes the number instead.
//!
//! A server that is not busy can still gain from a batch, when its clients
//! are what sets the pace: a client that gets 20 replies in one wake-up
//! handles them with one `epoll_wait` instead of 20, and sends its next
//! requests sooner (lesson 07 under `redis-benchmark` is such a case). The
//! sign is the same as before, seen from the other side: the batches fill
//! before their timer. So a lesson can ask for *trials* (07 does): while
//! many connections are busy, `auto` then tries a batch for one CPU window
//! every [`PROBE_EVERY`], and keeps batching while the enters return with
//! at least [`FILL_ON`] of the completions they waited for (stopping below
//! [`FILL_OFF`]). At a fixed offered rate the batches end on their timer,
//! barely filled, and the trial ends after one window. Lessons 05 and 06 do
//! not ask for trials: measured with them, an echo server 16 deep in
//! pipelined requests made a ninth of the enters and spent 13% (05) to 28%
//! (06) more CPU per echo, for a few per cent more echoes a second; its
//! own CPU is the figure an echo lesson is judged by, and 07's is not what
//! its trials change.

use std::time::{Duration, Instant};

use nix::time::{ClockId, clock_gettime};

use crate::BatchChoice;

// ANCHOR: batch
/// The fewest busy connections for which `auto` waits for a batch: below
/// this, clients wait on their own echoes and a batch wait costs them.
pub(crate) const BUSY: u32 = 16;

/// The largest batch `auto` waits for.
pub(crate) const MOST: u32 = 32;

/// The share of its time the server's thread must be on the CPU for
/// `auto` to start batching, and below which it stops (two marks, so that
/// it does not flip at every window when the share sits near one).
pub(crate) const BUSY_SHARE_ON: f64 = 0.75;
pub(crate) const BUSY_SHARE_OFF: f64 = 0.6;

/// How often `auto`, when neither rule has it batching, tries a batch for
/// one CPU window to see whether batches fill.
pub(crate) const PROBE_EVERY: Duration = Duration::from_millis(500);

/// The share of the completions it waited for that a batched enter must
/// return with, on average over a CPU window, for `auto` to go on batching
/// after a trial, and below which it stops.
pub(crate) const FILL_ON: f64 = 0.75;
pub(crate) const FILL_OFF: f64 = 0.5;

/// How long one count of busy connections lasts, and one measure of the
/// thread's CPU share (reading the thread's CPU clock is a system call:
/// a hundred a second is nothing next to the enters it saves).
const WINDOW: Duration = Duration::from_millis(1);
const CPU_WINDOW: Duration = Duration::from_millis(10);

/// The batch policy and what it has seen.
pub(crate) struct Batching {
    choice: BatchChoice,
    /// The kernel has the 6.12 min-wait (`IORING_FEAT_MIN_TIMEOUT`).
    min_wait: bool,
    /// The current window: when it began, its number, and the connections
    /// that received something in it so far.
    started: Instant,
    window: u32,
    active: u32,
    /// Connections that received something in the last complete window.
    busy: u32,
    /// When the current CPU window began, and the thread's CPU time then.
    cpu_started: Instant,
    cpu_then: Duration,
    /// Whether `auto` is batching now because the server is busy.
    on: bool,
    /// Whether trials are on at all (a lesson's choice, see above).
    trials: bool,
    /// Whether it is batching because batches fill, whether this CPU window
    /// is a trial of that, and when the last trial began.
    filling: bool,
    trial: bool,
    last_trial: Instant,
    /// The completions the batched enters of this CPU window waited for,
    /// and how many they came back with; the last enter's wish.
    asked: u64,
    got: u64,
    last_want: usize,
}

impl Batching {
    /// `trials`: whether `auto` may try batches while the server is not
    /// busy, and keep them while they fill.
    pub(crate) fn new(choice: BatchChoice, min_wait: bool, trials: bool) -> Batching {
        Batching {
            choice,
            min_wait,
            trials,
            started: Instant::now(),
            window: 1,
            active: 0,
            busy: 0,
            cpu_started: Instant::now(),
            cpu_then: thread_cpu_time(),
            on: false,
            filling: false,
            trial: false,
            // As if the last trial were long ago: the first may come at once.
            last_trial: Instant::now()
                .checked_sub(PROBE_EVERY)
                .unwrap_or_else(Instant::now),
            asked: 0,
            got: 0,
            last_want: 1,
        }
    }

    /// The enter that `want` sized came back, and the completion queue held
    /// `completions`: how full the batch was.
    pub(crate) fn reaped(&mut self, completions: usize) {
        if self.last_want > 1 {
            self.asked += self.last_want as u64;
            self.got += completions.min(self.last_want) as u64;
        }
    }

    /// A connection received data. `seen` is that connection's own note of
    /// the last window it was counted in, so each counts once per window.
    pub(crate) fn saw_receive(&mut self, seen: &mut u32) {
        if *seen != self.window {
            *seen = self.window;
            self.active += 1;
        }
    }

    // ANCHOR: want
    /// How many completions the next enter should wait for.
    pub(crate) fn want(&mut self) -> usize {
        let want = match self.choice {
            BatchChoice::Fixed(n) => n as usize,
            BatchChoice::Auto if !self.min_wait => 1,
            BatchChoice::Auto => {
                let now = Instant::now();
                if now.duration_since(self.started) >= WINDOW {
                    self.busy = self.active;
                    self.active = 0;
                    self.window = self.window.wrapping_add(1).max(1);
                    self.started = now;
                }
                if now.duration_since(self.cpu_started) >= CPU_WINDOW {
                    let cpu = thread_cpu_time();
                    let share = (cpu.saturating_sub(self.cpu_then)).as_secs_f64()
                        / now.duration_since(self.cpu_started).as_secs_f64();
                    self.on = decide(self.on, self.busy, share);
                    self.cpu_then = cpu;
                    self.cpu_started = now;
                    // The fill rule: judge the trial, or the batching it
                    // started, by how full this window's batches were.
                    let fill = (self.asked > 0).then(|| self.got as f64 / self.asked as f64);
                    self.filling = keep_filling(self.filling, self.trial, self.busy, fill);
                    (self.asked, self.got, self.trial) = (0, 0, false);
                    if self.trials
                        && !self.on
                        && !self.filling
                        && self.busy >= BUSY
                        && now.duration_since(self.last_trial) >= PROBE_EVERY
                    {
                        self.trial = true;
                        self.last_trial = now;
                    }
                }
                if self.on || self.filling || self.trial {
                    auto_batch(self.busy)
                } else {
                    1
                }
            }
        };
        self.last_want = want;
        want
    }
    // ANCHOR_END: want

    /// In a few words, for the start-up line.
    pub(crate) fn describe(&self, wait_usec: u32) -> String {
        match self.choice {
            BatchChoice::Fixed(1) => "waits for 1 completion".into(),
            BatchChoice::Fixed(n) => format!("waits for {n} completions or {wait_usec} µs"),
            BatchChoice::Auto if !self.min_wait => "waits for 1 completion (batching needs \
                 Linux 6.12's IORING_FEAT_MIN_TIMEOUT, which this kernel lacks)"
                .into(),
            BatchChoice::Auto => format!(
                "waits for 1 completion, or for up to {MOST} (or {wait_usec} µs) while \
                 {BUSY} or more connections are busy and the server is too{}",
                if self.trials { ", or batches fill" } else { "" }
            ),
        }
    }
}

// ANCHOR: decide
/// Whether `auto` batches next, given whether it batched, the busy
/// connections, and the thread's CPU share over the last CPU window.
pub(crate) fn decide(on: bool, busy: u32, share: f64) -> bool {
    let mark = if on { BUSY_SHARE_OFF } else { BUSY_SHARE_ON };
    busy >= BUSY && share >= mark
}

/// Whether `auto` batches next because batches fill, given whether it did,
/// whether the window just ended was a trial, the busy connections, and the
/// share of what the window's batched enters waited for that they got.
pub(crate) fn keep_filling(filling: bool, trial: bool, busy: u32, fill: Option<f64>) -> bool {
    let mark = if filling { FILL_OFF } else { FILL_ON };
    (filling || trial) && busy >= BUSY && fill.is_some_and(|f| f >= mark)
}

/// The batch `auto` waits for with `busy` connections busy.
pub(crate) fn auto_batch(busy: u32) -> usize {
    (busy / 2).clamp(1, MOST) as usize
}
// ANCHOR_END: decide

/// The CPU time this thread has used (`CLOCK_THREAD_CPUTIME_ID`), zero if
/// it cannot be read (then `auto` never batches: its share reads as 0).
fn thread_cpu_time() -> Duration {
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).map_or(Duration::ZERO, Duration::from)
}
// ANCHOR_END: batch

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_only_with_many_busy_connections_and_a_busy_server() {
        assert!(!decide(false, 8, 1.0), "few connections");
        assert!(!decide(false, 50, 0.5), "an idle server");
        assert!(decide(false, 50, 0.8));
        // Once on, it stays on down to the lower mark, then stops.
        assert!(decide(true, 50, 0.7));
        assert!(!decide(true, 50, 0.5));
        assert!(!decide(true, BUSY - 1, 1.0));
    }

    #[test]
    fn a_trial_keeps_batching_only_if_its_batches_fill() {
        assert!(
            keep_filling(false, true, 50, Some(0.9)),
            "a trial that filled"
        );
        assert!(
            !keep_filling(false, true, 50, Some(0.3)),
            "a trial that ended on timers"
        );
        assert!(
            !keep_filling(false, true, 50, None),
            "a trial with no batched enter"
        );
        assert!(
            !keep_filling(false, false, 50, Some(1.0)),
            "no trial, no start"
        );
        // Once on, it stays on down to the lower mark, and only while busy.
        assert!(keep_filling(true, false, 50, Some(0.6)));
        assert!(!keep_filling(true, false, 50, Some(0.4)));
        assert!(!keep_filling(true, false, BUSY - 1, Some(1.0)));
    }

    #[test]
    fn a_batch_counts_what_it_waited_for_and_what_came() {
        let mut batching = Batching::new(BatchChoice::Fixed(8), true, false);
        assert_eq!(batching.want(), 8);
        batching.reaped(20); // more than asked counts as full, not more
        batching.reaped(2); // an enter that came back with 2 of 8
        assert_eq!((batching.asked, batching.got), (16, 10));
        let mut one = Batching::new(BatchChoice::Fixed(1), true, false);
        one.want();
        one.reaped(5);
        assert_eq!(one.asked, 0, "a wait for one is no batch");
    }

    #[test]
    fn a_busy_idle_server_tries_a_batch_then_keeps_it_if_it_fills() {
        let mut batching = Batching::new(BatchChoice::Auto, true, true);
        batching.active = 50;
        batching.started -= WINDOW;
        batching.cpu_started -= CPU_WINDOW;
        // The thread has barely run: the CPU rule says no, a trial starts.
        assert_eq!(batching.want(), auto_batch(50));
        assert!(batching.trial && !batching.on);
        batching.reaped(25);
        batching.active = 50;
        batching.started -= WINDOW;
        batching.cpu_started -= CPU_WINDOW;
        assert_eq!(
            batching.want(),
            auto_batch(50),
            "the trial's batches filled"
        );
        assert!(batching.filling && !batching.trial);
    }

    #[test]
    fn without_trials_an_idle_server_never_batches() {
        let mut batching = Batching::new(BatchChoice::Auto, true, false);
        batching.active = 50;
        batching.started -= WINDOW;
        batching.cpu_started -= CPU_WINDOW;
        assert_eq!(batching.want(), 1);
        assert!(!batching.trial);
    }

    #[test]
    fn the_batch_is_half_the_busy_connections_at_most_32() {
        assert_eq!(auto_batch(BUSY), (BUSY / 2) as usize);
        assert_eq!(auto_batch(50), 25);
        assert_eq!(auto_batch(1000), MOST as usize);
    }

    #[test]
    fn a_connection_counts_once_per_window() {
        let mut batching = Batching::new(BatchChoice::Auto, true, false);
        let mut seen = [0u32; 20];
        for _ in 0..3 {
            for s in &mut seen {
                batching.saw_receive(s);
            }
        }
        assert_eq!(batching.active, 20);
        batching.started -= WINDOW;
        batching.want();
        assert_eq!((batching.busy, batching.active), (20, 0));
    }

    #[test]
    fn without_min_wait_auto_waits_for_one() {
        let mut batching = Batching::new(BatchChoice::Auto, false, false);
        batching.busy = 1000;
        batching.on = true;
        assert_eq!(batching.want(), 1);
        assert_eq!(Batching::new(BatchChoice::Fixed(8), false, false).want(), 8);
    }

    #[test]
    fn batch_parses() {
        use crate::parse_batch;
        assert_eq!(parse_batch("auto"), Ok(BatchChoice::Auto));
        assert_eq!(parse_batch("32"), Ok(BatchChoice::Fixed(32)));
        assert!(parse_batch("0").is_err());
        assert!(parse_batch("4097").is_err());
        assert!(parse_batch("lots").is_err());
    }

    #[test]
    fn the_threads_cpu_time_moves() {
        let before = thread_cpu_time();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(thread_cpu_time() > before);
    }
}
