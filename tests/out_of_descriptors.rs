//! Every event-loop lesson, out of file descriptors: accept fails with
//! EMFILE while clients keep arriving. The server must keep serving the
//! clients it has, must not spin on the failing accept (a level-triggered
//! listener, or an accept resubmitted at once, would), and must accept the
//! waiting clients once descriptors are free again: when one of its
//! connections closes, and (lesson 03, below) also when descriptors are
//! freed some other way while its clients keep it busy.
#![cfg(target_os = "linux")]

use std::io::Write;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use uring_echo_tools::client::{self, EchoError};
use uring_echo_tools::lessons::lesson;
use uring_echo_tools::pattern;
use uring_echo_tools::process::{ServerProcess, binary_path, stat};

const LIMIT: Duration = Duration::from_secs(30);

/// Clients that come while the server is out of descriptors: more than the
/// about 58 it has room for.
const CLIENTS: u64 = 80;

/// `wakeups` names the counter of loop iterations: epoll_wait calls for 03,
/// io_uring_enter calls for the io_uring lessons.
fn out_of_descriptors_then_recovers(name: &str, args: &[&str], wakeups: &str) {
    if let Some(why) = lesson(name).and_then(|l| l.why_not_here()) {
        eprintln!("skipped: {why}");
        return;
    }
    // Give the server 64 descriptors, hard limit included, so it cannot
    // raise them: after stdin/out/err, the listener, the signalfd and the
    // epoll or io_uring instance, about 58 are left for clients.
    let mut command = Command::new(binary_path(name));
    command.args(["--addr", "127.0.0.1:0"]).args(args);
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe calls are allowed; setrlimit is a plain system call
    // that allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(|| rlimit::setrlimit(rlimit::Resource::NOFILE, 64, 64));
    }
    let mut server = ServerProcess::spawn(command).expect("the server starts with 64 descriptors");

    // 80 clients: more than the server can hold. Each sends one message.
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let mut stream = client::connect(server.addr(), LIMIT).unwrap();
        stream.write_all(&pattern::bytes(i, 0, 100)).unwrap();
        clients.push(stream);
    }
    assert!(
        server.wait_for_stderr("pausing accepts", LIMIT),
        "{name} never ran out of descriptors: {}",
        server.stderr()
    );
    // Let it sit out of descriptors for a second. A server that retried
    // accept at once would spin through many thousands of wakeups meanwhile.
    let out_from = Instant::now();
    thread::sleep(Duration::from_secs(1));
    // Free descriptors: the first 30 clients hang up.
    let rest = clients.split_off(30);
    drop(clients);
    // Every remaining client is served, including those accepted only now.
    for (i, mut stream) in rest.into_iter().enumerate() {
        client::read_expected(&mut stream, 30 + i as u64, 0, 100).unwrap_or_else(|e| {
            panic!(
                "{name}: client {} after recovery: {e}\n{}",
                30 + i,
                server.stderr()
            )
        });
    }
    let elapsed = out_from.elapsed();

    server.interrupt().unwrap();
    let status = server.wait_timeout(LIMIT).unwrap();
    assert!(status.is_some_and(|s| s.success()), "{name}: {status:?}");
    let stderr = server.stderr();
    assert!(stat(&stderr, "accept_pauses") >= 1, "{stderr}");
    // Paused, a server wakes every 100 ms: about 10 times a second. Real
    // work adds at most one wake per event, a handful per client (accept,
    // receive, send, close): fewer when one wake finds several events, as it
    // mostly does on a fast machine (04 makes about 115 in this whole run
    // here), more on a slow one. Spinning on EMFILE would make hundreds of
    // thousands a second, so this bound, 200 a second for the time it sat
    // out of descriptors plus 10 per client for the work, catches it on any
    // machine, and no machine's slowness reaches it.
    let woke = stat(&stderr, wakeups);
    let bound = 200 * elapsed.as_secs_f64().ceil() as u64 + 10 * CLIENTS;
    eprintln!("{name}: {woke} {wakeups} in {elapsed:?} (bound {bound})");
    assert!(
        woke < bound,
        "{name}: {woke} {wakeups} in {elapsed:?}: the accept loop spins on EMFILE\n{stderr}"
    );
}

#[test]
fn epoll_level() {
    out_of_descriptors_then_recovers("03_epoll", &["--trigger", "level"], "epoll_waits");
}

#[test]
fn epoll_edge() {
    out_of_descriptors_then_recovers("03_epoll", &["--trigger", "edge"], "epoll_waits");
}

#[test]
fn uring_single_shot() {
    out_of_descriptors_then_recovers("04_uring", &[], "enters");
}

#[test]
fn uring_multishot() {
    out_of_descriptors_then_recovers("05_uring_multishot", &[], "enters");
}

