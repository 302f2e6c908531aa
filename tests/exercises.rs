//! Every exercise, both ways: its reference solution passes every check the
//! exercise names, and its starter fails at least one of them. A starter
//! that passes would be an exercise with nothing to do; a solution that
//! fails would send students after a fault that is ours.
//!
//! Each exercise's server is written once, as a program in
//! `exercises/programs/`, which its starter and its solution both take in;
//! they differ only in the exercise's region, and
//! `every_starter_is_its_solution_outside_the_region` holds them to it.
//!
//! The starters and solutions are Cargo examples, which `cargo test` builds
//! before it runs this file; `cargo test --test exercises` builds none, and
//! the test then says so instead of grading stale programs. Exercises on
//! io_uring lessons are skipped, with the reason printed, where the kernel
//! or a container forbids io_uring.

use std::fs;
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::thread;

use uring_echo_tools::exercises::run::{self, Program};
use uring_echo_tools::exercises::{self, Exercise, Kind};
use uring_echo_tools::grader::{self, Verdict};
use uring_echo_tools::lessons::lesson;
use uring_echo_tools::process::{
    binary_path, built_after, example_path, library_sources, tool_path,
};

fn read(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    fs::read_to_string(&full).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn exists(path: &str) -> bool {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path).exists()
}

/// Why this machine cannot run `exercise`'s programs, if it cannot.
fn cannot_run(exercise: &Exercise) -> Option<String> {
    let lesson = lesson(exercise.lesson)?;
    if lesson.linux_only && !cfg!(target_os = "linux") {
        return Some("needs Linux".into());
    }
    #[cfg(target_os = "linux")]
    if lesson.needs_io_uring {
        return uring_echo_book::uring::available().err();
    }
    None
}

#[test]
fn every_exercise_has_its_files_checks_and_chapter() {
    let manifest = read("Cargo.toml");
    let mut names: Vec<_> = exercises::all().map(|e| e.name).collect();
    names.sort();
    names.dedup();
    assert_eq!(
        names.len(),
        exercises::all().count(),
        "exercise names are unique"
    );

    let instructors = read("chapters/instructors.md");
    for e in exercises::all() {
        assert!(
            instructors.contains(&format!("`{}`", e.name)),
            "chapters/instructors.md plans a session for exercise {}",
            e.name
        );
        let lesson = lesson(e.lesson)
            .unwrap_or_else(|| panic!("{}: no lesson is called {}", e.name, e.lesson));
        assert!(
            e.name.starts_with(&lesson.name[..3].replace('_', "-")),
            "{}: the name starts with its lesson's number",
            e.name
        );
        let statement = read(&e.statement_path());
        assert!(
            statement.contains("<!-- ANCHOR: statement -->")
                && statement.contains("<!-- ANCHOR_END: statement -->"),
            "{}: the statement is marked for the book",
            e.statement_path()
        );
        // A lesson may span several pages: its core (`NN_name.md`) and the
        // pages after it (`NN_name_hardening.md`, `NN_name_features.md`);
        // its exercises may be on any of them.
        let stem = lesson.chapter.trim_end_matches(".md");
        let mut pages: Vec<String> = std::fs::read_dir("chapters")
            .expect("chapters/ can be listed")
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|f| *f == lesson.chapter || f.starts_with(&format!("{stem}_")))
            .filter(|f| f.ends_with(".md"))
            .collect();
        pages.sort();
        let chapter: String = pages
            .iter()
            .map(|f| read(&format!("chapters/{f}")))
            .collect();
        let include = format!("{{{{#include ../{}:statement}}}}", e.statement_path());
        assert!(
            chapter.contains(&include),
            "chapters/{} shows exercise {} with {include}",
            lesson.chapter,
            e.name
        );
        assert!(exists(&e.solution_path()), "{} exists", e.solution_path());

        if e.kind == Kind::Measure {
            assert!(
                e.checks.is_empty(),
                "{}: a measure exercise has no check",
                e.name
            );
            assert!(!exists(&e.starter_path()), "{}: no starter", e.name);
            continue;
        }
        assert!(
            !e.checks.is_empty(),
            "{}: an exercise with code has checks",
            e.name
        );
        for check in e.checks {
            assert!(
                grader::check(check).is_some(),
                "{}: no grader check is called {check}",
                e.name
            );
        }
        let starter = read(&e.starter_path());
        assert_eq!(
            starter.matches("TODO").count(),
            1,
            "{}: one TODO, at the place to change",
            e.starter_path()
        );
        assert!(
            starter.contains("// ANCHOR: todo") && starter.contains("// ANCHOR_END: todo"),
            "{}: the TODO region is marked for the book",
            e.starter_path()
        );
        let todo_include = format!("{{{{#include ../{}:todo}}}}", e.starter_path());
        assert!(
            chapter.contains(&todo_include),
            "chapters/{} shows {}'s TODO with {todo_include}",
            lesson.chapter,
            e.name
        );
        let program = e
            .program_path()
            .unwrap_or_else(|| panic!("{}: an exercise with code has a program", e.name));
        let include = format!(
            "include!(\"../programs/{}.rs\");",
            e.program.unwrap_or_default()
        );
        for path in [e.starter_path(), e.solution_path()] {
            assert!(
                read(&path).contains(&include),
                "{path} takes in the exercise's program with {include}"
            );
        }
        assert!(
            !read(&program).contains("TODO") && !read(&program).contains("//!"),
            "{program}: a program has no TODO (that is the starter's), and no inner doc \
             comment (`include!` cannot take one in)"
        );
        // The starter, and every file of the solution's own (the solution,
        // and the solved regions it takes in from `exercises/solutions/`).
        let solution_files: Vec<String> = std::iter::once(e.solution_path())
            .chain(
                sources(e, Program::Solution)
                    .iter()
                    .filter_map(|f| f.strip_prefix(env!("CARGO_MANIFEST_DIR")).ok())
                    .map(|f| f.to_string_lossy().trim_start_matches('/').to_string())
                    .filter(|f| f.starts_with("exercises/solutions/")),
            )
            .collect();
        for path in std::iter::once(e.starter_path()).chain(solution_files.iter().cloned()) {
            let source = read(&path);
            assert!(
                !source.contains("allow("),
                "{path}: no lint allow (it would point at the planted bug)"
            );
            if path == e.starter_path() {
                continue;
            }
            assert!(
                !source.contains("TODO"),
                "{path}: a solution has no TODO left"
            );
        }
        assert!(exists(&e.answer_path()), "{} exists", e.answer_path());
        for (example, path) in [
            (e.starter_example(), e.starter_path()),
            (e.solution_example(), e.solution_path()),
        ] {
            let entry = format!("[[example]]\nname = \"{example}\"\npath = \"{path}\"\n");
            assert!(manifest.contains(&entry), "Cargo.toml declares\n{entry}");
        }
        for (check, _) in e.hints {
            assert!(
                *check == "*" || e.checks.contains(check),
                "{}: a hint for {check}, which the exercise does not run",
                e.name
            );
        }
    }
}

