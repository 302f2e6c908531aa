//! io_uring as an unprivileged user. Root ignores the locked-memory limit
//! (`RLIMIT_MEMLOCK`, which io_uring charges its rings to), so a server
//! tested only as root has never met the limit a student's laptop enforces.
//! Here the io_uring lessons run as `nobody` with 0 and 64 KiB of locked
//! memory, and just below the least they need (found by bisection): each
//! serves, or exits non-zero with one line that says which limit to raise;
//! never a panic, never a hang. Needs root to drop a child's privileges;
//! skipped, with the reason, where that is not possible.
#![cfg(target_os = "linux")]

mod common;

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::libc;
use uring_echo_tools::client;
use uring_echo_tools::lessons::{self, Lesson};
use uring_echo_tools::process::binary_path;

use common::LIMIT;

// ANCHOR: unprivileged
/// The unprivileged user and group most systems have.
const NOBODY: u32 = 65534;

/// Makes the child `command` starts run as `uid` (and group `uid`, no
/// supplementary groups), with `RLIMIT_MEMLOCK` at `memlock` bytes. As
/// root, the limit would not apply: `CAP_IPC_LOCK` ignores it.
fn unprivileged(command: &mut Command, uid: u32, memlock: u64) {
    // SAFETY: the closure runs in the child between fork and exec, where
    // only async-signal-safe calls are allowed: these are plain system
    // calls that allocate nothing. The limit goes first, while we may
    // still set it; the groups before the gid before the uid, because
    // after setuid nothing else may be changed.
    unsafe {
        command.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: memlock,
                rlim_max: memlock,
            };
            if libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) != 0
                || libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(uid) != 0
                || libc::setuid(uid) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The start of the error when the child could not become another user
/// (no `CAP_SETUID`, or a user namespace that maps no such uid): the case
/// is then skipped, not failed, because the machine forbids the test.
const CANNOT_SWITCH: &str = "cannot start it as uid";

/// What an io_uring lesson did when started unprivileged.
#[derive(Debug)]
enum Outcome {
    /// It listened and echoed, and SIGINT ended it with status 0.
    Served,
    /// It exited non-zero with this one line on stderr.
    Refused(String),
}

/// A child that is killed when dropped, so a failing test leaves none.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_exit(child: &mut Child, limit: Duration) -> io::Result<Option<ExitStatus>> {
    // No portable readiness signal for a child's exit: look every 5 ms.
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Starts `lesson` as `uid` with `memlock` bytes of locked memory, and
/// holds it to "serves, or one clear line and a non-zero exit; never a
/// panic, never a hang".
fn run_unprivileged(lesson: &Lesson, uid: u32, memlock: u64) -> Result<Outcome, String> {
    let mut command = Command::new(binary_path(lesson.name));
    command
        .args(["--addr", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    unprivileged(&mut command, uid, memlock);
    let mut child = Reaped(
        command
            .spawn()
            .map_err(|e| format!("{CANNOT_SWITCH} {uid}: {e}"))?,
    );
    // Both pipes are read on threads of their own: stdout's first line is
    // the readiness signal, stderr is collected until the child is gone.
    let mut stdout = child.0.stdout.take().expect("stdout is piped");
    let (line_tx, line_rx) = mpsc::channel();
    thread::spawn(move || {
        let mut text = Vec::new();
        let mut byte = [0u8; 1];
        while let Ok(1) = stdout.read(&mut byte) {
            if byte[0] == b'\n' {
                break;
            }
            text.push(byte[0]);
        }
        let _ = line_tx.send(String::from_utf8_lossy(&text).into_owned());
    });
    let mut stderr = child.0.stderr.take().expect("stderr is piped");
    let collected = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });

    let line = line_rx
        .recv_timeout(LIMIT)
        .map_err(|_| format!("neither listened nor exited within {} s", LIMIT.as_secs()))?;
    if let Some(addr) = uring_echo_book::listen::parse_announcement(&line) {
        let mut stream = client::connect(addr, LIMIT).map_err(|e| e.to_string())?;
        client::echo_once(&mut stream, 1, 0, 1000)
            .map_err(|e| format!("listened, but did not echo: {e}"))?;
        let pid = nix::unistd::Pid::from_raw(child.0.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).map_err(|e| e.to_string())?;
        let status = wait_exit(&mut child.0, LIMIT).map_err(|e| e.to_string())?;
        let stderr = collected.join().unwrap_or_default();
        if !status.is_some_and(|s| s.success()) || stderr.contains("panicked") {
            return Err(format!("served, then SIGINT gave {status:?}: {stderr}"));
        }
        return Ok(Outcome::Served);
    }
    if !line.is_empty() {
        return Err(format!("its first stdout line is {line:?}"));
    }
    // Stdout closed without a line: it is exiting.
    let status = wait_exit(&mut child.0, LIMIT)
        .map_err(|e| e.to_string())?
        .ok_or("closed stdout but did not exit")?;
    let stderr = collected.join().unwrap_or_default();
    let one_line = stderr.lines().count() == 1 && stderr.starts_with("error: ");
    // The only things changed are the user and the limit, so the line must
    // point at one of them: the memlock limit, or io_uring being switched
    // off for unprivileged users.
    let says_what_to_do = stderr.contains("ulimit -l") || stderr.contains("io_uring_disabled");
    match status.code() {
        Some(code) if code != 0 && one_line && says_what_to_do && !stderr.contains("panicked") => {
            Ok(Outcome::Refused(stderr.trim_end().to_string()))
        }
        _ => Err(format!(
            "exited with {status}; wanted a non-zero exit and one line on stderr naming the \
             limit (`ulimit -l`) or the sysctl, got {stderr:?}"
        )),
    }
}

