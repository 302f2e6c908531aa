//! The grader: the same checks for the test suite, a student's own server,
//! and an instructor's class. `echo-check` is its command line.
//!
//! [`grade`] runs the chosen checks one after the other against one address
//! and returns a [`ServerReport`]; [`report`] prints it as a table for people
//! or as JSON (schema documented in [`report::JSON_SCHEMA_VERSION`]) for scripts.

pub mod checks;
pub mod exercise_checks;
pub mod report;

use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

pub use checks::{CHECKS, Check, REPLY_TIMEOUT, check};
pub use exercise_checks::EXERCISE_CHECKS;

use crate::lessons::Expectations;

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// It passed.
    Pass,
    /// It failed, and the server was expected to pass it.
    Fail,
    /// It failed, as the expectations table says this design must.
    ExpectedFail,
    /// It passed although the expectations table says it should fail.
    UnexpectedPass,
}

impl Verdict {
    /// Whether this verdict makes the grade fail.
    pub fn is_failure(self) -> bool {
        self == Verdict::Fail
    }
}

/// The outcome of one check against one server.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckResult {
    /// The check's stable name.
    pub name: &'static str,
    /// How it ended.
    pub result: Verdict,
    /// Wall-clock time the check took.
    pub seconds: f64,
    /// What was verified (on a pass) or what went wrong (on a failure).
    pub detail: String,
    /// Where to look, for a failure; why it was expected, for an expected one.
    pub hint: Option<String>,
}

/// Every check's outcome against one server.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServerReport {
    /// The address graded, as given.
    pub addr: String,
    /// Whether the server accepted a first connection at all.
    pub reachable: bool,
    /// The lesson or peer whose expectations were applied, if any.
    pub expect: Option<&'static str>,
    /// True when every check passed or failed as expected.
    pub ok: bool,
    /// One entry per check run, in order.
    pub checks: Vec<CheckResult>,
}

impl ServerReport {
    /// "check: detail" for every check that did not pass outright: what a
    /// test prints when it wants every check to pass.
    pub fn not_passed(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter(|c| c.result != Verdict::Pass)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect()
    }
}

/// Runs one check with its time limit. A check that overruns is abandoned:
/// its own I/O time limits end its thread soon after.
pub fn run_check(check: &'static Check, addr: SocketAddr) -> (Result<String, String>, Duration) {
    let started = Instant::now();
    let (done, result) = mpsc::channel();
    let runner = thread::Builder::new()
        .name(format!("check-{}", check.name))
        .spawn(move || {
            let _ = done.send((check.run)(addr));
        });
    if let Err(e) = runner {
        return (
            Err(format!("the grader could not start a thread: {e}")),
            started.elapsed(),
        );
    }
    let outcome = match result.recv_timeout(check.limit) {
        Ok(outcome) => outcome,
        Err(mpsc::RecvTimeoutError::Timeout) => Err(format!(
            "did not finish within its limit of {} s",
            check.limit.as_secs()
        )),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            Err("the check itself panicked (a grader bug: please report it)".into())
        }
    };
    (outcome, started.elapsed())
}

/// Tries one connection, so an address nobody listens on is reported once,
/// not as every check failing.
pub fn reachable(addr: SocketAddr) -> Result<(), String> {
    crate::client::connect(addr, REPLY_TIMEOUT)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// The report on an address that never answered: one failed `connect`,
/// so that it is reported once, not as every check failing.
pub fn unreachable(label: &str, why: String) -> ServerReport {
    ServerReport {
        addr: label.to_string(),
        reachable: false,
        expect: None,
        ok: false,
        checks: vec![CheckResult {
            name: "connect",
            result: Verdict::Fail,
            seconds: 0.0,
            detail: why,
            hint: Some("is the server running, and listening on this address?".into()),
        }],
    }
}

/// Grades the server at `addr` with `checks`, applying `expect`'s table (a
/// lesson's or a peer's).
/// `progress` is called before each check (for a line on the terminal).
pub fn grade(
    addr: SocketAddr,
    label: &str,
    checks: &[&'static Check],
    expect: Option<&dyn Expectations>,
    mut progress: impl FnMut(&Check),
) -> ServerReport {
    let mut report = ServerReport {
        addr: label.to_string(),
        reachable: true,
        expect: expect.map(|l| l.name()),
        ok: true,
        checks: Vec::new(),
    };
    if let Err(why) = reachable(addr) {
        return ServerReport {
            expect: report.expect,
            ..unreachable(label, why)
        };
    }
    for &check in checks {
        progress(check);
        let (outcome, took) = run_check(check, addr);
        let expected = expect.and_then(|server| server.expected_failure(check.name));
        let (result, detail, hint) = match (outcome, expected) {
            (Ok(summary), None) => (Verdict::Pass, summary, None),
            // A failure that shows only in some runs: passing is no news.
            (Ok(summary), Some(e)) if !e.always => (Verdict::Pass, summary, None),
            (Ok(summary), Some(e)) => (
                Verdict::UnexpectedPass,
                summary,
                Some(format!("expected to fail: {}", e.why)),
            ),
            (Err(why), None) => (Verdict::Fail, why, Some(check.hint.to_string())),
            (Err(why), Some(e)) => (Verdict::ExpectedFail, why, Some(e.why.to_string())),
        };
        report.ok &= !result.is_failure();
        report.checks.push(CheckResult {
            name: check.name,
            result,
            seconds: took.as_secs_f64(),
            detail,
            hint,
        });
    }
    report
}
