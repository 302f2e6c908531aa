//! Printing a grade: a table for people, JSON for scripts.
//!
//! # The JSON schema, version 1
//!
//! `echo-check --json` prints one object:
//!
//! ```json
//! {
//!   "schema": "echo-check",
//!   "version": 1,
//!   "ok": true,
//!   "servers": [
//!     {
//!       "addr": "127.0.0.1:7878",
//!       "reachable": true,
//!       "expect": "01_blocking",
//!       "ok": true,
//!       "checks": [
//!         { "name": "basic", "result": "pass", "seconds": 0.01,
//!           "detail": "5 messages echoed", "hint": null }
//!       ]
//!     }
//!   ]
//! }
//! ```
//!
//! - `ok` (top level): every server's `ok`; the exit code is 0 exactly when it is true.
//! - `servers`: one entry per address, in the order given.
//! - `reachable`: false when no connection could be made; `checks` then holds a
//!   single `connect` entry with the error (with `--exercise`: a `build` or
//!   `start` entry when the program did not compile or did not start).
//! - `expect`: the lesson or peer whose expectations were applied (`--expect`), or null.
//! - `checks[].name`: a stable check name (`echo-check --list`).
//! - `checks[].result`: `pass`, `fail`, `expected-fail` (failed as the lesson's
//!   design must), or `unexpected-pass` (passed although expected to fail;
//!   not a failure).
//! - `checks[].seconds`: wall-clock time of the check.
//! - `checks[].detail`: what was verified, or what went wrong and where.
//! - `checks[].hint`: for a failure, where to look; for an expected result,
//!   why the design fails it; otherwise null.
//!
//! Fields may be added in later versions; existing ones keep their meaning
//! until `version` changes.

use std::fmt::Write as _;

use super::{ServerReport, Verdict};

/// The version of the JSON output, bumped when a field changes meaning.
pub const JSON_SCHEMA_VERSION: u32 = 1;

#[derive(serde::Serialize)]
struct Document<'a> {
    schema: &'static str,
    version: u32,
    ok: bool,
    servers: &'a [ServerReport],
}

/// The JSON document for a set of reports.
pub fn json(reports: &[ServerReport]) -> String {
    let doc = Document {
        schema: "echo-check",
        version: JSON_SCHEMA_VERSION,
        ok: reports.iter().all(|r| r.ok),
        servers: reports,
    };
    serde_json::to_string_pretty(&doc).expect("a report always serialises")
}

fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::Fail => "FAIL",
        Verdict::ExpectedFail => "expected",
        Verdict::UnexpectedPass => "pass (!)",
    }
}

/// The table for one server, as a student reads it.
pub fn table(report: &ServerReport) -> String {
    let mut out = String::new();
    let expect = report
        .expect
        .map(|l| format!(" (with the expectations of {l})"))
        .unwrap_or_default();
    let _ = writeln!(out, "echo-check {}{expect}", report.addr);
    if !report.reachable {
        let _ = writeln!(
            out,
            "  cannot connect: {}\n  is the server running, and listening on this address?",
            report
                .checks
                .first()
                .map(|c| c.detail.as_str())
                .unwrap_or("")
        );
        return out;
    }
    // The name column fits the longest name (the RESP checks' are long).
    let width = report
        .checks
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(0)
        .max(14);
    let _ = writeln!(
        out,
        "  {:<width$} {:<9} {:>7}  DETAIL",
        "CHECK", "RESULT", "TIME"
    );
    for c in &report.checks {
        let detail = match c.result {
            Verdict::Fail => "see below",
            _ => c.detail.as_str(),
        };
        let _ = writeln!(
            out,
            "  {:<width$} {:<9} {:>6.1}s  {}",
            c.name,
            verdict_word(c.result),
            c.seconds,
            detail
        );
    }
    let failed: Vec<_> = report
        .checks
        .iter()
        .filter(|c| c.result == Verdict::Fail)
        .collect();
    for c in &failed {
        let _ = writeln!(out, "\n  {} failed: {}", c.name, c.detail);
        if let Some(hint) = &c.hint {
            let _ = writeln!(out, "    look at: {hint}");
        }
    }
    let mut explained = Vec::new();
    for c in &report.checks {
        if let (Verdict::ExpectedFail | Verdict::UnexpectedPass, Some(hint)) = (c.result, &c.hint)
            && !explained.contains(&hint)
        {
            explained.push(hint);
        }
    }
    for hint in explained {
        let _ = writeln!(out, "\n  expected: {hint}");
    }
    for c in report
        .checks
        .iter()
        .filter(|c| c.result == Verdict::UnexpectedPass)
    {
        let _ = writeln!(
            out,
            "  note: {} passed although this server's design is expected to fail it",
            c.name
        );
    }
    let count = |v| report.checks.iter().filter(|c| c.result == v).count();
    let _ = writeln!(
        out,
        "\n  {}: {} passed, {} failed, {} failed as expected",
        if report.ok { "OK" } else { "NOT OK" },
        count(Verdict::Pass) + count(Verdict::UnexpectedPass),
        count(Verdict::Fail),
        count(Verdict::ExpectedFail),
    );
    out
}