/// Grades one program of one exercise and says what is wrong with the
/// outcome, if anything.
fn both_ways(exercise: &'static Exercise, program: Program) -> Option<String> {
    let (report, server) = match run::grade(exercise, program, |_| {}) {
        Ok(graded) => graded,
        Err(e) => return Some(format!("{}: {e}", exercise.name)),
    };
    let source = program.source(exercise);
    match program {
        Program::Solution if !report.ok => Some(format!(
            "{source} must pass every check of {}, but: {:?}\nits stderr:\n{}",
            exercise.name,
            report.not_passed(),
            server.stderr()
        )),
        Program::Starter if report.checks.iter().all(|c| c.result == Verdict::Pass) => {
            Some(format!(
                "{source} must fail at least one of {:?}, but passed them all",
                exercise.checks
            ))
        }
        _ => {
            eprintln!(
                "{source}: {}",
                report
                    .checks
                    .iter()
                    .map(|c| format!("{} {:?}", c.name, c.result))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            None
        }
    }
}

/// The files `program` of `exercise` is built from: its own source, every
/// file it takes in, one level after another, with `include!("...")` (its
/// program in `exercises/programs/`) or `#[path = "..."] mod ...;` (such as
/// `exercises/common/epoll.rs`, a lesson's own file, or another exercise's
/// solved region), and the lessons' library.
fn sources(exercise: &Exercise, program: Program) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join(program.source(exercise))];
    let mut next = 0;
    while next < files.len() {
        let source = files[next].clone();
        next += 1;
        for file in taken_in(&source) {
            if !files.contains(&file) {
                files.push(file);
            }
        }
    }
    files.extend(library_sources());
    files
}

