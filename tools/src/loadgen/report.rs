//! Printing a run: the classic table for people, JSON for scripts.
//!
//! # The table
//!
//! It starts with `rust_echo_bench`'s own lines, word for word, so a run can
//! be set beside the published tables, and adds what those lack:
//!
//! ```text
//! Benchmarking: 127.0.0.1:7878
//! 50 clients, running 512 bytes, 5 sec.
//!
//! Speed: 162641 request/sec, 162631 response/sec
//! Requests: 813215
//! Responses: 813165
//!
//!   window        5.00 s, after 0.0 s of warm-up; pipeline 1; client on CPU 1
//!   echoed        83267557 bytes/s (79.4 MiB/s), every byte verified
//!   latency (µs)  p50 275.5  p90 390.7  p99 596.0  p99.9 1761.3  max 8757.2
//!   client CPU    user 0.62 s, system 4.28 s: 98% of one core (the client may be the limit)
//!   errors        0
//! ```
//!
//! (05_uring_multishot on CPU 0 and the client on CPU 1 of a 2-core machine,
//! `-c 50 -d 5 -l 512 --pin 1`.)
//!
//! An open-loop run (`--rate`) adds one line, which says whether the server
//! kept up with the rate:
//!
//! ```text
//!   rate          offered 20000/s, achieved 19998/s (100%): kept up; latency from each message's due time
//!   rate          offered 900000/s, achieved 151234/s (17%): NOT KEPT UP, 748766 sends behind at the end; the latencies measure the backlog
//! ```
//!
//! `Speed` is whole requests (responses) divided by the window, rounded
//! down, as `rust_echo_bench` prints it.
//!
//! # The JSON schema, version 2
//!
//! Version 2 added `rate` and `responses_in_run`, for `--rate`, whose
//! latencies count from each message's due time rather than from when it was
//! sent; a version 1 reader would have taken those for closed-loop round
//! trips. Every other field is as in version 1.
//!
//! `echo-bench --json` prints one object on one line:
//!
//! ```json
//! {
//!   "schema": "echo-bench",
//!   "schema_version": 2,
//!   "address": "127.0.0.1:37929",
//!   "connections": 50,
//!   "length": 512,
//!   "pipeline": 1,
//!   "warmup_seconds": 0.0,
//!   "seconds": 5.000106491,
//!   "requests": 837063,
//!   "responses": 837013,
//!   "bytes": 428550656,
//!   "requests_per_sec": 167409.03448890164,
//!   "responses_per_sec": 167399.0347018791,
//!   "bytes_per_sec": 85708305.7673621,
//!   "latency_us": { "samples": 837013, "min": 122.816, "mean": 298.6768151605774,
//!                   "p50": 270.591, "p90": 354.047, "p99": 599.551, "p999": 2267.135,
//!                   "max": 6275.071 },
//!   "errors": 0,
//!   "pinned_cpu": 1,
//!   "client_cpu": { "user_seconds": 0.579681, "system_seconds": 4.290498,
//!                   "busy": 0.9740150552325506 },
//!   "rate": null,
//!   "responses_in_run": 837063
//! }
//! ```
//!
//! (Another run of the same kind; printed on one line, spread out here.)
//!
//! - `schema`: always `"echo-bench"`; `schema_version`: 2. Fields may be added
//!   in later versions; existing ones keep their meaning until the version
//!   changes.
//! - `address`, `connections`, `length` (bytes per message), `pipeline`
//!   (messages in flight per connection): what was run.
//! - `warmup_seconds`: load before the window, not counted. `seconds`: the
//!   measured window; every count below is of the window only.
//! - `requests`: messages written completely; `responses`: echoes received
//!   completely and verified byte for byte; `bytes`: echoed bytes received and
//!   verified (one direction). `*_per_sec`: each divided by `seconds`.
//! - `latency_us`: round-trip times of the window's responses in microseconds,
//!   from an HDR histogram with 3 significant digits: `samples` (= `responses`),
//!   `min`, `mean`, `p50`, `p90`, `p99`, `p999` (99.9th percentile), `max`.
//!   A message's time runs from when the client had it ready to send (with
//!   `--rate`, from when it was due) to when its last byte came back.
//! - `errors`: always 0. A run with any error (a wrong byte, a connection
//!   closed or reset, an echo later than the time limit) prints no JSON: it
//!   prints one line on stderr and exits with 1 (2 when nothing connected).
//! - `pinned_cpu`: the CPU the client was pinned to (`--pin`), or null.
//! - `client_cpu`: CPU time of the client's one thread during the window
//!   (`getrusage`), `busy` = (user + system) / `seconds`, 1.0 being one core
//!   fully used; null where it could not be read. Near 1.0, the client may be
//!   what limits the run.
//! - `rate`: null for a closed loop; with `--rate`, an object:
//!   `offered_per_sec` (the rate asked for), `achieved_per_sec` (responses/s
//!   in the window), `achieved_share` (the one over the other),
//!   `behind_at_end` (messages due by the end of the window and not yet
//!   sent) and `kept_up` (`achieved_share` at least 0.95). When `kept_up` is
//!   false the rate was more than the server could carry: the latencies
//!   then measure the backlog, and a line on stderr says so too.
//! - `responses_in_run`: echoes verified in the whole run, warm-up and drain
//!   included, for dividing a server's own lifetime counters.

