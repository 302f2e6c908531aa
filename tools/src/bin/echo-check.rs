//! echo-check — grade any TCP echo server: yours, a lesson, a whole class.
//!
//! ```text
//! cargo run --bin echo-check -- 127.0.0.1:7878
//! cargo run --bin echo-check -- --expect 01_blocking 127.0.0.1:7878
//! cargo run --bin echo-check -- --json 10.0.0.5:7878 10.0.0.6:7878 > grades.json
//! cargo run --bin echo-check -- --list
//! cargo run --bin echo-check -- --exercise 03-partial-writes   # build, start and grade a starter
//! cargo run --bin echo-check -- --exercise all                 # which exercises pass so far
//! ```
//!
//! Exit status: 0 when every check passed or failed as expected, 1 when a
//! check failed unexpectedly, 2 on bad usage or an address that never answers.

use std::io::{self, IsTerminal};
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, ValueEnum};
use uring_echo_book::cli::parse_addr;
use uring_echo_book::limits::raise_open_file_limit_or_warn;
use uring_echo_tools::exercises;
use uring_echo_tools::grader::{self, CHECKS, Check, EXERCISE_CHECKS, ServerReport, report};
use uring_echo_tools::lessons::{Expectations, LESSONS, NOT_ECHO, PEERS, Protocol, lesson, peer};
use uring_echo_tools::resp;

/// Grades TCP echo servers: every reply is checked byte for byte.
#[derive(Parser)]
#[command(name = "echo-check", version)]
struct Args {
    /// Addresses of the servers to grade, such as 127.0.0.1:7878 or [::1]:7878.
    #[arg(
        value_name = "ADDR",
        required_unless_present_any = ["list", "exercise", "exercises"],
        conflicts_with = "exercise",
        value_parser = parse_addr
    )]
    addrs: Vec<SocketAddr>,

    /// Run only these checks (comma-separated names, see --list).
    #[arg(long, value_delimiter = ',', value_name = "CHECK,...")]
    only: Vec<String>,

    /// Skip these checks (comma-separated names, see --list).
    #[arg(long, value_delimiter = ',', value_name = "CHECK,...")]
    skip: Vec<String>,

    /// Apply a lesson's (or a peer's) expectations: the checks its design
    /// cannot pass are reported as "expected" instead of as failures.
    #[arg(long, value_name = "LESSON")]
    expect: Option<String>,

    /// Print the results as JSON (schema version 1, see `chapters/grading.md`).
    #[arg(long)]
    json: bool,

    /// List the checks with what each one does and its time limit, then exit.
    #[arg(long)]
    list: bool,

    /// Build an exercise's starter (`exercises/NAME/starter.rs`), start it on
    /// a free port, run the exercise's checks and say what to look at next.
    /// `all` runs every exercise and prints which pass.
    #[arg(long, value_name = "NAME|all", conflicts_with_all = ["only", "skip", "expect"])]
    exercise: Option<String>,

    /// With --exercise: grade the reference solution instead of the starter.
    #[arg(long, requires = "exercise")]
    solution: bool,

    /// With --exercise: do not run `cargo build` first (the program is
    /// already built, for instance by `cargo test`).
    #[arg(long, requires = "exercise")]
    no_build: bool,

    /// List the exercises, their kind and their checks, then exit.
    #[arg(long)]
    exercises: bool,

    /// What the servers speak: `echo`, or `resp` for a Redis-protocol
    /// server such as lesson 07, graded by the RESP checks instead.
    #[arg(long, value_enum, default_value = "echo", conflicts_with = "exercise")]
    protocol: Speaks,
}

/// `--protocol`: which check set grades the servers.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Speaks {
    Echo,
    Resp,
}

