//! Starting a server as a child process, for tests, benches and the grader.
//!
//! A server tells the world it is ready by printing `listening on ADDR` as its
//! first stdout line, so nothing here sleeps and hopes: [`ServerProcess::start`]
//! waits for that line and reads the real port from it. The guard kills the
//! child when dropped, so a failing test never leaves a server holding CI's
//! pipes open, and stderr is drained all the time, so a chatty server can never
//! block on a full pipe.

use std::env;
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
#[cfg(target_os = "linux")]
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use uring_echo_book::listen::parse_announcement;

/// How long a server may take to print its address. Generous: a debug build
/// on two busy cores, with the test suite running beside it, can be slow.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// How much of a child's stderr is kept (the most recent bytes).
const STDERR_KEEP: usize = 64 * 1024;

/// The path of a binary of the workspace built beside the running executable.
///
/// Integration tests and benches run from `target/<profile>/deps/`, tools from
/// `target/<profile>/`; every package's binaries are in `target/<profile>/`,
/// and Cargo builds a package's own before it runs its tests or benches. For
/// the tools' binaries, which the lessons' tests run too, see [`tool_path`].
pub fn binary_path(name: &str) -> PathBuf {
    profile_dir().join(format!("{name}{}", env::consts::EXE_SUFFIX))
}

/// The path of an example of this package (`target/<profile>/examples/NAME`).
/// `cargo test` builds every example before it runs the tests, `cargo test
/// --test NAME` none (see [`built_after`]).
pub fn example_path(name: &str) -> PathBuf {
    profile_dir()
        .join("examples")
        .join(format!("{name}{}", env::consts::EXE_SUFFIX))
}

/// The path of one of the tools' own binaries (`echo-check`, `echo-bench`,
/// `peer-tokio`), for the lessons' tests, which run them: checked to be
/// built, and built after its sources last changed.
///
/// Cargo builds a package's binaries before that package's tests run, so
/// the lessons' tests always meet fresh lessons. The tools are another
/// package: `cargo test -p uring-echo-book` (or `cargo test --test NAME`)
/// builds the tools' library for the tests, but not their binaries, and a
/// test would then run whatever an earlier build left, or nothing. `cargo
/// test` from the repository root builds both packages' binaries first.
///
/// # Panics
///
/// When the binary is missing or older than one of its sources, with the
/// command that builds it.
pub fn tool_path(name: &str) -> PathBuf {
    let path = binary_path(name);
    if let Err(why) = built_after(&path, &tool_sources(name)) {
        let release = if cfg!(debug_assertions) {
            ""
        } else {
            " --release"
        };
        panic!(
            "{why}: a test would run a stale or missing tool. Build the tools' binaries \
             first: `cargo build{release} -p uring-echo-tools --bins`, or run `cargo \
             test{release}` from the repository root, which builds every binary before \
             any test (`cargo test -p uring-echo-book` and `cargo test --test NAME` build \
             the lessons, not the tools)"
        );
    }
    path
}

/// The sources a binary of the tools is built from: the tools' library
/// (`tools/src/`, less the other binaries in `tools/src/bin/`), the
/// binary's own file or folder there, and the lessons' library, which the
/// tools use (`src/`, less the lessons in `src/bin/`). Only files that Cargo
/// rebuilds the binary for, so that a fresh build always passes
/// [`built_after`].
fn tool_sources(name: &str) -> Vec<PathBuf> {
    let root = crate::workspace_root();
    let bins = root.join("tools/src/bin");
    let mut sources = rust_sources(&root.join("tools/src"), Some(&bins));
    sources.extend(rust_sources(&bins.join(format!("{name}.rs")), None));
    sources.extend(rust_sources(&bins.join(name), None));
    sources.extend(library_sources());
    sources
}