use std::fmt::Write as _;

use super::{RateReport, Report};

/// The version of the JSON output, bumped when a field changes meaning.
pub const JSON_SCHEMA_VERSION: u32 = 2;

#[derive(serde::Serialize)]
struct Document<'a> {
    schema: &'static str,
    schema_version: u32,
    #[serde(flatten)]
    report: &'a Report,
}

/// The JSON document for a run, on one line.
pub fn json(report: &Report) -> String {
    let doc = Document {
        schema: "echo-bench",
        schema_version: JSON_SCHEMA_VERSION,
        report,
    };
    serde_json::to_string(&doc).expect("a report always serialises")
}

/// The table, as a person reads it.
pub fn table(r: &Report) -> String {
    let mut out = String::new();
    // rust_echo_bench's lines, word for word.
    let _ = writeln!(out, "Benchmarking: {}", r.address);
    let _ = writeln!(
        out,
        "{} clients, running {} bytes, {} sec.",
        r.connections,
        r.length,
        seconds_word(r.seconds)
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Speed: {} request/sec, {} response/sec",
        r.requests_per_sec.floor() as u64,
        r.responses_per_sec.floor() as u64
    );
    let _ = writeln!(out, "Requests: {}", r.requests);
    let _ = writeln!(out, "Responses: {}", r.responses);
    let _ = writeln!(out);

    // What the classic table leaves out.
    let pinned = match r.pinned_cpu {
        Some(cpu) => format!("client on CPU {cpu}"),
        None => "client not pinned".to_string(),
    };
    let _ = writeln!(
        out,
        "  {:<13} {:.2} s, after {:.1} s of warm-up; pipeline {}; {pinned}",
        "window", r.seconds, r.warmup_seconds, r.pipeline
    );
    let _ = writeln!(
        out,
        "  {:<13} {:.0} bytes/s ({:.1} MiB/s), every byte verified",
        "echoed",
        r.bytes_per_sec,
        r.bytes_per_sec / (1024.0 * 1024.0)
    );
    let l = &r.latency_us;
    let _ = writeln!(
        out,
        "  {:<13} p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}",
        "latency (µs)", l.p50, l.p90, l.p99, l.p999, l.max
    );
    if let Some(cpu) = &r.client_cpu {
        let _ = writeln!(
            out,
            "  {:<13} user {:.2} s, system {:.2} s: {:.0}% of one core{}",
            "client CPU",
            cpu.user_seconds,
            cpu.system_seconds,
            cpu.busy * 100.0,
            if cpu.busy >= 0.9 {
                " (the client may be the limit)"
            } else {
                ""
            }
        );
    }
    if let Some(rate) = &r.rate {
        let _ = writeln!(out, "  {:<13} {}", "rate", rate_verdict(rate));
    }
    let _ = writeln!(out, "  {:<13} {}", "errors", r.errors);
    out
}

/// One line on how an open-loop run kept to its rate: the table prints it,
/// and `echo-bench --json` prints it on stderr when the server fell behind.
pub fn rate_verdict(rate: &RateReport) -> String {
    let head = format!(
        "offered {:.0}/s, achieved {:.0}/s ({:.0}%)",
        rate.offered_per_sec,
        rate.achieved_per_sec,
        rate.achieved_share * 100.0
    );
    if rate.kept_up {
        format!("{head}: kept up; latency from each message's due time")
    } else {
        format!(
            "{head}: NOT KEPT UP, {} sends behind at the end; the latencies measure the backlog",
            rate.behind_at_end
        )
    }
}

