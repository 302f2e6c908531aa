//! System calls counted without a tracer: perf's `raw_syscalls:sys_enter`.
//!
//! strace stops the server at every system call and lets it go again, which
//! slows a server down several times over; an io_uring server, slowed like
//! that, finds more completions waiting at each `io_uring_enter` and looks
//! cheaper per echo than it is. The kernel's tracepoint at the entry of every
//! system call, counted by perf, stops nothing: each entry adds one to a
//! counter, in the kernel, and the server runs at its own pace.
//!
//! The counting window must be the load's measured window, not perf's life:
//! perf takes tens of milliseconds to start, and the server's own start-up,
//! connecting and draining are not echoes. So perf is started at the
//! server's start with its counter disabled (`-D -1`), listening on a
//! control FIFO (`--control`), and the runner writes `enable` as the window
//! opens and `disable` as it closes; perf acknowledges each command on a
//! second FIFO.
//!
//! The tracepoint itself costs a little on every call while perf is
//! attached, and every server pays it in proportion to its calls: in four
//! alternating rounds of 50 clients × 3 s, with perf attached and without,
//! lesson 03 (two calls per echo) spent about 2% more CPU per echo (0.07 µs
//! of 3.5, inside the round-to-round noise) and lesson 05 (a tenth of a
//! call) nothing measurable.
//!
//! perf counts only where the kernel lets it: as root, or with
//! `kernel.perf_event_paranoid` at -1 and tracefs readable. [`probe`] tries
//! once, and the runner records "not measured, because …" with perf's own
//! words when it cannot.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::libc;

/// The tracepoint: one hit per system call entered, whichever call it is.
pub const EVENT: &str = "raw_syscalls:sys_enter";

/// How the data describes this measure.
pub const METHOD: &str = "perf stat -e raw_syscalls:sys_enter -p PID, enabled over the measured \
                          window only (perf's --control FIFO), no tracer";

/// How long perf may take to start, or to answer a command.
const PATIENCE: Duration = Duration::from_secs(10);