fn checks_help() -> String {
    let line = |c: &Check| format!("  {:<14} {:>4} s  {}\n", c.name, c.limit.as_secs(), c.what);
    let mut text = String::from("Checks, in the order they run (each with its time limit):\n");
    for c in CHECKS {
        text.push_str(&line(c));
    }
    text.push_str("\nChecks that exercises add, run only when named (--only or --exercise):\n");
    for c in EXERCISE_CHECKS {
        text.push_str(&line(c));
    }
    text.push_str("\nWith --protocol resp, the RESP checks instead (a Redis-protocol server):\n");
    for c in resp::CHECKS {
        text.push_str(&format!("  {:<20} {}\n", c.name, c.what));
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
    if args.exercises {
        print!("{}", exercise_list());
        return ExitCode::SUCCESS;
    }
    if let Some(name) = &args.exercise {
        return run_exercises(name, &args);
    }

    if args.protocol == Speaks::Resp {
        return grade_resp(&args);
    }
    for name in args.only.iter().chain(&args.skip) {
        if grader::check(name).is_none() {
            let names: Vec<_> = CHECKS
                .iter()
                .chain(EXERCISE_CHECKS)
                .map(|c| c.name)
                .collect();
            return usage_error(format!(
                "no check is called `{name}`; the checks are {}",
                names.join(", ")
            ));
        }
    }
    let expect: Option<&dyn Expectations> = match args.expect.as_deref() {
        None => None,
        Some(name) => match (lesson(name), peer(name)) {
            (Some(lesson), _) if lesson.protocol != Protocol::Echo => {
                return usage_error(format!("{name} {NOT_ECHO}; grade it with --protocol resp"));
            }
            (Some(lesson), _) => Some(lesson),
            (None, Some(peer)) => Some(peer),
            (None, None) => {
                let names: Vec<_> = LESSONS.iter().map(|l| l.name).collect();
                let peers: Vec<_> = PEERS.iter().map(|p| p.name).collect();
                return usage_error(format!(
                    "no lesson or peer is called `{name}`; the lessons are {}, the peers {}",
                    names.join(", "),
                    peers.join(", ")
                ));
            }
        },
    };
    // By default every standard check; `--only` may also name the checks
    // exercises add, which need the server started with their option.
    let selected: Vec<&'static Check> = if args.only.is_empty() {
        CHECKS.iter().collect()
    } else {
        CHECKS
            .iter()
            .chain(EXERCISE_CHECKS)
            .filter(|c| args.only.iter().any(|n| n == c.name))
            .collect()
    };
    let selected: Vec<&'static Check> = selected
        .into_iter()
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
    finish(&reports, args.json)
}