/// Checks that the binary of a lesson or a peer at `path`, named `name`,
/// is built and newer than its sources, for the runs that measure servers
/// (`echo-ladder`, `cargo bench`): Cargo builds only the binary it is asked
/// to run, and a measurement of a stale build is a wrong number, not an
/// error. `Err` says which file is newer and the command that builds them
/// all. A path that is not one of ours (a variant's other build) is taken
/// as it is.
pub fn check_server_built(name: &str, path: &Path) -> Result<(), String> {
    if path != binary_path(name) {
        return if path.is_file() {
            Ok(())
        } else {
            Err(format!("{} does not exist", path.display()))
        };
    }
    let root = crate::workspace_root();
    let sources = if crate::lessons::lesson(name).is_some() {
        let mut sources = library_sources();
        sources.extend(rust_sources(&root.join(format!("src/bin/{name}.rs")), None));
        sources.extend(rust_sources(&root.join(format!("src/bin/{name}")), None));
        sources
    } else {
        tool_sources(name)
    };
    let release = if cfg!(debug_assertions) {
        ""
    } else {
        " --release"
    };
    built_after(path, &sources).map_err(|why| {
        format!(
            "{why}: build every server first, `cargo build{release} --workspace --bins` \
             (Cargo builds only the binary it runs)"
        )
    })
}

/// The lessons' library: every Rust file under `src/` except the lessons
/// themselves (`src/bin/`). Every binary and example of the workspace is
/// built with it, so each is rebuilt when one of these files changes.
pub fn library_sources() -> Vec<PathBuf> {
    let root = crate::workspace_root();
    rust_sources(&root.join("src"), Some(&root.join("src/bin")))
}

/// Every `.rs` file at `path` (a file or a folder, searched all the way
/// down), except those under `except`. Nothing when `path` does not exist.
pub fn rust_sources(path: &Path, except: Option<&Path>) -> Vec<PathBuf> {
    if except.is_some_and(|e| path.starts_with(e)) {
        return Vec::new();
    }
    if path.is_file() {
        return if path.extension().is_some_and(|x| x == "rs") {
            vec![path.to_path_buf()]
        } else {
            Vec::new()
        };
    }
    let Ok(entries) = fs::read_dir(path) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        found.extend(rust_sources(&entry.path(), except));
    }
    found.sort();
    found
}

/// Whether `binary` exists and was built after every file in `sources` last
/// changed: Cargo's own rule for rebuilding, by modification time. `Err`
/// says which is missing or newer, with paths from the repository's root.
pub fn built_after(binary: &Path, sources: &[PathBuf]) -> Result<(), String> {
    let root = crate::workspace_root();
    let show = |p: &Path| p.strip_prefix(&root).unwrap_or(p).display().to_string();
    let built = fs::metadata(binary)
        .and_then(|m| m.modified())
        .map_err(|e| format!("{} is not built ({e})", show(binary)))?;
    let newest = sources
        .iter()
        .filter_map(|p| Some((fs::metadata(p).ok()?.modified().ok()?, p)))
        .max_by_key(|(changed, _)| *changed);
    if let Some((changed, source)) = newest
        && let Ok(later) = changed.duration_since(built)
        && !later.is_zero()
    {
        return Err(format!(
            "{} is older than {}, which changed {:.1} s after it was built",
            show(binary),
            show(source),
            later.as_secs_f64()
        ));
    }
    Ok(())
}

/// `target/<profile>/`, found from the running executable.
fn profile_dir() -> PathBuf {
    let exe = env::current_exe().expect("the running executable has a path");
    let mut dir = exe
        .parent()
        .expect("an executable lives in a directory")
        .to_path_buf();
    if dir.ends_with("deps") || dir.ends_with("examples") {
        dir.pop();
    }
    dir
}

/// A running server, killed when dropped.
pub struct ServerProcess {
    child: Child,
    addr: SocketAddr,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_done: Option<thread::JoinHandle<()>>,
    extra_stdout: Arc<Mutex<Vec<String>>>,
    program: String,
}

impl ServerProcess {
    /// Starts `program args...` and waits for its `listening on ADDR` line.
    pub fn start(program: impl Into<PathBuf>, args: &[&str]) -> io::Result<ServerProcess> {
        let mut command = Command::new(program.into());
        command.args(args);
        ServerProcess::spawn(command)
    }