/// The files `source` takes in, with `include!` or `#[path]`, each path
/// read relative to `source`'s folder (as rustc reads them: an `include!`d
/// file's own `#[path]`s are relative to its folder, not the includer's).
fn taken_in(source: &Path) -> Vec<PathBuf> {
    let text = fs::read_to_string(source).unwrap_or_default();
    let dir = source.parent().unwrap_or(Path::new("/")).to_path_buf();
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            line.strip_prefix("#[path = \"")
                .or_else(|| line.strip_prefix("include!(\""))
        })
        .filter_map(|rest| rest.split('"').next())
        .map(|path| resolve(&dir, path))
        .collect()
}

/// `dir` joined with the relative `path`, `..` taken away:
/// `exercises/solutions/../common/x.rs` as `exercises/common/x.rs`.
fn resolve(dir: &Path, path: &str) -> PathBuf {
    let mut file = dir.to_path_buf();
    for part in Path::new(path).components() {
        match part {
            Component::ParentDir => {
                file.pop();
            }
            other => file.push(other),
        }
    }
    file
}

/// The lines of `path` outside the region marked `// ANCHOR: anchor` ...
/// `// ANCHOR_END: anchor`, as the compiler sees them: without blank lines
/// and comments (a starter and its solution say different things above
/// their code), and with every path in an `include!` or a `#[path]` made
/// relative to the repository, so that the same file named from two
/// folders reads the same.
fn outside_region(path: &str, anchor: &str) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = read(path);
    let (start, end) = (
        format!("// ANCHOR: {anchor}"),
        format!("// ANCHOR_END: {anchor}"),
    );
    assert_eq!(
        (text.matches(&start).count(), text.matches(&end).count()),
        (1, 1),
        "{path}: one region marked `{start}` ... `{end}`"
    );
    let dir = root.join(path).parent().unwrap().to_path_buf();
    let mut inside = false;
    let mut lines = Vec::new();
    for line in text.lines().map(str::trim) {
        if line == start {
            inside = true;
        } else if line == end {
            inside = false;
        } else if !inside && !line.is_empty() && !line.starts_with("//") {
            let quoted = line.split('"').nth(1).unwrap_or_default();
            if line.starts_with("#[path = \"") || line.starts_with("include!(\"") {
                let file = resolve(&dir, quoted);
                let file = file
                    .strip_prefix(root)
                    .unwrap_or(&file)
                    .display()
                    .to_string();
                lines.push(line.replace(quoted, &file));
            } else {
                lines.push(line.to_string());
            }
        }
    }
    lines
}

/// A starter differs from its solution only inside its region: the rest of
/// the server is the program both take in, and anything either adds outside
/// the region (another module, another file taken in, an attribute) would
/// be a difference nobody sees in the chapter or in a diff of the regions.
/// Comments and blank lines aside, the starter outside its `todo` region
/// must be the solution outside the exercise's region: the one marked
/// `solution`, or, in a solution that two exercises share, the one marked
/// with the exercise's name.
#[test]
fn every_starter_is_its_solution_outside_the_region() {
    for e in exercises::all().filter(|e| e.has_code()) {
        let solution = e.solution_path();
        let anchor = if read(&solution).contains(&format!("// ANCHOR: {}\n", e.name)) {
            e.name
        } else {
            "solution"
        };
        let starter = outside_region(&e.starter_path(), "todo");
        let solved = outside_region(&solution, anchor);
        assert_eq!(
            starter,
            solved,
            "{} and {solution} differ outside the exercise's region (`todo` in the starter, \
             `{anchor}` in the solution): whatever is outside belongs in the program, {}",
            e.starter_path(),
            e.program_path().unwrap_or_default()
        );
    }
}