/// Prints the JSON document when asked (the tables were printed as each
/// server was graded) and gives the exit status: 2 when an address never
/// answered, 1 when a check failed unexpectedly, 0 otherwise.
fn finish(reports: &[ServerReport], json: bool) -> ExitCode {
    if json {
        println!("{}", report::json(reports));
    }
    if reports.iter().any(|r| !r.reachable) {
        ExitCode::from(2)
    } else if reports.iter().all(|r| r.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `--protocol resp`: the RESP checks (`--only`/`--skip` take their
/// names), one report per address, printed like the echo grader's.
fn grade_resp(args: &Args) -> ExitCode {
    if let Some(name) = &args.expect {
        match lesson(name) {
            Some(l) if l.protocol == Protocol::Resp => {}
            _ => {
                return usage_error(format!(
                    "--expect with --protocol resp takes a lesson that speaks RESP; \
                     `{name}` is not one (RESP checks have no expected failures)"
                ));
            }
        }
    }
    for name in args.only.iter().chain(&args.skip) {
        if !resp::CHECKS.iter().any(|c| c.name == name) {
            let names: Vec<_> = resp::CHECKS.iter().map(|c| c.name).collect();
            return usage_error(format!(
                "no RESP check is called `{name}`; the RESP checks are {}",
                names.join(", ")
            ));
        }
    }
    let selected: Vec<&'static resp::Check> = resp::CHECKS
        .iter()
        .filter(|c| args.only.is_empty() || args.only.iter().any(|n| n == c.name))
        .filter(|c| !args.skip.iter().any(|n| n == c.name))
        .collect();
    let reports: Vec<_> = args
        .addrs
        .iter()
        .map(|addr| {
            let report = resp::grade(*addr, &addr.to_string(), &selected);
            if !args.json {
                println!("{}", report::table(&report));
            }
            report
        })
        .collect();
    finish(&reports, args.json)
}

fn exercise_list() -> String {
    let mut text = String::from("Exercises (statement: exercises/NAME/README.md):\n");
    for e in exercises::all() {
        let checks = if e.has_code() {
            e.checks.join(", ")
        } else {
            "no check".to_string()
        };
        text.push_str(&format!(
            "  {:<22} {:<30} {}\n  {:<22} checks: {checks}\n",
            e.name,
            e.kind.describe(),
            e.title,
            ""
        ));
        if let Some(program) = e.program_path() {
            text.push_str(&format!(
                "  {:<22} edit: {}; the rest of the server: {program}\n",
                "",
                e.starter_path()
            ));
        }
        if !e.server_args.is_empty() {
            text.push_str(&format!(
                "  {:<22} the server runs with: {}\n",
                "",
                e.server_args.join(" ")
            ));
        }
    }
    text.push_str(
        "\nRun one: cargo run --bin echo-check -- --exercise NAME  (add --solution for the reference)\n",
    );
    text
}

/// `--exercise NAME|all`: build, start and grade, then say what is next.
fn run_exercises(name: &str, args: &Args) -> ExitCode {
    use exercises::run::{self, Program};
    let chosen: Vec<_> = if name == "all" {
        exercises::all().filter(|e| e.has_code()).collect()
    } else {
        match exercises::exercise(name) {
            Some(e) if e.has_code() => vec![e],
            Some(e) if args.json => {
                return usage_error(format!(
                    "{} is a measure-and-explain exercise: it has no check, so no JSON to print",
                    e.name
                ));
            }
            Some(e) => {
                println!(
                    "{} is a measure-and-explain exercise: it has no check. Its statement is {}.",
                    e.name,
                    e.statement_path()
                );
                return ExitCode::SUCCESS;
            }
            None => {
                let names: Vec<_> = exercises::all().map(|e| e.name).collect();
                return usage_error(format!(
                    "no exercise is called `{name}`; the exercises are {}",
                    names.join(", ")
                ));
            }
        }
    };
    let program = if args.solution {
        Program::Solution
    } else {
        Program::Starter
    };
    raise_open_file_limit_or_warn();
    let show_progress = io::stderr().is_terminal();
    let single = chosen.len() == 1;
    let mut reports = Vec::new();
    let mut summary = Vec::new();
    for exercise in chosen {
        let example = program.example(exercise);
        if !args.no_build
            && let Err(e) = run::build(&example)
        {
            eprintln!("{}: {e}", exercise.name);
            summary.push((exercise, "does not build".to_string()));
            reports.push(not_graded(exercise, program, "build", e));
            continue;
        }
        if show_progress {
            eprintln!("{}: grading {}", exercise.name, program.source(exercise));
        }
        match run::grade(exercise, program, |check| {
            if show_progress {
                eprintln!("{}: {} — {}", exercise.name, check.name, check.what);
            }
        }) {
            Ok((report, server)) => {
                let failed = report
                    .checks
                    .iter()
                    .filter(|c| c.result.is_failure())
                    .count();
                let verdict = if report.ok {
                    "DONE".to_string()
                } else {
                    format!("{failed} of {} checks fail", report.checks.len())
                };
                if !args.json && single {
                    print!("{}", report::table(&report));
                    if report.ok && program == Program::Solution {
                        println!(
                            "\nDONE: the reference solution passes every check of {}.",
                            exercise.name
                        );
                    } else if report.ok {
                        println!(
                            "\nDONE: every check of {} passes. Compare with the reference \
                             solution, {}.",
                            exercise.name,
                            exercise.answer_path()
                        );
                    } else {
                        print_stderr_tail(&server.stderr());
                        println!(
                            "\nNOT YET: fix what the first failure above points at, then run \
                             this again. The statement: {}.",
                            exercise.statement_path()
                        );
                    }
                }
                summary.push((exercise, verdict));
                reports.push(report);
            }
            Err(e) => {
                eprintln!("{}: {e}", exercise.name);
                summary.push((exercise, "does not start".to_string()));
                reports.push(not_graded(exercise, program, "start", e));
            }
        }
    }
    if args.json {
        println!("{}", report::json(&reports));
    } else if !single {
        println!("Exercises ({}):", program.source_kind());
        for (exercise, verdict) in &summary {
            println!(
                "  {:<22} {:<32} {verdict}",
                exercise.name,
                exercise.kind.describe()
            );
        }
        let measures: Vec<_> = exercises::all()
            .filter(|e| !e.has_code())
            .map(|e| e.name)
            .collect();
        println!("  measure and explain, no check: {}", measures.join(", "));
    }
    if summary.iter().all(|(_, v)| v == "DONE") {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The report for a program that could not be graded at all: one failed
/// entry, `build` or `start`, so `--json` says `"ok": false` like the exit
/// status does.
fn not_graded(
    exercise: &exercises::Exercise,
    program: exercises::run::Program,
    step: &'static str,
    why: String,
) -> grader::ServerReport {
    grader::ServerReport {
        addr: format!("{} ({})", exercise.name, program.source(exercise)),
        reachable: false,
        expect: None,
        ok: false,
        checks: vec![grader::CheckResult {
            name: step,
            result: grader::Verdict::Fail,
            seconds: 0.0,
            detail: why,
            hint: Some(format!(
                "the program must {step} before it can be graded; the messages above say why"
            )),
        }],
    }
}

/// The last lines your server wrote on stderr: its own account of what
/// went wrong, next to the grader's.
fn print_stderr_tail(stderr: &str) {
    const LINES: usize = 12;
    // A server still writing may have left half a line: show whole ones.
    let complete = match stderr.rfind('\n') {
        Some(end) => &stderr[..end],
        None => return,
    };
    let lines: Vec<&str> = complete.lines().collect();
    if lines.is_empty() {
        return;
    }
    let from = lines.len().saturating_sub(LINES);
    println!(
        "\n  your server's stderr (the last {} of {} lines):",
        lines.len() - from,
        lines.len()
    );
    for line in &lines[from..] {
        println!("    {line}");
    }
}
