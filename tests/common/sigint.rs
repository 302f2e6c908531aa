//! SIGINT with clients mid-transfer, for `tests/signals.rs` and the long
//! soak (`tests/soak/`).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use uring_echo_tools::client;
use uring_echo_tools::lessons::Lesson;
use uring_echo_tools::pattern;

use super::{LIMIT, start, tail};

// ANCHOR: sigint
/// Clients streaming when SIGINT comes.
pub const SIGINT_CLIENTS: u64 = 128;

/// How soon after SIGINT the server must be gone, on a machine like ours.
/// Closing a hundred connections takes microseconds, but here the server
/// shares two cores with 128 busy clients and the rest of the suite:
/// measured, 04 and 05 exit in tens of milliseconds, 03 in under a second,
/// 02 in up to 1.4 s (each of its 129 threads must get a core to die on).
/// Three seconds leave room for a slow day; the fault this test found took
/// 7 to 13.
pub const EXIT_LIMIT: Duration = Duration::from_secs(3);

/// On a slower or busier machine everything above takes longer, the fault
/// included, so the limit grows with a yardstick measured at the same
/// moment, under the same load: how long this process takes to start as
/// many threads as 02 has here, and see them end ([`thread_round`]). The
/// limit is [`EXIT_LIMIT`] or this many rounds, whichever is longer. Here a
/// round takes 10 to 500 ms, so the three seconds apply; where rounds take
/// seconds, so would a correct server's exit.
pub const EXIT_LIMIT_IN_ROUNDS: u32 = 10;