/// Whether perf can count the tracepoint here; the reason, as the data
/// records it, when it cannot.
pub fn probe() -> Result<(), String> {
    if !super::on_path("perf") {
        return Err("not measured, because perf is not installed".to_string());
    }
    let out = Command::new("perf")
        .args(["stat", "-x,", "-e", EVENT, "--", "true"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("not measured, because perf cannot be run: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    match parse_count(&stderr) {
        Ok(_) if out.status.success() => Ok(()),
        _ => Err(format!(
            "not measured, because perf cannot count {EVENT} here (it needs root, or \
             kernel.perf_event_paranoid at -1 and tracefs): {}",
            last_words(&stderr)
        )),
    }
}

/// perf's count in `-x,` (CSV) output: the first field of the line that
/// names the event. `<not counted>` means the counter never ran, because the
/// process never did while it was enabled: no system calls.
pub fn parse_count(stderr: &str) -> Result<u64, String> {
    let line = stderr
        .lines()
        .find(|l| l.split(',').nth(2) == Some(EVENT))
        .ok_or_else(|| format!("perf printed no count: {}", last_words(stderr)))?;
    let field = line.split(',').next().unwrap_or("");
    match field {
        "<not counted>" => Ok(0),
        _ => field
            .parse()
            .map_err(|_| format!("perf could not count: {line}")),
    }
}

/// The last line of `text` that says something, for an error message.
fn last_words(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("(nothing on stderr)")
        .to_string()
}

/// perf, attached to one process, its counter disabled until [`enable`].
///
/// [`enable`]: PerfCount::enable
pub struct PerfCount {
    child: Child,
    ctl: File,
    ack: File,
    /// What perf wrote on the answer FIFO and was not yet taken as an answer.
    answers: Vec<u8>,
    fifos: [PathBuf; 2],
}

impl PerfCount {
    /// Starts `perf stat` on process `pid` (and its threads, and the threads
    /// it starts later: counters are inherited), and waits until it is
    /// listening.
    pub fn attach(pid: u32) -> Result<PerfCount, String> {
        let fifos = fifo_paths(pid);
        for path in &fifos {
            let _ = std::fs::remove_file(path);
            nix::unistd::mkfifo(
                path,
                nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
            )
            .map_err(|e| format!("cannot make the FIFO {}: {e}", path.display()))?;
        }
        // Both ends opened for reading and writing: on Linux that never
        // waits for the other side, whichever of us and perf comes first.
        let open = |path: &PathBuf| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(|e| format!("cannot open {}: {e}", path.display()))
        };
        let (ctl, ack) = (open(&fifos[0])?, open(&fifos[1])?);
        let control = format!("fifo:{},{}", fifos[0].display(), fifos[1].display());
        let child = Command::new("perf")
            .args([
                "stat",
                "-x,",
                "-e",
                EVENT,
                "-D",
                "-1",
                "--control",
                &control,
            ])
            .args(["-p", &pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start perf: {e}"))?;
        let mut perf = PerfCount {
            child,
            ctl,
            ack,
            answers: Vec::new(),
            fifos,
        };
        // `ping` is answered once perf has attached and reads its commands.
        perf.command("ping")?;
        perf.acknowledged()?;
        Ok(perf)
    }

    /// Starts counting. Called as the window opens, on the load's thread:
    /// one write, no waiting (the acknowledgement is read afterwards).
    pub fn enable(&mut self) {
        let _ = self.command("enable");
    }

    /// Stops counting, as the window closes.
    pub fn disable(&mut self) {
        let _ = self.command("disable");
    }

    /// Checks that both commands were carried out, stops perf and returns
    /// its count.
    pub fn finish(mut self) -> Result<u64, String> {
        self.acknowledged()?;
        self.acknowledged()?;
        // SIGINT: perf prints its counts and exits.
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let deadline = Instant::now() + PATIENCE;
        while self.child.try_wait().ok().flatten().is_none() {
            if Instant::now() >= deadline {
                return Err("perf did not exit after SIGINT".to_string());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        parse_count(&stderr)
    }

    fn command(&mut self, word: &str) -> Result<(), String> {
        self.ctl
            .write_all(format!("{word}\n").as_bytes())
            .map_err(|e| format!("cannot write to perf's control FIFO: {e}"))
    }

    /// Waits for one `ack` from perf. perf writes each as `ack\n` with the
    /// string's terminating NUL after it, so answers are read as they come
    /// and split on those, not read as fixed-size records.
    fn acknowledged(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(end) = find(&self.answers, b"ack") {
                self.answers.drain(..end);
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let mut ready = libc::pollfd {
                fd: self.ack.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd for the duration of the call.
            let n = unsafe { libc::poll(&mut ready, 1, left.as_millis() as libc::c_int) };
            if n != 1 {
                return Err(format!(
                    "perf did not answer on its control FIFO within {} s",
                    PATIENCE.as_secs()
                ));
            }
            let mut chunk = [0u8; 64];
            let got = self
                .ack
                .read(&mut chunk)
                .map_err(|e| format!("cannot read perf's answer: {e}"))?;
            self.answers.extend_from_slice(&chunk[..got]);
        }
    }
}

/// Where the first `word` in `bytes` ends, if there is one.
fn find(bytes: &[u8], word: &[u8]) -> Option<usize> {
    bytes
        .windows(word.len())
        .position(|w| w == word)
        .map(|at| at + word.len())
}

impl Drop for PerfCount {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for path in &self.fifos {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Two FIFO paths no other runner or run uses.
fn fifo_paths(pid: u32) -> [PathBuf; 2] {
    let tag = format!("echo-ladder-perf-{}-{pid}", std::process::id());
    let dir = std::env::temp_dir();
    [
        dir.join(format!("{tag}.ctl")),
        dir.join(format!("{tag}.ack")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_found_in_whatever_perf_wrote() {
        assert_eq!(find(b"ack\n\0ack\n\0", b"ack"), Some(3));
        assert_eq!(find(b"\0ack", b"ack"), Some(4));
        assert_eq!(find(b"ac", b"ack"), None);
    }

    #[test]
    fn the_count_is_read_from_perfs_csv() {
        let out = "Events disabled\nEvents enabled\nEvents disabled\n\
                   1656921,,raw_syscalls:sys_enter,199054126,100.00,,\n";
        assert_eq!(parse_count(out), Ok(1_656_921));
        let idle = "<not counted>,,raw_syscalls:sys_enter,0,100.00,,\n";
        assert_eq!(parse_count(idle), Ok(0));
        let missing = "<not supported>,,raw_syscalls:sys_enter,0,100.00,,\n";
        assert!(parse_count(missing).is_err());
        let refused = "Error:\nNo permission to enable raw_syscalls:sys_enter event.\n";
        assert!(parse_count(refused).unwrap_err().contains("No permission"));
    }

    /// Counts a child that makes a known number of calls (where perf can).
    #[test]
    fn perf_counts_a_process_between_enable_and_disable() {
        if let Err(why) = probe() {
            eprintln!("skipped: {why}");
            return;
        }
        // A shell that waits on its stdin: `read` makes a system call per
        // line we send, and nothing else happens while it waits.
        let mut shell = Command::new("sh")
            .args(["-c", "while read x; do :; done"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = shell.stdin.take().unwrap();
        let mut perf = PerfCount::attach(shell.id()).unwrap();
        input.write_all(b"before\n").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        perf.enable();
        std::thread::sleep(Duration::from_millis(50));
        for _ in 0..100 {
            input.write_all(b"x\n").unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(50));
        perf.disable();
        let count = perf.finish().unwrap();
        drop(input);
        let _ = shell.wait();
        // A shell's `read` reads one byte at a time: at least one call per
        // line, and not thousands.
        assert!((100..5_000).contains(&count), "{count} calls");
    }
}