/// `10` for a whole number of seconds (the classic line), `0.5` otherwise.
fn seconds_word(seconds: f64) -> String {
    let rounded = seconds.round();
    if (seconds - rounded).abs() < 0.05 {
        format!("{rounded:.0}")
    } else {
        format!("{seconds:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ClientCpu, Latency};
    use super::*;
    use hdrhistogram::Histogram;

    fn sample() -> Report {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        for ns in [50_000u64, 60_000, 70_000, 900_000] {
            h.record(ns).unwrap();
        }
        Report {
            address: "127.0.0.1:7878".parse().unwrap(),
            connections: 50,
            length: 512,
            pipeline: 1,
            warmup_seconds: 0.0,
            seconds: 10.0004,
            requests: 1_000_050,
            responses: 1_000_000,
            bytes: 512_000_000,
            requests_per_sec: 100_001.0,
            responses_per_sec: 99_996.0,
            bytes_per_sec: 51_197_952.0,
            latency_us: Latency::from_nanos(&h),
            errors: 0,
            pinned_cpu: Some(1),
            client_cpu: Some(ClientCpu {
                user_seconds: 1.0,
                system_seconds: 8.0,
                busy: 0.9,
            }),
            rate: None,
            responses_in_run: 1_000_100,
            histogram: h,
        }
    }

    #[test]
    fn the_table_has_the_classic_lines() {
        let text = table(&sample());
        for line in [
            "Benchmarking: 127.0.0.1:7878\n",
            "50 clients, running 512 bytes, 10 sec.\n",
            "Speed: 100001 request/sec, 99996 response/sec\n",
            "Requests: 1000050\n",
            "Responses: 1000000\n",
        ] {
            assert!(text.contains(line), "{line:?} missing from\n{text}");
        }
        assert!(text.contains("p99.9"));
        assert!(text.contains("client on CPU 1"));
        assert!(!text.contains("rate"), "no rate line for a closed loop");
    }

    #[test]
    fn an_open_loop_says_whether_it_kept_up() {
        let kept = Report {
            rate: Some(RateReport::new(20_000.0, 19_990.0, 3)),
            ..sample()
        };
        let text = table(&kept);
        assert!(text.contains("offered 20000/s, achieved 19990/s"), "{text}");
        assert!(text.contains("kept up"), "{text}");
        let behind = RateReport::new(1_000_000.0, 100_000.0, 900_000);
        assert!(!behind.kept_up);
        let line = rate_verdict(&behind);
        assert!(
            line.contains("NOT KEPT UP") && line.contains("900000"),
            "{line}"
        );
        let v: serde_json::Value = serde_json::from_str(&json(&Report {
            rate: Some(behind),
            ..sample()
        }))
        .unwrap();
        assert_eq!(v["rate"]["kept_up"], false);
        assert_eq!(v["rate"]["behind_at_end"], 900_000);
    }

    #[test]
    fn the_json_carries_the_documented_fields() {
        let v: serde_json::Value = serde_json::from_str(&json(&sample())).unwrap();
        assert_eq!(v["schema"], "echo-bench");
        assert_eq!(v["schema_version"], JSON_SCHEMA_VERSION);
        assert_eq!(v["address"], "127.0.0.1:7878");
        for field in [
            "connections",
            "length",
            "pipeline",
            "warmup_seconds",
            "seconds",
            "requests",
            "responses",
            "bytes",
            "requests_per_sec",
            "responses_per_sec",
            "bytes_per_sec",
            "errors",
            "pinned_cpu",
            "responses_in_run",
        ] {
            assert!(v[field].is_number(), "{field}: {}", v[field]);
        }
        for field in ["samples", "min", "mean", "p50", "p90", "p99", "p999", "max"] {
            assert!(v["latency_us"][field].is_number(), "latency_us.{field}");
        }
        for field in ["user_seconds", "system_seconds", "busy"] {
            assert!(v["client_cpu"][field].is_number(), "client_cpu.{field}");
        }
        assert!(v.get("histogram").is_none(), "the histogram stays out");
        assert!(v["rate"].is_null(), "a closed loop has no rate");
        assert!(v["latency_us"]["p50"].as_f64() <= v["latency_us"]["max"].as_f64());
    }
}