/// Whether `nobody` may run the built binaries: every directory on the
/// way must be searchable by others, and the file executable by them.
fn others_may_run(path: &std::path::Path) -> Result<(), String> {
    let file = fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if file.permissions().mode() & 0o001 == 0 {
        return Err(format!("{} is not executable by others", path.display()));
    }
    for dir in path.ancestors().skip(1) {
        let meta = fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if meta.permissions().mode() & 0o001 == 0 {
            return Err(format!("{} is not searchable by others", dir.display()));
        }
    }
    Ok(())
}
// ANCHOR_END: unprivileged

// ANCHOR: memlock_edge
/// Fresh user ids for the search below, one per run. The kernel charges
/// io_uring's locked memory to the *user*, not the process, and frees a
/// ring's charge some time after its process has exited, with no event to
/// wait for: run after run as `nobody`, the next would find part of the
/// limit still taken by the last. A uid nobody uses starts from zero.
static NEXT_UID: AtomicU32 = AtomicU32::new(1_999_000_000);

/// Finds, by bisection over pages, the least locked memory with which the
/// lesson serves, then runs it with one to six pages less: there, setup
/// gets further than with none at all, and fails at a later step (a
/// buffer ring, say), whose error must be just as clear.
fn memlock_edge(lesson: &Lesson) -> Result<String, String> {
    const PAGE: u64 = 4096;
    let run = |pages: u64| {
        let uid = NEXT_UID.fetch_add(1, Ordering::Relaxed);
        run_unprivileged(lesson, uid, pages * PAGE)
    };
    // Up to our own hard limit: raising it takes CAP_SYS_RESOURCE, which a
    // container's root may not have.
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::MEMLOCK).map_err(|e| e.to_string())?;
    let (mut low, mut high) = (0u64, hard.min(64 << 20) / PAGE);
    let first = match run(high) {
        Err(e) if e.starts_with(CANNOT_SWITCH) => return Ok(format!("skipped: {e}")),
        other => other?,
    };
    if let Outcome::Refused(line) = first {
        return Ok(format!(
            "refused even with {} KiB: {line}",
            high * PAGE / 1024
        ));
    }
    while high - low > 1 {
        let middle = (low + high) / 2;
        match run(middle)? {
            Outcome::Served => high = middle,
            Outcome::Refused(_) => low = middle,
        }
    }
    let mut lines = Vec::new();
    for less in 1..=6 {
        if let Outcome::Refused(line) = run(high.saturating_sub(less))?
            && !lines.contains(&line)
        {
            lines.push(line);
        }
    }
    Ok(format!(
        "serves from {} KiB of locked memory up; below that: {lines:?}",
        high * PAGE / 1024
    ))
}
// ANCHOR_END: memlock_edge

#[test]
fn io_uring_unprivileged() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: dropping a child's privileges needs root");
        return;
    }
    let mut failures = Vec::new();
    for lesson in lessons::runnable().into_iter().filter(|l| l.needs_io_uring) {
        if let Err(why) = others_may_run(&binary_path(lesson.name)) {
            eprintln!("skipped: {}: cannot run as nobody: {why}", lesson.name);
            continue;
        }
        for memlock in [0, 64 * 1024] {
            match run_unprivileged(lesson, NOBODY, memlock) {
                Err(e) if e.starts_with(CANNOT_SWITCH) => eprintln!("skipped: {e}"),
                Ok(outcome) => eprintln!(
                    "{} as nobody, memlock {} KiB: {outcome:?}",
                    lesson.name,
                    memlock / 1024
                ),
                Err(e) => failures.push(format!(
                    "{} as nobody, memlock {} KiB: {e}",
                    lesson.name,
                    memlock / 1024
                )),
            }
        }
        match memlock_edge(lesson) {
            Ok(summary) => eprintln!("{}: {summary}", lesson.name),
            Err(e) => failures.push(format!("{} near its memlock edge: {e}", lesson.name)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