pub fn sigint_with_clients_streaming(lesson: &Lesson) -> Result<String, String> {
    let mut server = start(lesson)?;
    let addr = server.addr();
    // A lesson that serves one client at a time has one mid-transfer; the
    // rest wait in the accept queue, which must not delay the exit either.
    let served = match lesson.expected_failure("concurrent") {
        Some(e) => {
            eprintln!(
                "{}: one client mid-transfer, {} queued ({})",
                lesson.name,
                SIGINT_CLIENTS - 1,
                e.why
            );
            1
        }
        None => SIGINT_CLIENTS,
    };
    // Every client connected before any starts, so that all are there.
    let streams = (0..SIGINT_CLIENTS)
        .map(|i| client::connect(addr, LIMIT).map_err(|e| format!("client {i}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let (ready, echoing) = mpsc::channel();
    let quiet = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(i, stream)| {
            let (ready, quiet) = (ready.clone(), Arc::clone(&quiet));
            thread::spawn(move || stream_until_cut(stream, 9000 + i as u64, ready, &quiet))
        })
        .collect();
    drop(ready);
    // The readiness signal: each served client has had echoed bytes back.
    for n in 0..served {
        echoing.recv_timeout(LIMIT).map_err(|_| {
            format!(
                "only {n} of {served} clients had an echo within {} s\n{}",
                LIMIT.as_secs(),
                tail(&server)
            )
        })?;
    }

    // The clients stop sending now, so that their load does not hold up
    // the exit we time; what they sent is still in the server's socket
    // buffers, megabytes per client, and their reads go on.
    quiet.store(true, Ordering::Relaxed);
    let asked = Instant::now();
    server.interrupt().map_err(|e| e.to_string())?;
    let exited = AtomicBool::new(false);
    let (status, round) = thread::scope(|s| {
        let yardstick = s.spawn(|| thread_round(SIGINT_CLIENTS as usize + 1, &exited));
        let status = server.wait_timeout(LIMIT);
        exited.store(true, Ordering::Relaxed);
        (
            status,
            yardstick.join().expect("the yardstick does not panic"),
        )
    });
    let took = asked.elapsed();
    let limit = EXIT_LIMIT.max(round * EXIT_LIMIT_IN_ROUNDS);
    let Some(status) = status.map_err(|e| e.to_string())? else {
        return Err(format!(
            "still running {LIMIT:?} after SIGINT, with {served} clients mid-transfer\n{}",
            tail(&server)
        ));
    };
    if took > limit {
        return Err(format!(
            "exited {took:?} after SIGINT, with {served} clients mid-transfer; the limit is \
             {limit:?} ({EXIT_LIMIT:?}, or {EXIT_LIMIT_IN_ROUNDS} times the {round:?} this \
             machine took meanwhile to start and end {} threads)\n{}",
            SIGINT_CLIENTS + 1,
            tail(&server)
        ));
    }
    if !status.success() {
        return Err(format!(
            "exit status after SIGINT: {status}\n{}",
            tail(&server)
        ));
    }
    // The port is free at once: a restart right now would work.
    TcpListener::bind(addr).map_err(|e| format!("{addr} not free after the exit: {e}"))?;

    // Every client saw its connection end (EOF or reset), and every byte it
    // got before that was the right one.
    let mut verified = 0;
    for (i, c) in clients.into_iter().enumerate() {
        verified += c
            .join()
            .map_err(|_| format!("client {i} panicked"))?
            .map_err(|e| format!("client {i}: {e}"))?;
    }
    if server.stderr().contains("panicked") {
        return Err(format!("the server panicked\n{}", tail(&server)));
    }
    Ok(format!(
        "exited {} ms after SIGINT with {served} clients mid-transfer ({:.1} MiB verified), \
         status 0, port free (limit {:.1} s)",
        took.as_millis(),
        verified as f64 / f64::from(1 << 20),
        limit.as_secs_f64()
    ))
}

/// The yardstick for the exit: how long it takes to start `threads` threads
/// that do nothing and see them all end, which is mostly waiting for a core
/// for each of them, as 02's threads wait to end. Rounds run until `done`
/// (at least one), and the median is returned, so that one unlucky round
/// does not set the limit.
fn thread_round(threads: usize, done: &AtomicBool) -> Duration {
    let mut rounds = Vec::new();
    while rounds.is_empty() || !done.load(Ordering::Relaxed) {
        let started = Instant::now();
        // A thread the machine cannot start is not this test's business:
        // the round goes on with those it has.
        let spawned: Vec<_> = (0..threads)
            .filter_map(|_| thread::Builder::new().spawn(|| ()).ok())
            .collect();
        for t in spawned {
            let _ = t.join();
        }
        rounds.push(started.elapsed());
    }
    rounds.sort();
    rounds[rounds.len() / 2]
}

/// Sends and checks the echo until the server goes away; says `ready` once
/// the first echoed bytes are in. Returns the bytes verified.
///
/// The clients are hungry on purpose: computing and checking every byte's
/// pattern in a debug build, 128 of them keep both cores busy, so the server
/// gets a small share of the CPU, as on an overloaded machine. A server that
/// reacts to SIGINT only after it has run out of work then takes seconds.
fn stream_until_cut(
    stream: TcpStream,
    seed: u64,
    ready: mpsc::Sender<()>,
    quiet: &Arc<AtomicBool>,
) -> Result<u64, String> {
    const CAP: u64 = 64 << 20;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let quiet = Arc::clone(quiet);
    let sender = thread::spawn(move || {
        let mut chunk = vec![0u8; 64 * 1024];
        let mut sent = 0u64;
        while sent < CAP && !quiet.load(Ordering::Relaxed) {
            pattern::fill(seed, sent, &mut chunk);
            // An error ends the stream: the server has gone, as it should.
            if writer.write_all(&chunk).is_err() {
                break;
            }
            sent += chunk.len() as u64;
        }
    });
    let mut reader = &stream;
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0u64;
    let mut ready = Some(ready);
    let result = loop {
        match reader.read(&mut buf) {
            Ok(0) => break Ok(got),
            Ok(n) => {
                if let Some(i) = pattern::first_mismatch(seed, got, &buf[..n]) {
                    break Err(format!("byte {} of the echo is wrong", got + i as u64));
                }
                got += n as u64;
                if let Some(ready) = ready.take() {
                    let _ = ready.send(());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break Ok(got),
            Err(e) => break Err(format!("after {got} B: {e} instead of EOF or a reset")),
        }
    };
    let _ = stream.shutdown(Shutdown::Both);
    let _ = sender.join();
    result
}
// ANCHOR_END: sigint
