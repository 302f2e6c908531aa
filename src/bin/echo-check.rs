//! echo-check — grade any TCP echo server: yours, a lesson, a whole class.
//!
//! ```text
//! cargo run --bin echo-check -- 127.0.0.1:7878
//! cargo run --bin echo-check -- --expect 01_blocking 127.0.0.1:7878
//! cargo run --bin echo-check -- --json 10.0.0.5:7878 10.0.0.6:7878 > grades.json
//! cargo run --bin echo-check -- --list
//! ```
//!
//! Exit status: 0 when every check passed or failed as expected, 1 when a
//! check failed unexpectedly, 2 on bad usage or an address that never answers.

use std::io::{self, IsTerminal};
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser};
use uring_echo_book::cli::parse_addr;
use uring_echo_book::grader::{self, CHECKS, Check, report};
use uring_echo_book::lessons::{LESSONS, lesson};
use uring_echo_book::limits::raise_open_file_limit_or_warn;

/// Grades TCP echo servers: every reply is checked byte for byte.
#[derive(Parser)]
#[command(name = "echo-check", version)]
struct Args {
    /// Addresses of the servers to grade, such as 127.0.0.1:7878 or [::1]:7878.
    #[arg(value_name = "ADDR", required_unless_present = "list", value_parser = parse_addr)]
    addrs: Vec<SocketAddr>,

    /// Run only these checks (comma-separated names, see --list).
    #[arg(long, value_delimiter = ',', value_name = "CHECK,...")]
    only: Vec<String>,

    /// Skip these checks (comma-separated names, see --list).
    #[arg(long, value_delimiter = ',', value_name = "CHECK,...")]
    skip: Vec<String>,

    /// Apply a lesson's expectations: the checks its design cannot pass are
    /// reported as "expected" instead of as failures.
    #[arg(long, value_name = "LESSON")]
    expect: Option<String>,

    /// Print the results as JSON (schema version 1, see `chapters/grading.md`).
    #[arg(long)]
    json: bool,

    /// List the checks with what each one does and its time limit, then exit.
    #[arg(long)]
    list: bool,
}

fn checks_help() -> String {
    let mut text = String::from("Checks, in the order they run (each with its time limit):\n");
    for c in CHECKS {
        text.push_str(&format!(
            "  {:<11} {:>4} s  {}\n",
            c.name,
            c.limit.as_secs(),
            c.what
        ));
    }
    text.push_str(&format!(
        "\nA check also fails when one reply takes longer than {} s.\n\
         Exit status: 0 all passed (or failed as expected), 1 a check failed, \
         2 bad usage or an address that does not answer.",
        grader::REPLY_TIMEOUT.as_secs()
    ));
    text
}

/// Bad usage: clap's own style, exit status 2.
fn usage_error(message: String) -> ExitCode {
    let _ = Args::command()
        .error(clap::error::ErrorKind::InvalidValue, message)
        .print();
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let matches = Args::command().after_help(checks_help()).get_matches();
    let args = match Args::from_arg_matches(&matches) {
        Ok(args) => args,
        Err(e) => e.exit(),
    };
    if args.list {
        print!("{}", checks_help());
        println!();
        return ExitCode::SUCCESS;
    }

    for name in args.only.iter().chain(&args.skip) {
        if grader::check(name).is_none() {
            let names: Vec<_> = CHECKS.iter().map(|c| c.name).collect();
            return usage_error(format!(
                "no check is called `{name}`; the checks are {}",
                names.join(", ")
            ));
        }
    }
    let expect = match args.expect.as_deref().map(|name| (name, lesson(name))) {
        None => None,
        Some((_, Some(lesson))) => Some(lesson),
        Some((name, None)) => {
            let names: Vec<_> = LESSONS.iter().map(|l| l.name).collect();
            return usage_error(format!(
                "no lesson is called `{name}`; the lessons are {}",
                names.join(", ")
            ));
        }
    };
    let selected: Vec<&'static Check> = CHECKS
        .iter()
        .filter(|c| args.only.is_empty() || args.only.iter().any(|n| n == c.name))
        .filter(|c| !args.skip.iter().any(|n| n == c.name))
        .collect();

    // The idle check holds 2000 connections open at once.
    raise_open_file_limit_or_warn();

    let show_progress = io::stderr().is_terminal();
    let mut reports = Vec::new();
    for addr in &args.addrs {
        let report = grader::grade(*addr, &addr.to_string(), &selected, expect, |check| {
            if show_progress {
                eprintln!("{addr}: {} — {}", check.name, check.what);
            }
        });
        if !args.json {
            println!("{}", report::table(&report));
        }
        reports.push(report);
    }
    if args.json {
        println!("{}", report::json(&reports));
    }

    if reports.iter().any(|r| !r.reachable) {
        ExitCode::from(2)
    } else if reports.iter().all(|r| r.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