    /// Starts a prepared command (for tests that set limits or environment)
    /// and waits for its `listening on ADDR` line. Stdout and stderr are
    /// replaced by pipes this guard reads.
    pub fn spawn(mut command: Command) -> io::Result<ServerProcess> {
        let program = command.get_program().to_string_lossy().into_owned();
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start {program}: {e}")))?;

        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut stderr_pipe = child.stderr.take().expect("stderr is piped");
        let sink = Arc::clone(&stderr);
        let stderr_done = thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = stderr_pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                let mut kept = sink.lock().unwrap_or_else(|p| p.into_inner());
                kept.extend_from_slice(&chunk[..n]);
                if kept.len() > STDERR_KEEP {
                    let cut = kept.len() - STDERR_KEEP;
                    kept.drain(..cut);
                }
            }
        });

        // The first stdout line is the address; anything after it breaks the
        // convention and is kept so a test can say so.
        let (first_line, first_line_rx) = mpsc::channel();
        let extra_stdout = Arc::new(Mutex::new(Vec::new()));
        let extra = Arc::clone(&extra_stdout);
        let stdout = child.stdout.take().expect("stdout is piped");
        thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = first_line.send(lines.next());
            for line in lines.map_while(Result::ok) {
                extra.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });

        let mut server = ServerProcess {
            child,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            stderr,
            stderr_done: Some(stderr_done),
            extra_stdout,
            program,
        };
        let line = match first_line_rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(Some(Ok(line))) => line,
            Ok(_) => {
                // stdout closed without a line: the server has exited.
                let status = server.wait_timeout(Duration::from_secs(10))?;
                return Err(io::Error::other(format!(
                    "{} exited before it printed its address (status {:?}); its stderr:\n{}",
                    server.program,
                    status,
                    server.stderr()
                )));
            }
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{} printed no `listening on ADDR` line within {:?}; its stderr:\n{}",
                        server.program,
                        STARTUP_TIMEOUT,
                        server.stderr()
                    ),
                ));
            }
        };
        server.addr = parse_announcement(&line).ok_or_else(|| {
            io::Error::other(format!(
                "{}'s first stdout line should be `listening on ADDR`, it was {line:?}",
                server.program
            ))
        })?;
        Ok(server)
    }

    /// The address the server really listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the server wrote to stderr so far (the last 64 KiB of it).
    pub fn stderr(&self) -> String {
        let kept = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&kept).into_owned()
    }

    /// Waits until the server's stderr contains `needle`, at most `timeout`.
    /// Returns whether it did. (Stderr is a log, not an event source, so this
    /// looks at it every few milliseconds.)
    pub fn wait_for_stderr(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.stderr().contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// The server's resident memory (`VmRSS` in `/proc/PID/status`), in KiB.
    #[cfg(target_os = "linux")]
    pub fn rss_kib(&self) -> io::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| io::Error::other("no VmRSS line in /proc/PID/status"))
    }

    /// Lines the server printed on stdout after its first one (there should
    /// be none).
    pub fn extra_stdout(&self) -> Vec<String> {
        self.extra_stdout
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Sends SIGINT, as Ctrl-C in a terminal would.
    #[cfg(target_os = "linux")]
    pub fn interrupt(&self) -> io::Result<()> {
        self.signal(nix::sys::signal::Signal::SIGINT)
    }

    /// Sends SIGTERM, as `kill PID` would.
    #[cfg(target_os = "linux")]
    pub fn terminate(&self) -> io::Result<()> {
        self.signal(nix::sys::signal::Signal::SIGTERM)
    }

    #[cfg(target_os = "linux")]
    fn signal(&self, signal: nix::sys::signal::Signal) -> io::Result<()> {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).map_err(io::Error::from)
    }

    /// Waits for the child to exit, at most `timeout`; `None` if it is still
    /// running. (There is no portable readiness signal for a child's exit, so
    /// this checks every few milliseconds.)
    pub fn wait_timeout(&mut self, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                // The child is gone, so its stderr pipe reaches EOF: collect
                // every last line before anyone reads it.
                if let Some(drain) = self.stderr_done.take() {
                    let _ = drain.join();
                }
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes `io_uring_setup` fail with `EPERM` in the child `command` will
/// start, as a container's default seccomp profile does, and nothing else.
/// Only that child is affected: the machine-wide `kernel.io_uring_disabled`
/// would break every other test running at the same time.
#[cfg(target_os = "linux")]
pub fn deny_io_uring(command: &mut Command) {
    use nix::libc;
    use std::os::unix::process::CommandExt;

    // A classic BPF program, run by the kernel on every system call:
    //   load the syscall number;
    //   if it is io_uring_setup, return EPERM; otherwise allow.
    // (io_uring_setup has the same number, 425, on every architecture.)
    const LOAD_NR: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const JUMP_IF_EQ: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const RETURN: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    let filter = [
        libc::sock_filter {
            code: LOAD_NR,
            jt: 0,
            jf: 0,
            k: 0,
        }, // seccomp_data.nr
        libc::sock_filter {
            code: JUMP_IF_EQ,
            jt: 0,
            jf: 1,
            k: libc::SYS_io_uring_setup as u32,
        },
        libc::sock_filter {
            code: RETURN,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        },
        libc::sock_filter {
            code: RETURN,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ALLOW,
        },
    ];
    // SAFETY: the closure runs in the child between fork and exec, where
    // only async-signal-safe calls are allowed: it makes two plain system
    // calls and allocates nothing. `filter` is moved into the closure, so
    // the program the kernel copies in is alive during the call.
    unsafe {
        command.pre_exec(move || {
            let program = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr().cast_mut(),
            };
            // Without "no new privileges", an unprivileged process may not
            // install a filter (it could fool a setuid program).
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &program) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// One `io_uring_enter` call of a supervised child (see [`EnterFaults`]):
/// its arguments as the kernel reported them.
#[cfg(target_os = "linux")]
#[derive(Debug, Clone, Copy)]
pub struct EnterCall {
    /// How many queued requests the call hands over.
    pub to_submit: u32,
    /// How many completions it waits for (0: it only submits).
    pub min_complete: u32,
}

/// What [`EnterFaults`] does with one `io_uring_enter` call.
#[cfg(target_os = "linux")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnterVerdict {
    /// Let the call run as usual.
    Run,
    /// Return this errno (`EINTR`, `EAGAIN`, ...) without running the call:
    /// the kernel takes none of the queued requests and waits for nothing,
    /// which is also what it does when it returns one of those errors
    /// itself.
    Fail(i32),
}

/// Errors from `io_uring_enter` on demand, for a child server.
///
/// A lesson must cope with `EINTR`, `EAGAIN` and `EBUSY` from
/// `io_uring_enter`, and a test cannot make the kernel produce them at will
/// (`EAGAIN` needs a failed allocation inside the kernel). So the test asks a
/// seccomp filter to stop every `io_uring_enter` of the child and report it
/// here (`SECCOMP_RET_USER_NOTIF`, Linux 5.5 for letting a call run on).
/// A thread of the test then lets each call run, or fails it with an errno,
/// as the test decides. No other system call is touched.
///
/// Use: [`EnterFaults::prepare`] on the command, with the rule; then start
/// the child (for example with [`ServerProcess::spawn`]), and keep the
/// `EnterFaults` until it has started.
#[cfg(target_os = "linux")]
pub struct EnterFaults {
    /// The child's end of the socket pair. It must be open here when the
    /// child is forked, which is how the child gets it. Once this is
    /// dropped, the child's copy (closed at exec) is the only one, so a
    /// child that sent nothing makes our end read end-of-file, not wait.
    _theirs: std::os::unix::net::UnixStream,
    /// Calls decided but withdrawn before the answer reached them (see
    /// [`EnterFaults::withdrawn`]).
    withdrawn: Arc<AtomicU64>,
}

#[cfg(target_os = "linux")]
impl EnterFaults {
    /// Makes the child `command` will start install the filter, just before
    /// it runs the program, and send the filter's listener descriptor over
    /// a socket pair to a thread of ours, which answers each of the child's
    /// `io_uring_enter` calls with `decide` until the child has exited.
    pub fn prepare(
        command: &mut Command,
        decide: impl FnMut(EnterCall) -> EnterVerdict + Send + 'static,
    ) -> io::Result<EnterFaults> {
        use nix::libc;
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;

        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        let socket = theirs.as_raw_fd();
        // The same kind of program as `deny_io_uring`'s: io_uring_enter goes
        // to the listener, every other call is allowed.
        const LOAD_NR: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
        const JUMP_IF_EQ: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
        const RETURN: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
        let step = |code, jf, k| libc::sock_filter { code, jt: 0, jf, k };
        let filter = [
            step(LOAD_NR, 0, 0), // seccomp_data.nr
            step(JUMP_IF_EQ, 1, libc::SYS_io_uring_enter as u32),
            step(RETURN, 0, libc::SECCOMP_RET_USER_NOTIF),
            step(RETURN, 0, libc::SECCOMP_RET_ALLOW),
        ];
        // SAFETY: the closure runs in the child between fork and exec, where
        // only async-signal-safe calls are allowed: it makes plain system
        // calls on memory of its own stack and of `filter` (moved into the
        // closure, so alive), and allocates nothing. `socket` is the
        // child's end of the pair, inherited by the child: `theirs` keeps it
        // open in this process until the child has started.
        unsafe {
            command.pre_exec(move || {
                let program = libc::sock_fprog {
                    len: filter.len() as u16,
                    filter: filter.as_ptr().cast_mut(),
                };
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                let listener = libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_SET_MODE_FILTER,
                    libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
                    &program,
                );
                if listener < 0 {
                    return Err(io::Error::last_os_error());
                }
                let listener = listener as libc::c_int;
                let sent = send_descriptor(socket, listener);
                libc::close(listener);
                sent
            });
        }
        let withdrawn = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&withdrawn);
        thread::spawn(move || answer(ours, decide, &counter));
        Ok(EnterFaults {
            _theirs: theirs,
            withdrawn,
        })
    }

    /// A counter of the calls that `decide` saw but that never received its
    /// answer, readable after this is dropped. A call waiting for its answer
    /// can be interrupted (by io_uring's own task work on the child, for
    /// instance); the kernel then withdraws it and, as with any interrupted
    /// call, restarts it, so `decide` sees the same call twice while the
    /// child made it once. Subtract this from `decide`'s count.
    pub fn withdrawn(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.withdrawn)
    }
}

