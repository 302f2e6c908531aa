//! The mixed soak: rounds of hundreds of clients at once, each drawn at
//! random (sizes from 1 B to 1 MiB, pipelined or lock-step, half-closes,
//! resets, slow readers), every byte checked; after each round the server's
//! descriptors must be back exactly where they were, and its memory must not
//! climb from round to round. The clients are in `plan.rs` (the generator
//! that draws them, and what each one does) and `session.rs` (one client
//! and a round of them); this file runs rounds and looks at the server.
//!
//! The clients are drawn from a fixed seed ([`plan::DEFAULT_SEED`]), so
//! every run, CI's included, draws the same ones and a failure replays by
//! running the test again; `ECHO_SOAK_SEED=N` chooses others. The seed is
//! printed, and a failure's message says how to rerun with it.
//!
//! `soak` (ignored) is the long run of the whole fault suite, for an
//! engineer: this soak, 10,000 connections and SIGINT mid-transfer, for
//! minutes:
//! `ECHO_SOAK_SECS=300 cargo test --release --test soak -- --ignored --nocapture`.
//! The other cases live in `tests/signals.rs`, `tests/privileges.rs` and
//! `tests/many_connections.rs`; `tests/common/mod.rs` says what each holds.
#![cfg(target_os = "linux")]

#[path = "../common/mod.rs"]
mod common;
mod plan;
mod session;

use std::env;
use std::time::{Duration, Instant};

use uring_echo_tools::lessons::{self, Lesson};
use uring_echo_tools::process::ServerProcess;

use common::many::{enough_descriptors, ten_thousand};
use common::sigint::sigint_with_clients_streaming;
use common::{LIMIT, open_fds, settle_fds, start, tail};
use plan::{Ending, Plan, seed};
use session::{Tally, run_round, run_session};

/// How many clients a round runs, and how many at once.
struct Shape {
    sessions: u64,
    workers: u64,
}

/// A round for `lesson`: 256 clients, 64 at a time; one at a time (and
/// fewer) where the expectations table says the design serves only one.
fn shape(lesson: &Lesson) -> Shape {
    match lesson.expected_failure("concurrent") {
        Some(e) => {
            eprintln!(
                "{}: the soak runs one client at a time, not 64 ({})",
                lesson.name, e.why
            );
            Shape {
                sessions: 64,
                workers: 1,
            }
        }
        None => Shape {
            sessions: 256,
            workers: 64,
        },
    }
}

// ANCHOR: rss_tolerance
/// How far the server's resident memory may rise above its level after the
/// first round. It never returns to the level before: the allocator keeps
/// freed pages for reuse instead of handing them back, glibc keeps the
/// stacks of finished threads cached for new ones, and the kernel keeps
/// every page of a buffer pool it has once written. So the first round
/// sets the level, and a later round may add no more than this: 8 MiB (a
/// round's worth of unlucky fragmentation) plus a quarter of that level.
/// A leak of one 4 KiB buffer per connection adds 1 MiB a round, so it
/// passes a three-round CI run and fails a soak of a minute or more.
fn rss_tolerance(level_kib: u64) -> u64 {
    8 * 1024 + level_kib / 4
}
// ANCHOR_END: rss_tolerance

/// How long a soak runs: a number of rounds, or for a while.
#[derive(Clone, Copy)]
enum Length {
    Rounds(u32),
    For(Duration),
}

/// `ECHO_SOAK_SECS`, when an engineer set it.
fn soak_secs() -> Option<u64> {
    env::var("ECHO_SOAK_SECS").ok().and_then(|v| v.parse().ok())
}

