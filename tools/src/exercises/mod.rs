//! The exercises: one table, like the lesson list, that everything reads.
//!
//! Each exercise lives in `exercises/NAME/`: a `README.md` with the statement
//! (the chapter includes it), and for exercises with code, a `starter.rs` the
//! student edits. The server itself is written once, as a *program*,
//! `exercises/programs/PROGRAM.rs` ([`Exercise::program`]), which the
//! starter and the reference solution both take in with `include!`; the
//! program leaves out the exercise's *region*, a module it calls by name
//! (`todo::serve(..)`, or methods of its `Server` defined there), and the
//! including file defines it. The starter's region, between `// ANCHOR:
//! todo` markers, holds the `// TODO`; the reference solution,
//! `exercises/solutions/NAME.rs` (or `.md` for a measure-and-explain
//! exercise), out of the way until wanted, has the same shape with the
//! region solved, between `// ANCHOR: solution` markers. Outside its region
//! a starter is its solution, line for line (`tests/exercises.rs` holds
//! them to it). Two exercises that plant different bugs in one program
//! share one solution (see [`Exercise::solution`]), which takes each
//! solved region from the file named after its exercise; each starter takes
//! the other exercise's solved region from there too. Starters and
//! solutions are Cargo examples: `cargo run --example NAME` runs a starter,
//! `cargo run --example SOLUTION-solution` its solution.
//!
//! `echo-check --exercise NAME` builds the starter, starts it with the
//! exercise's options, runs the exercise's checks and says what to look at
//! next ([`run`]). `tests/exercises.rs` holds every exercise to it both ways:
//! the solution passes every check, the starter fails at least one.

mod ch01;
mod ch02;
mod ch03;
mod ch04;
mod ch05;
mod ch06;
mod ch07;
pub mod run;

/// What kind of work an exercise is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// The starter has a planted bug that one of the checks catches every time.
    Fix,
    /// The starter lacks a feature; an exercise check tests it.
    Extend,
    /// Run something with two settings and explain the difference: no
    /// starter, no check, a write-up of what we measured as the solution.
    Measure,
}

impl Kind {
    /// In a few words, for listings.
    pub fn describe(self) -> &'static str {
        match self {
            Kind::Fix => "fix a planted bug",
            Kind::Extend => "add a feature",
            Kind::Measure => "measure and explain (no check)",
        }
    }
}

/// One exercise.
#[derive(Debug)]
pub struct Exercise {
    /// `NN-slug`: the folder under `exercises/`, the starter's example name,
    /// and what `echo-check --exercise` takes.
    pub name: &'static str,
    /// The reference solution's name in `exercises/solutions/`: the
    /// exercise's own name, except where exercises plant different bugs in
    /// the same program and so share one solution.
    pub solution: &'static str,
    /// The server, all but the exercise's region:
    /// `exercises/programs/PROGRAM.rs`, which the starter and the solution
    /// `include!`. `None` for [`Kind::Measure`].
    pub program: Option<&'static str>,
    /// The lesson it belongs to (a name in [`crate::LESSONS`]).
    pub lesson: &'static str,
    /// The title the chapter gives it.
    pub title: &'static str,
    /// Fix, extend, or measure.
    pub kind: Kind,
    /// The grader checks that decide it: names from [`crate::grader::CHECKS`]
    /// or [`crate::grader::EXERCISE_CHECKS`]. Empty for [`Kind::Measure`].
    pub checks: &'static [&'static str],
    /// Options the server is started with, after `--addr 127.0.0.1:0`.
    pub server_args: &'static [&'static str],
    /// What to look at when a check fails, by check name (`"*"`: any check
    /// without a hint of its own): the exercise's own hint, shown instead of
    /// the check's general one. Kept here, not in the
    /// starter, so the starter does not give the answer away.
    pub hints: &'static [(&'static str, &'static str)],
}

impl Exercise {
    /// Whether it has a starter, a solution and checks to run.
    pub fn has_code(&self) -> bool {
        self.kind != Kind::Measure
    }

    /// The statement, which the chapter includes.
    pub fn statement_path(&self) -> String {
        format!("exercises/{}/README.md", self.name)
    }

    /// The file the student edits.
    pub fn starter_path(&self) -> String {
        format!("exercises/{}/starter.rs", self.name)
    }

    /// The reference solution: a program, or what we measured.
    pub fn solution_path(&self) -> String {
        if self.has_code() {
            format!("exercises/solutions/{}.rs", self.solution)
        } else {
            format!("exercises/solutions/{}.md", self.solution)
        }
    }

    /// The program the starter and the solution take in, if the exercise
    /// has code.
    pub fn program_path(&self) -> Option<String> {
        self.program
            .map(|program| format!("exercises/programs/{program}.rs"))
    }

    /// What to compare a finished starter with: the file with this
    /// exercise's region solved. That is the reference solution itself,
    /// except where exercises share one: then it is the file of this
    /// exercise's region, which the shared solution takes in.
    pub fn answer_path(&self) -> String {
        if self.has_code() {
            format!("exercises/solutions/{}.rs", self.name)
        } else {
            self.solution_path()
        }
    }

    /// The Cargo example that builds the starter.
    pub fn starter_example(&self) -> String {
        self.name.to_string()
    }

    /// The Cargo example that builds the reference solution.
    pub fn solution_example(&self) -> String {
        format!("{}-solution", self.solution)
    }

    /// The exercise's hint for a failed check, if it has one.
    pub fn hint(&self, check: &str) -> Option<&'static str> {
        let find = |name: &str| self.hints.iter().find(|(c, _)| *c == name).map(|(_, h)| *h);
        find(check).or_else(|| find("*"))
    }
}

/// Every chapter's exercises, in reading order.
const CHAPTERS: &[&[Exercise]] = &[
    ch01::EXERCISES,
    ch02::EXERCISES,
    ch03::EXERCISES,
    ch04::EXERCISES,
    ch05::EXERCISES,
    ch06::EXERCISES,
    ch07::EXERCISES,
];

/// Every exercise, in reading order.
pub fn all() -> impl Iterator<Item = &'static Exercise> {
    CHAPTERS.iter().flat_map(|chapter| chapter.iter())
}

/// Looks an exercise up by name.
pub fn exercise(name: &str) -> Option<&'static Exercise> {
    all().find(|e| e.name == name)
}