/// Out of descriptors while one client keeps up a steady ping-pong, so the
/// event loop never sits idle; then descriptors become available without
/// any of the server's connections closing. Here the test raises the
/// server's limit; after ENFILE, another process closing files does the
/// same. The clients waiting in the accept queue must then be accepted and
/// echoed soon, while the ping-pong goes on. A server that retries accept
/// only when a connection closes or when it has been idle for a while never
/// retries here.
///
/// For lesson 03 only: the limit is lowered after the server has started,
/// which an io_uring server does not reliably feel (05 went on accepting
/// past it in some runs), so 04 and 05 would need another way in.
fn accepting_resumes_while_busy(name: &str, args: &[&str]) {
    if let Some(why) = lesson(name).and_then(|l| l.why_not_here()) {
        eprintln!("skipped: {why}");
        return;
    }
    let mut all = vec!["--addr", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let mut server = ServerProcess::start(binary_path(name), &all).expect("the server starts");

    // The server raised its soft limit to the hard limit as it started; it
    // has printed its address, so that is done. Lower the soft limit to 64
    // now, under its feet: as in the test above, that leaves about 58
    // descriptors for clients. (prlimit on a process of our own user needs
    // no privilege for this, nor to raise the soft limit back later, up to
    // the hard limit.)
    let pid = i32::try_from(server.pid()).expect("a pid fits in pid_t");
    let (mut soft, mut hard) = (0, 0);
    let lowered = rlimit::prlimit(
        pid,
        rlimit::Resource::NOFILE,
        None,
        Some((&mut soft, &mut hard)),
    )
    .and_then(|()| rlimit::prlimit(pid, rlimit::Resource::NOFILE, Some((64, hard)), None));
    if let Err(e) = lowered {
        eprintln!("skipped: cannot change {name}'s open-file limit with prlimit: {e}");
        return;
    }

    // The ping-pong client first, so that it is one of those accepted.
    let mut ping = client::connect(server.addr(), LIMIT).unwrap();
    client::echo_once(&mut ping, 1000, 0, 100).unwrap();

    // 80 more clients: more than the server can hold. Each sends one message.
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let mut stream = client::connect(server.addr(), LIMIT).unwrap();
        stream.write_all(&pattern::bytes(i, 0, 100)).unwrap();
        clients.push(stream);
    }
    assert!(
        server.wait_for_stderr("pausing accepts", LIMIT),
        "{name} never ran out of descriptors: {}",
        server.stderr()
    );

    // From now on the server is never idle for long: one echo after another.
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicU64::new(0));
    let (warmed_up, warm) = mpsc::channel();
    let pinger = {
        let (stop, rounds) = (Arc::clone(&stop), Arc::clone(&rounds));
        thread::spawn(move || ping_pong(ping, &stop, &rounds, warmed_up))
    };
    // 50 round trips in, the loop has been busy all along.
    if warm.recv_timeout(LIMIT).is_err() {
        stop.store(true, Ordering::Relaxed);
        let result = pinger.join();
        panic!(
            "{name}: the ping-pong client did not get 50 echoes: {result:?}\n{}",
            server.stderr()
        );
    }

    // Free descriptors, and close none of the server's connections.
    rlimit::prlimit(pid, rlimit::Resource::NOFILE, Some((soft, hard)), None)
        .expect("the soft limit goes back up");
    let raised = Instant::now();
    let rounds_at_raise = rounds.load(Ordering::Relaxed);

    // Every client is echoed, those waiting in the accept queue too. A pause
    // is meant to last 100 ms, and here every client is echoed within about
    // 90 ms; but a server that retries accept only when a connection closes,
    // or when it has been idle, never echoes them at all. So the bound need
    // only be finite: the same generous one as every other wait, which no
    // slow machine reaches and which costs time only when the test fails.
    const BOUND: Duration = LIMIT;
    for (i, stream) in clients.iter_mut().enumerate() {
        let left = BOUND.saturating_sub(raised.elapsed());
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        if let Err(e) = client::read_expected(stream, i as u64, 0, 100) {
            stop.store(true, Ordering::Relaxed);
            panic!(
                "{name}: client {i} was not echoed within {BOUND:?} of more descriptors \
                 becoming free, while another client kept the server busy: {e}\n{}",
                server.stderr()
            );
        }
    }
    let recovered = raised.elapsed();

    // The ping-pong went on all the while, and is still fine.
    stop.store(true, Ordering::Relaxed);
    let total = pinger
        .join()
        .expect("the ping-pong thread does not panic")
        .unwrap_or_else(|e| panic!("{name}: the ping-pong client: {e}\n{}", server.stderr()));
    assert!(
        total > rounds_at_raise,
        "{name}: no echo for the ping-pong client after the limit was raised"
    );
    eprintln!(
        "{name}: every client echoed {recovered:?} after the limit was raised; \
         {} ping-pong rounds meanwhile",
        total - rounds_at_raise
    );

    drop(clients);
    server.interrupt().unwrap();
    let status = server.wait_timeout(LIMIT).unwrap();
    assert!(status.is_some_and(|s| s.success()), "{name}: {status:?}");
}

/// 100-byte echoes, one after another, until `stop`; says when 50 are done.
/// Returns how many round trips it made.
fn ping_pong(
    mut stream: TcpStream,
    stop: &AtomicBool,
    rounds: &AtomicU64,
    warmed_up: mpsc::Sender<()>,
) -> Result<u64, EchoError> {
    let mut done = 0u64;
    loop {
        client::echo_once(&mut stream, 1000, (done + 1) * 100, 100)?;
        done += 1;
        rounds.store(done, Ordering::Relaxed);
        if done == 50 {
            let _ = warmed_up.send(());
        }
        // Looked at after a round, not before: one round at least starts
        // after `stop` is set, so the count proves the client was still
        // being served at the end.
        if stop.load(Ordering::Relaxed) {
            return Ok(done);
        }
    }
}

#[test]
fn epoll_level_resumes_while_busy() {
    accepting_resumes_while_busy("03_epoll", &["--trigger", "level"]);
}

#[test]
fn epoll_edge_resumes_while_busy() {
    accepting_resumes_while_busy("03_epoll", &["--trigger", "edge"]);
}