// ANCHOR: soak
/// The mixed soak of one lesson: a warm-up, then rounds of random clients;
/// after each round every descriptor must be back and memory must not have
/// climbed. `progress` prints a line per round (the soak mode wants them).
fn soak_lesson(
    lesson: &Lesson,
    seed: u64,
    length: Length,
    progress: bool,
) -> Result<Tally, String> {
    let shape = shape(lesson);
    let mut server = start(lesson)?;
    let addr = server.addr();
    let pid = server.pid();
    let failed = |why: String, server: &ServerProcess| {
        format!(
            "{why}\n(seed {seed}: rerun with ECHO_SOAK_SEED={seed})\n--- server stderr:\n{}",
            tail(server)
        )
    };

    // Warm-up: one client that half-closes and waits for the server's EOF.
    // The server has closed that socket before it sends the FIN, so the
    // count taken now is exact: the listener and whatever else it holds
    // for its whole life.
    let warm_up = Plan {
        stream: seed,
        messages: vec![100_000],
        lock_step: vec![false],
        slow: false,
        ending: Ending::HalfClose,
        reset_after: 0,
    };
    run_session(addr, &warm_up).map_err(|e| failed(format!("warm-up: {e}"), &server))?;
    let baseline = open_fds(pid).len();

    let started = Instant::now();
    let mut total = Tally::default();
    let mut rss = Vec::new();
    for round in 0u64.. {
        let done = match length {
            Length::Rounds(n) => round >= u64::from(n),
            // At least three rounds, so that memory can be compared.
            Length::For(d) => round >= 3 && started.elapsed() >= d,
        };
        if done {
            break;
        }
        let round_seed = seed.wrapping_add(round.wrapping_mul(0xD1B5_4A32_D192_ED03));
        let (tally, failures) = run_round(addr, round_seed, shape.sessions, shape.workers);
        total.add(&tally);
        if !failures.is_empty() {
            return Err(failed(
                format!(
                    "round {round}: {} of {} clients failed; the first ones:\n  {}",
                    failures.len(),
                    shape.sessions,
                    failures[..failures.len().min(5)].join("\n  ")
                ),
                &server,
            ));
        }
        settle_fds(pid, baseline).map_err(|e| failed(format!("round {round}: {e}"), &server))?;
        let kib = server
            .rss_kib()
            .map_err(|e| failed(format!("cannot read VmRSS: {e}"), &server))?;
        rss.push(kib);
        if progress {
            eprintln!(
                "{} round {round} ({:.0} s): {tally}; {baseline} descriptors; VmRSS {kib} KiB",
                lesson.name,
                started.elapsed().as_secs_f64()
            );
        }
        // Round 0 sets the level; no later round may rise far above it.
        let level = rss[0];
        if kib > level + rss_tolerance(level) {
            return Err(failed(
                format!(
                    "VmRSS climbed from {level} KiB after the first round to {kib} KiB after \
                     round {round} (tolerance {} KiB); every round so far: {rss:?}",
                    rss_tolerance(level)
                ),
                &server,
            ));
        }
    }

    server
        .interrupt()
        .map_err(|e| failed(format!("SIGINT: {e}"), &server))?;
    let status = server
        .wait_timeout(LIMIT)
        .map_err(|e| failed(e.to_string(), &server))?;
    if !status.is_some_and(|s| s.success()) {
        return Err(failed(
            format!("after the soak, SIGINT: {status:?}"),
            &server,
        ));
    }
    if server.stderr().contains("panicked") {
        return Err(failed("the server panicked".into(), &server));
    }
    let memory = if rss.len() <= 8 {
        format!("VmRSS by round (KiB): {rss:?}")
    } else {
        let highest = rss.iter().max().copied().unwrap_or_default();
        format!(
            "VmRSS after round 0 {} KiB, highest {highest} KiB, last {} KiB",
            rss[0],
            rss[rss.len() - 1]
        )
    };
    eprintln!(
        "{}: {} rounds, {total} in {:.1} s; descriptors back to {baseline} after every \
         round; {memory}",
        lesson.name,
        rss.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(total)
}

#[test]
fn mixed_soak() {
    uring_echo_book::limits::raise_open_file_limit_or_warn();
    let seed = seed();
    eprintln!("mixed soak: seed {seed} (ECHO_SOAK_SEED=N for others)");
    // Three rounds by default, a few seconds a lesson; longer when asked.
    let length = match soak_secs() {
        Some(secs) => Length::For(Duration::from_secs(secs)),
        None => Length::Rounds(3),
    };
    let mut failures = Vec::new();
    for lesson in lessons::runnable() {
        if let Err(e) = soak_lesson(lesson, seed, length, soak_secs().is_some()) {
            failures.push(format!("{}: {e}", lesson.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
// ANCHOR_END: soak

// ANCHOR: soak_mode
/// The long soak, for an engineer: the mixed soak for minutes, then 10,000
/// connections and SIGINT mid-transfer, lesson after lesson, with a
/// progress line per round and totals at the end.
///
/// ```text
/// ECHO_SOAK_SECS=300 cargo test --release --test soak -- --ignored --nocapture
/// ECHO_SOAK_LESSONS=04_uring,05_uring_multishot ECHO_SOAK_SECS=300 cargo test ...
/// ECHO_SOAK_SEED=1234 ...     # other clients, or replay a run that used 1234
/// ECHO_SOAK_SEED=random ...   # a new seed each run, printed at the start
/// ```
#[test]
#[ignore = "minutes long; run it with --ignored (see chapters/testing.md)"]
fn soak() {
    uring_echo_book::limits::raise_open_file_limit_or_warn();
    let secs = soak_secs().unwrap_or(60);
    let seed = seed();
    let only = env::var("ECHO_SOAK_LESSONS").ok();
    let chosen = |l: &Lesson| {
        only.as_deref()
            .is_none_or(|names| names.split(',').any(|n| n.trim() == l.name))
    };
    eprintln!("soak: {secs} s of mixed clients per lesson, seed {seed}");
    let mut failures = Vec::new();
    let mut grand = Tally::default();
    let mut sigints = 0;
    for lesson in lessons::runnable().into_iter().filter(|l| chosen(l)) {
        match soak_lesson(lesson, seed, Length::For(Duration::from_secs(secs)), true) {
            Ok(tally) => grand.add(&tally),
            Err(e) => failures.push(format!("{}: {e}", lesson.name)),
        }
        if lesson.expected_failure("idle").is_none() && enough_descriptors().is_ok() {
            match ten_thousand(lesson) {
                Ok(summary) => eprintln!("{}: {summary}", lesson.name),
                Err(e) => failures.push(format!("{}: {e}", lesson.name)),
            }
        }
        match sigint_with_clients_streaming(lesson) {
            Ok(summary) => {
                sigints += 1;
                eprintln!("{}: {summary}", lesson.name);
            }
            Err(e) => failures.push(format!("{}: {e}", lesson.name)),
        }
    }
    eprintln!(
        "soak totals: {grand}; {sigints} SIGINTs mid-transfer; {} failures",
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
// ANCHOR_END: soak_mode