/// `EnterFaults`' thread: receives the listener, then answers each call.
#[cfg(target_os = "linux")]
fn answer(
    ours: std::os::unix::net::UnixStream,
    mut decide: impl FnMut(EnterCall) -> EnterVerdict,
    withdrawn: &AtomicU64,
) {
    use nix::libc;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    let Ok(fd) = recv_descriptor(ours.as_raw_fd()) else {
        return; // the child never started; `spawn` says why
    };
    // SAFETY: `recv_descriptor` returned a descriptor that the kernel just
    // installed in this process for us; nothing else owns it.
    let listener = unsafe { OwnedFd::from_raw_fd(fd) };
    let fd = listener.as_raw_fd();
    loop {
        // POLLIN: a call waits. POLLHUP without it: no process uses the
        // filter any more, the child has exited.
        let mut ready = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, for the duration of the call.
        if unsafe { libc::poll(&mut ready, 1, -1) } < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if ready.revents & libc::POLLIN == 0 {
            return;
        }
        // SAFETY: all-zero is a valid seccomp_notif, and the kernel wants it
        // zeroed.
        let mut call: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        // SAFETY: the ioctl writes one seccomp_notif into `call`.
        if unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_RECV, &mut call) } != 0 {
            continue; // the call went away (the child was killed), or EINTR
        }
        let verdict = decide(EnterCall {
            to_submit: call.data.args[1] as u32,
            min_complete: call.data.args[2] as u32,
        });
        // SAFETY: all-zero is a valid seccomp_notif_resp.
        let mut response: libc::seccomp_notif_resp = unsafe { std::mem::zeroed() };
        response.id = call.id;
        match verdict {
            EnterVerdict::Run => {
                response.flags = libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32;
            }
            EnterVerdict::Fail(errno) => response.error = -errno,
        }
        // SAFETY: the ioctl reads one seccomp_notif_resp. It fails (ENOENT)
        // if the call went away meanwhile: interrupted, to be restarted and
        // reported again, or its process killed. Either way it was not made.
        if unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_SEND, &response) } != 0 {
            withdrawn.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Sends descriptor `fd` over the Unix socket `socket` (SCM_RIGHTS), with
/// one byte of data. Async-signal-safe: no allocation, plain system calls.
#[cfg(target_os = "linux")]
fn send_descriptor(socket: std::os::fd::RawFd, fd: std::os::fd::RawFd) -> io::Result<()> {
    use nix::libc;
    let mut byte = 0u8;
    let mut iov = libc::iovec {
        iov_base: (&raw mut byte).cast(),
        iov_len: 1,
    };
    // Room for one control message carrying one descriptor, aligned for it.
    let mut control = [0u64; 4];
    // SAFETY: all-zero is a valid msghdr; the pointers set below point to
    // `iov` and `control`, which outlive the sendmsg call. CMSG_SPACE(4) is
    // 24 bytes on 64-bit and 16 on 32-bit systems, within `control`'s 32, so
    // the first header and its data are inside it.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(size_of::<libc::c_int>() as u32) as _;
        let header = libc::CMSG_FIRSTHDR(&msg);
        (*header).cmsg_level = libc::SOL_SOCKET;
        (*header).cmsg_type = libc::SCM_RIGHTS;
        (*header).cmsg_len = libc::CMSG_LEN(size_of::<libc::c_int>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(header).cast::<libc::c_int>(), fd);
        if libc::sendmsg(socket, &msg, 0) != 1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Receives one descriptor sent by [`send_descriptor`] (close-on-exec).
#[cfg(target_os = "linux")]
fn recv_descriptor(socket: std::os::fd::RawFd) -> io::Result<std::os::fd::RawFd> {
    use nix::libc;
    let mut byte = 0u8;
    let mut iov = libc::iovec {
        iov_base: (&raw mut byte).cast(),
        iov_len: 1,
    };
    let mut control = [0u64; 4];
    // SAFETY: as in `send_descriptor`; the kernel writes at most
    // `msg_controllen` bytes into `control` and one byte into `byte`, and
    // the header is read only if the kernel filled one in.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = size_of_val(&control) as _;
        let n = libc::recvmsg(socket, &mut msg, libc::MSG_CMSG_CLOEXEC);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let header = libc::CMSG_FIRSTHDR(&msg);
        if n == 0
            || header.is_null()
            || (*header).cmsg_level != libc::SOL_SOCKET
            || (*header).cmsg_type != libc::SCM_RIGHTS
        {
            return Err(io::Error::other(
                "the child sent no seccomp listener (did it start?)",
            ));
        }
        Ok(std::ptr::read_unaligned(
            libc::CMSG_DATA(header).cast::<libc::c_int>(),
        ))
    }
}

/// One of the counters a lesson prints on its `stats:` line at exit, by
/// name (`stat(&server.stderr(), "short_sends")`). For tests: it panics, with
/// the line, when there is no stats line or no such counter.
pub fn stat(stderr: &str, name: &str) -> u64 {
    let line = stats_line(stderr).unwrap_or_else(|| panic!("no stats line at exit in: {stderr}"));
    counter(line, name).unwrap_or_else(|| panic!("no `{name}` in {line}"))
}

/// The same counter, or `None` where the server prints no stats line or
/// not that counter: for the ladder runner, which measures servers that do
/// and servers that do not.
pub fn stat_value(stderr: &str, name: &str) -> Option<u64> {
    counter(stats_line(stderr)?, name)
}

fn stats_line(stderr: &str) -> Option<&str> {
    stderr.lines().find(|l| l.starts_with("stats:"))
}

/// The number after the word `name` in a `stats:` line.
fn counter(line: &str, name: &str) -> Option<u64> {
    let mut words = line.split_whitespace();
    words.find(|w| *w == name)?;
    words.next()?.parse().ok()
}
