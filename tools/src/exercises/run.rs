//! Building an exercise's program, starting it, and grading it with the
//! exercise's checks: the student loop behind `echo-check --exercise`.

use std::env;

use std::process::Command;

use super::Exercise;
use crate::grader::{self, ServerReport, Verdict};
use crate::process::{ServerProcess, example_path};

/// Which of an exercise's two programs to grade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Program {
    /// The starter, as the student has edited it.
    Starter,
    /// The reference solution.
    Solution,
}

impl Program {
    /// The Cargo example that builds it.
    pub fn example(self, exercise: &Exercise) -> String {
        match self {
            Program::Starter => exercise.starter_example(),
            Program::Solution => exercise.solution_example(),
        }
    }

    /// "starters" or "reference solutions", for a summary's title.
    pub fn source_kind(self) -> &'static str {
        match self {
            Program::Starter => "starters",
            Program::Solution => "reference solutions",
        }
    }

    /// Its source file.
    pub fn source(self, exercise: &Exercise) -> String {
        match self {
            Program::Starter => exercise.starter_path(),
            Program::Solution => exercise.solution_path(),
        }
    }
}

/// Builds one example with Cargo, in the profile the running tool was built
/// with, so a student's edit is compiled before it is graded. Cargo's own
/// output (compiler errors included) goes to our stderr.
pub fn build(example: &str) -> Result<(), String> {
    // `cargo run` tells the program it runs which cargo that was.
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = crate::workspace_root().join("Cargo.toml");
    let mut command = Command::new(&cargo);
    command
        .arg("build")
        .arg("--quiet")
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--example")
        .arg(example);
    if !cfg!(debug_assertions) {
        command.arg("--release");
    }
    let status = command
        .status()
        .map_err(|e| format!("cannot run {}: {e}", cargo.to_string_lossy()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "`cargo build --example {example}` failed (the compiler's messages are above)"
        ))
    }
}

/// Starts `program` of `exercise` (already built) on a free port with the
/// exercise's options, and runs the exercise's checks against it. The
/// exercise's own hints replace the checks' general ones.
pub fn grade(
    exercise: &'static Exercise,
    program: Program,
    progress: impl FnMut(&grader::Check),
) -> Result<(ServerReport, ServerProcess), String> {
    let path = example_path(&program.example(exercise));
    let mut args = vec!["--addr", "127.0.0.1:0"];
    args.extend_from_slice(exercise.server_args);
    let server = ServerProcess::start(&path, &args)
        .map_err(|e| format!("{} did not start: {e}", program.source(exercise)))?;
    let checks: Vec<&'static grader::Check> = exercise
        .checks
        .iter()
        .map(|name| {
            grader::check(name)
                .unwrap_or_else(|| panic!("exercise {} names no check `{name}`", exercise.name))
        })
        .collect();
    let label = format!("{} ({})", exercise.name, program.source(exercise));
    let mut report = grader::grade(server.addr(), &label, &checks, None, progress);
    for check in &mut report.checks {
        if check.result == Verdict::Fail
            && let Some(hint) = exercise.hint(check.name)
        {
            check.hint = Some(hint.to_string());
        }
    }
    Ok((report, server))
}