/// `cargo fmt` formats what a crate's `mod` declarations reach, and does
/// not follow `include!`: the programs in `exercises/programs/`, and the
/// files they take in from `exercises/common/`, would drift unformatted. So
/// they are checked here, with the same `rustfmt` (skipped, with the reason
/// printed, where it cannot be run).
#[test]
fn the_programs_are_formatted() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = ["exercises/programs", "exercises/common"]
        .iter()
        .flat_map(|dir| fs::read_dir(root.join(dir)).unwrap())
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|x| x == "rs"))
        .collect();
    files.sort();
    let output = match Command::new("rustfmt")
        .args(["--edition", "2024", "--check"])
        .args(&files)
        .output()
    {
        Ok(output) => output,
        Err(e) => {
            eprintln!("skipping: cannot run rustfmt ({e})");
            return;
        }
    };
    assert!(
        output.status.success(),
        "format them with `rustfmt --edition 2024 exercises/programs/*.rs exercises/common/*.rs`:\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[test]
fn every_solution_passes_and_every_starter_fails() {
    let mut jobs = Vec::new();
    for e in exercises::all().filter(|e| e.has_code()) {
        if let Some(why) = cannot_run(e) {
            eprintln!("skipping exercise {}: {why}", e.name);
            continue;
        }
        jobs.push((e, Program::Solution));
        jobs.push((e, Program::Starter));
    }
    // The programs are Cargo examples. `cargo test` from the root builds
    // every example before any test runs, but `cargo test --test exercises`
    // builds none, and grading a stale program would test old code. So each
    // must exist and be newer than its sources, or the test stops here.
    let mut stale: Vec<String> = jobs
        .iter()
        .filter_map(|&(e, program)| {
            built_after(&example_path(&program.example(e)), &sources(e, program)).err()
        })
        .collect();
    // Two exercises may share a solution: name it once.
    stale.sort();
    stale.dedup();
    let release = if cfg!(debug_assertions) {
        ""
    } else {
        " --release"
    };
    assert!(
        stale.is_empty(),
        "exercise programs to build first:\n  {}\nBuild them with `cargo build{release} \
         --examples`, or run `cargo test{release}` from the repository root, which builds \
         every example before it runs the tests (`cargo test --test exercises` builds none).",
        stale.join("\n  ")
    );

    // Several at a time: most of a failing starter's time is a check waiting
    // out its time limit, not work.
    let jobs = Mutex::new(jobs);
    let problems = Mutex::new(Vec::new());
    thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                loop {
                    let Some((exercise, program)) = jobs.lock().unwrap().pop() else {
                        return;
                    };
                    if let Some(problem) = both_ways(exercise, program) {
                        problems.lock().unwrap().push(problem);
                    }
                }
            });
        }
    });
    let problems = problems.into_inner().unwrap();
    assert!(problems.is_empty(), "\n{}", problems.join("\n\n"));
}

#[test]
fn echo_check_runs_an_exercise_and_lists_them() {
    let program = tool_path("echo-check");
    let echo_check = |args: &[&str]| Command::new(&program).args(args).output().unwrap();

    let list = echo_check(&["--exercises"]);
    assert!(list.status.success());
    let text = String::from_utf8_lossy(&list.stdout);
    for e in exercises::all() {
        assert!(
            text.contains(e.name),
            "--exercises lists {}:\n{text}",
            e.name
        );
    }

    // Without --no-build: echo-check builds the example itself, as it does
    // for a student.
    let done = echo_check(&["--exercise", "01-end-of-file", "--solution"]);
    let text = String::from_utf8_lossy(&done.stdout);
    assert!(done.status.success(), "{text}");
    assert!(text.contains("DONE"), "{text}");

    let measure = echo_check(&["--exercise", "01-syscalls", "--no-build"]);
    assert!(measure.status.success());
    assert!(String::from_utf8_lossy(&measure.stdout).contains("no check"));

    let unknown = echo_check(&["--exercise", "no-such-exercise", "--no-build"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("01-end-of-file"));
}

/// The instructor guide's batch script, as it is written there: one server
/// that passes, one address where nobody listens.
#[test]
fn the_class_grading_script_grades_a_roster() {
    use uring_echo_tools::process::ServerProcess;
    let server =
        ServerProcess::start(binary_path("02_threads"), &["--addr", "127.0.0.1:0"]).unwrap();
    let dir = std::env::temp_dir().join(format!("grade-class-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let roster = dir.join("roster.txt");
    // A port nobody listens on: bind one, read its number, let it go.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    fs::write(
        &roster,
        format!("# a comment\nada {}\n\nbrian {free}\n", server.addr()),
    )
    .unwrap();
    let output =
        Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("exercises/class/grade-class.sh"))
            .arg(&roster)
            .args(["--only", "basic"])
            .env("GRADES_DIR", dir.join("grades"))
            .env("ECHO_CHECK", tool_path("echo-check"))
            .output()
            .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(1),
        "one student did not answer:\n{text}"
    );
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or("")
            .to_string()
    };
    assert!(line("ada").contains("pass"), "{text}");
    assert!(line("brian").contains("no answer"), "{text}");
    let json: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join("grades/ada.json")).unwrap()).unwrap();
    assert_eq!(json["ok"], true);
    assert_eq!(json["servers"][0]["checks"][0]["name"], "basic");
    fs::remove_dir_all(&dir).unwrap();
}
