//! How many completions each `io_uring_enter` waits for (hardening: a
//! tuning of the event loop, not part of the core).
//!
//! Waiting for one completion returns as soon as there is work, so no
//! reply waits on another client's. But a server faster than its clients
//! then finds one or two completions per enter, and makes an enter for
//! every echo or two. Waiting for a batch cuts the enters, but while the
//! kernel collects it, the completions that have already come wait too: with
//! 8 ping-pong clients that halved the echoes per second, because every
//! client was waiting for its echo; with 50 it cost nothing, because the
//! client always had other connections to serve.
//!
//! So `--batch auto` (the default) waits for a batch only while many
//! connections are busy: it counts the connections that received anything
//! in the last millisecond, and while there are at least [`BUSY`], it waits
//! for half as many completions (at most [`MOST`]), or for
//! `--batch-wait-usec` after the first one, whichever comes first. Fewer
//! busy connections, one completion. `--batch N` fixes the number instead.
//! A wait for a batch with a time limit that starts at the first completion
//! is the "min-wait" of Linux 6.12; without it, `auto` waits for one, always.

use std::time::{Duration, Instant};

// ANCHOR: batch
/// What `--batch` asked for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum BatchChoice {
    /// Wait for a batch only while many connections are busy.
    Auto,
    /// Always wait for this many completions (or the time limit).
    Fixed(u32),
}

/// The fewest busy connections for which `auto` waits for a batch: below
/// this, clients wait on their own echoes and a batch wait costs them.
pub(crate) const BUSY: u32 = 16;

/// The largest batch `auto` waits for.
pub(crate) const MOST: u32 = 32;

/// How long one count of busy connections lasts.
const WINDOW: Duration = Duration::from_millis(1);

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
}

impl Batching {
    pub(crate) fn new(choice: BatchChoice, min_wait: bool) -> Batching {
        Batching {
            choice,
            min_wait,
            started: Instant::now(),
            window: 1,
            active: 0,
            busy: 0,
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

    /// How many completions the next enter should wait for.
    pub(crate) fn want(&mut self) -> usize {
        match self.choice {
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
                auto_batch(self.busy)
            }
        }
    }

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
                 {BUSY} or more connections are busy"
            ),
        }
    }
}

/// The batch `auto` waits for with `busy` connections busy.
pub(crate) fn auto_batch(busy: u32) -> usize {
    if busy < BUSY {
        1
    } else {
        (busy / 2).min(MOST) as usize
    }
}

/// Parses `--batch`: `auto`, or a number from 1 to 4096.
pub(crate) fn parse_batch(text: &str) -> Result<BatchChoice, String> {
    if text == "auto" {
        return Ok(BatchChoice::Auto);
    }
    match text.parse::<u32>() {
        Ok(n) if (1..=4096).contains(&n) => Ok(BatchChoice::Fixed(n)),
        _ => Err("`auto`, or a number of completions from 1 to 4096".into()),
    }
}
// ANCHOR_END: batch

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_busy_connections_wait_for_one_completion() {
        for busy in [0, 1, 8, BUSY - 1] {
            assert_eq!(auto_batch(busy), 1, "{busy}");
        }
        assert_eq!(auto_batch(BUSY), (BUSY / 2) as usize);
        assert_eq!(auto_batch(50), 25);
        assert_eq!(auto_batch(1000), MOST as usize);
    }

    #[test]
    fn a_connection_counts_once_per_window() {
        let mut batching = Batching::new(BatchChoice::Auto, true);
        let mut seen = [0u32; 20];
        for _ in 0..3 {
            for s in &mut seen {
                batching.saw_receive(s);
            }
        }
        assert_eq!(batching.active, 20);
        // The window closes: 20 were busy, so the next wait is for 10.
        batching.started -= WINDOW;
        assert_eq!(batching.want(), 10);
        assert_eq!(batching.active, 0);
    }

    #[test]
    fn without_min_wait_auto_waits_for_one() {
        let mut batching = Batching::new(BatchChoice::Auto, false);
        batching.busy = 1000;
        assert_eq!(batching.want(), 1);
        assert_eq!(Batching::new(BatchChoice::Fixed(8), false).want(), 8);
    }

    #[test]
    fn batch_parses() {
        assert_eq!(parse_batch("auto"), Ok(BatchChoice::Auto));
        assert_eq!(parse_batch("32"), Ok(BatchChoice::Fixed(32)));
        assert!(parse_batch("0").is_err());
        assert!(parse_batch("4097").is_err());
        assert!(parse_batch("lots").is_err());
    }
}
