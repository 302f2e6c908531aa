//! The checks, each with a stable name, a time limit, and a hint.
//!
//! Every check talks to the server only through TCP, compares every byte of
//! every reply with what was sent at that position, and says where it went
//! wrong. The names are an interface: instructors' scripts, `--only`/`--skip`
//! and the lessons' expectations table refer to them, so they never change.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use crate::client::{self, NonReader};
use crate::pattern;

/// How long a server may take to answer one message before a check gives up.
/// Generous: a debug build on two busy cores answers in milliseconds.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// One check of the grader.
pub struct Check {
    /// Stable name, used by `--only`, `--skip`, `--json` and the expectations table.
    pub name: &'static str,
    /// What the check does, in one line.
    pub what: &'static str,
    /// What a failure usually means, and where to look.
    pub hint: &'static str,
    /// The whole check must finish within this time.
    pub limit: Duration,
    /// Runs the check; `Ok` carries a short summary of what was verified.
    pub run: fn(SocketAddr) -> Result<String, String>,
}

// ANCHOR: checks
/// Every check, in the order the grader runs them.
pub const CHECKS: &[Check] = &[
    Check {
        name: "basic",
        what: "one client, a few short messages, each echoed exactly",
        hint: "the server must send back exactly the bytes it read, no more, no fewer; \
               look at the read/write loop",
        limit: Duration::from_secs(30),
        run: basic,
    },
    Check {
        name: "sizes",
        what: "messages of 1 B to 4 MiB, the client writing and reading at the same time",
        hint: "a partial write was not completed (write may take fewer bytes than offered), \
               or the server stopped reading while a write waited; complete every write \
               and keep the unsent rest",
        limit: Duration::from_secs(120),
        run: sizes,
    },
    Check {
        name: "concurrent",
        what: "200 clients connected at once, echoing in lock-step for 5 rounds",
        hint: "every connected client must be served while the others are; a server \
               that finishes one client before it accepts the next fails here",
        limit: Duration::from_secs(90),
        run: concurrent,
    },
    Check {
        name: "pipelined",
        what: "500 messages sent back to back before any echo is read",
        hint: "one read may hold many messages, or part of one: TCP is a byte stream, \
               so echo whatever arrived, in order",
        limit: Duration::from_secs(30),
        run: pipelined,
    },
    Check {
        name: "half_close",
        what: "the client shuts down its write side; every byte must still come back, then EOF",
        hint: "after read returns 0 (the peer's FIN), send what is still queued, then close; \
               do not close early and do not keep the connection open forever",
        limit: Duration::from_secs(60),
        run: half_close,
    },
    Check {
        name: "reset",
        what: "20 clients reset mid-message (RST), then a healthy client is served",
        hint: "ECONNRESET and EPIPE end one connection, not the server: close that socket \
               and go on (and do not let SIGPIPE kill the process)",
        limit: Duration::from_secs(60),
        run: reset,
    },
    Check {
        name: "stalled",
        what: "a client sends a lot and stops reading; another client must be served \
               meanwhile, the server must stop taking bytes from it (at most 64 MiB), and \
               every stalled byte arrives once it reads again",
        hint: "a peer that does not read must not block the others nor lose bytes: a write \
               may take fewer bytes than offered, or none (EAGAIN), so keep its unsent bytes, \
               stop reading from it (backpressure), and carry on with the rest",
        limit: Duration::from_secs(120),
        run: stalled,
    },
    Check {
        name: "stalled_many",
        what: "32 clients each send up to 8 MiB and stop reading; another client must be \
               served meanwhile, none of the 32 may be closed, and every stalled byte \
               arrives once they read again",
        hint: "peers that do not read must not take a shared resource whole (a pool of \
               buffers, a thread pool): bound what stuck connections hold together, so \
               the others always have some of it; and, as for `stalled`, keep each one's \
               unsent bytes and do not close it",
        limit: Duration::from_secs(120),
        run: stalled_many,
    },
    Check {
        name: "idle",
        what: "2000 connections held open, then each one echoes a message",
        hint: "the server must keep thousands of connections at once: raise the open-file \
               limit, do not cap connections low, and do not busy-loop on EMFILE",
        limit: Duration::from_secs(120),
        run: idle,
    },
    Check {
        name: "churn",
        what: "1000 connect/echo/close cycles from 4 clients at a time",
        hint: "every connection must be closed and forgotten when its peer leaves: a leak of \
               descriptors or of per-connection state shows up here",
        limit: Duration::from_secs(120),
        run: churn,
    },
];
// ANCHOR_END: checks

/// Looks a check up by name: one of [`CHECKS`], or one of the checks
/// exercises add ([`super::EXERCISE_CHECKS`]).
pub fn check(name: &str) -> Option<&'static Check> {
    CHECKS
        .iter()
        .chain(super::EXERCISE_CHECKS)
        .find(|c| c.name == name)
}

fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    client::connect(addr, REPLY_TIMEOUT).map_err(|e| e.to_string())
}

fn basic(addr: SocketAddr) -> Result<String, String> {
    let mut stream = connect(addr)?;
    // A human-readable first message, as `nc` would send it.
    let hello = b"hello, echo\n";
    stream
        .write_all(hello)
        .map_err(|e| format!("write failed: {e}"))?;
    let mut reply = [0u8; 12];
    read_exact(&mut stream, &mut reply).map_err(|e| format!("first message: {e}"))?;
    if &reply != hello {
        return Err(format!(
            "sent {:?}, got back {:?}",
            String::from_utf8_lossy(hello),
            String::from_utf8_lossy(&reply)
        ));
    }
    let mut offset = 0;
    for len in [1usize, 10, 100, 1000] {
        client::echo_once(&mut stream, 1, offset, len)
            .map_err(|e| format!("{len} B message: {e}"))?;
        offset += len as u64;
    }
    Ok("5 messages echoed".into())
}

fn read_exact(stream: &mut TcpStream, buf: &mut [u8]) -> Result<(), String> {
    stream.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            format!("no reply within {} s", REPLY_TIMEOUT.as_secs())
        }
        io::ErrorKind::UnexpectedEof => "the server closed the connection instead".into(),
        _ => e.to_string(),
    })
}

fn sizes(addr: SocketAddr) -> Result<String, String> {
    const SIZES: [u64; 12] = [
        1,
        2,
        3,
        100,
        1460,
        4095,
        4096,
        4097,
        65_535,
        65_536,
        (1 << 20) + 7,
        4 << 20,
    ];
    for len in SIZES {
        let stream = connect(addr)?;
        let ours = stream
            .try_clone()
            .map_err(|e| format!("{len} B message: {e}"))?;
        client::echo_streaming(stream, 100 + len, len)
            .map_err(|e| format!("{len} B message: {e}"))?;
        hang_up_and_wait(&ours);
    }
    Ok(format!("{} sizes from 1 B to 4 MiB", SIZES.len()))
}

/// Hangs up (FIN) and waits, two seconds at most, for the server to close
/// its end too. The checks that connect one after another must not race
/// the previous connection's teardown: a server with a connection cap
/// counts a connection until its handler has seen the end, and on a busy
/// machine a few finished connections could otherwise still fill the cap
/// when the next one arrives. Not closing is not this check's business
/// (`half_close` tests it), so the wait never fails.
fn hang_up_and_wait(stream: &TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut sink = [0u8; 4096];
    let mut reader = stream;
    while let Ok(n) = reader.read(&mut sink) {
        if n == 0 {
            break;
        }
    }
}

fn concurrent(addr: SocketAddr) -> Result<String, String> {
    const CLIENTS: usize = 200;
    const ROUNDS: u64 = 5;
    let mut streams = Vec::with_capacity(CLIENTS);
    for i in 0..CLIENTS {
        streams.push(connect(addr).map_err(|e| format!("client {i}: {e}"))?);
    }
    let mut offsets = vec![0u64; CLIENTS];
    for round in 0..ROUNDS {
        // Everyone sends, then everyone reads: the server has all 200
        // requests in hand at once.
        for (i, stream) in streams.iter_mut().enumerate() {
            let len = 50 + (i % 50) as u64;
            let data = pattern::bytes(1000 + i as u64, offsets[i], len as usize);
            stream
                .write_all(&data)
                .map_err(|e| format!("round {round}, client {i}: write failed: {e}"))?;
        }
        for (i, stream) in streams.iter_mut().enumerate() {
            let len = 50 + (i % 50) as u64;
            client::read_expected(stream, 1000 + i as u64, offsets[i], len).map_err(|e| {
                format!("round {round}, client {i} of {CLIENTS} (all connected at once): {e}")
            })?;
            offsets[i] += len;
        }
    }
    Ok(format!("{CLIENTS} clients × {ROUNDS} rounds"))
}

fn pipelined(addr: SocketAddr) -> Result<String, String> {
    const MESSAGES: u64 = 500;
    let mut stream = connect(addr)?;
    // 500 messages of 1 to 250 bytes, about 63 KB: less than the kernel's
    // socket buffers hold, so a correct server can never block us here.
    let mut offset = 0u64;
    for i in 0..MESSAGES {
        let len = 1 + (i * 37) % 250;
        let data = pattern::bytes(2, offset, len as usize);
        stream
            .write_all(&data)
            .map_err(|e| format!("message {i}: write failed: {e}"))?;
        offset += len;
    }
    client::read_expected(&mut stream, 2, 0, offset)
        .map_err(|e| format!("{MESSAGES} messages ({offset} B) sent before reading: {e}"))?;
    Ok(format!("{MESSAGES} messages, {offset} B"))
}

fn half_close(addr: SocketAddr) -> Result<String, String> {
    const LEN: u64 = 1 << 20;
    let stream = connect(addr)?;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let sender = thread::spawn(move || -> io::Result<()> {
        writer.write_all(&pattern::bytes(3, 0, LEN as usize))?;
        // FIN: "I will send no more", while still reading.
        writer.shutdown(Shutdown::Write)
    });
    let mut reader = stream;
    let echoed = client::read_expected(&mut reader, 3, 0, LEN);
    if echoed.is_err() {
        let _ = reader.shutdown(Shutdown::Both);
    }
    let sent = sender
        .join()
        .map_err(|_| "the writer panicked".to_string())?;
    echoed.map_err(|e| format!("after the client's shutdown(SHUT_WR): {e}"))?;
    sent.map_err(|e| format!("sending {LEN} B then FIN failed: {e}"))?;
    // Everything came back; now the server must close its side too.
    let mut byte = [0u8; 1];
    match reader.read(&mut byte) {
        Ok(0) => Ok(format!("{LEN} B echoed after FIN, then EOF")),
        Ok(_) => Err("more bytes came back than were sent".into()),
        Err(e) if client::is_timeout(&e) => Err(format!(
            "every byte came back, but the server did not close its side within {} s \
                 after the client's FIN",
            REPLY_TIMEOUT.as_secs()
        )),
        Err(e) => Err(format!(
            "every byte came back, then: {e} instead of an orderly close"
        )),
    }
}

fn reset(addr: SocketAddr) -> Result<String, String> {
    const VICTIMS: u64 = 20;
    for i in 0..VICTIMS {
        let mut victim = connect(addr)?;
        // Half of them stop in the middle of sending a lot (the server may be
        // writing to them when the RST arrives), half right after connecting.
        if i % 2 == 0 {
            victim
                .set_write_timeout(Some(Duration::from_millis(200)))
                .map_err(|e| e.to_string())?;
            let _ = victim.write_all(&pattern::bytes(4, 0, 256 * 1024));
        }
        client::reset(victim).map_err(|e| format!("could not reset: {e}"))?;
    }
    let healthy = connect(addr).map_err(|e| format!("after {VICTIMS} resets: {e}"))?;
    client::echo_streaming(healthy, 5, 64 * 1024)
        .map_err(|e| format!("a healthy client after {VICTIMS} resets: {e}"))?;
    Ok(format!("{VICTIMS} resets, then a healthy client served"))
}

/// The most a client that does not read may get into a server before the
/// server stops reading from it. Loopback's socket buffers take 4–10 MiB
/// on a default Linux (tcp_wmem and tcp_rmem maxima) and a server may queue
/// some of its own; 64 MiB leaves room for tuned machines and still catches
/// a server that reads on without limit (the client stops at 256 MiB).
const STALLED_BOUND: u64 = 64 << 20;

/// The checks that fill the kernel's socket buffers with clients that do
/// not read (`stalled`, `stalled_many`: hundreds of MiB between them) run
/// one at a time in a process, even when several servers are graded at
/// once, as the test suite does. Socket memory is the whole machine's
/// (`net.ipv4.tcp_mem`): past its pressure mark the kernel slows every
/// socket, and other checks, of other servers, would fail for no fault of
/// theirs.
static SOCKET_MEMORY: Mutex<()> = Mutex::new(());

/// Takes [`SOCKET_MEMORY`] (a check that panicked while holding it leaves
/// nothing to protect, so a poisoned lock is taken all the same).
fn one_at_a_time() -> MutexGuard<'static, ()> {
    SOCKET_MEMORY.lock().unwrap_or_else(|e| e.into_inner())
}

fn stalled(addr: SocketAddr) -> Result<String, String> {
    let _one_at_a_time = one_at_a_time();
    // The stalled client sends until its writes stop making progress for
    // half a second (every buffer between it and the server is full), or
    // 256 MiB at most.
    let slow = NonReader::start(connect(addr)?, 6, 256 << 20).map_err(|e| e.to_string())?;
    let stalled_at = slow.wait_until_stalled(Duration::from_millis(500), Duration::from_secs(60));

    // While the first client reads nothing, a second one must be served.
    let started = Instant::now();
    let served = connect(addr).and_then(|mut other| {
        let mut offset = 0;
        for len in [10usize, 1000, 10_000] {
            client::echo_once(&mut other, 7, offset, len).map_err(|e| {
                format!(
                    "while a client that does not read has {} MiB in flight, another \
                     client was not served: {e}",
                    stalled_at >> 20
                )
            })?;
            offset += len as u64;
        }
        Ok(started.elapsed())
    });

    // The stalled client reads again: every byte it sent must come back.
    let echoed = slow.read_everything_back();
    let waited = served?;
    let total =
        echoed.map_err(|e| format!("the client that stopped reading, once it read again: {e}"))?;

    // Every byte came back, but how much did the server take in meanwhile?
    // The kernel's socket buffers hold a few MiB on each side; far more than
    // that means the server kept reading from a peer that was not reading,
    // and held it all in its own memory: no backpressure.
    if stalled_at > STALLED_BOUND {
        return Err(format!(
            "a client that does not read got {} MiB into the server before it stopped taking \
             more (every byte came back later, but more than {} MiB means the server held them \
             in its own memory, not the kernel's buffers): stop reading from a peer while its \
             echo waits",
            stalled_at >> 20,
            STALLED_BOUND >> 20
        ));
    }
    Ok(format!(
        "another client served in {} ms while {} MiB waited; all {} MiB came back",
        waited.as_millis(),
        stalled_at >> 20,
        total >> 20
    ))
}

/// `stalled_many`'s peers that do not read. Why 32: lesson 05 once let
/// stuck connections take its whole pool of 1,024 buffers (at most 64 for
/// one connection, receiving again once it is down to 32). Sixteen such
/// peers took all of it only now and then, as their holdings settled
/// anywhere between 33 and a burst past 64 (one run in ten, measured);
/// 32 peers holding at least 33 each take more than the pool every time.
pub const STALLED_MANY_PEERS: usize = 32;

/// What each of `stalled_many`'s peers sends at most. Enough to fill the
/// kernel's buffers on the way back and then a server's own share for the
/// peer (against lesson 05's first version the peers stalled at 4 to 8
/// MiB); against a server that leans on the kernel's buffers alone, most
/// send all of it, which is as good: what counts is that none reads. Far
/// below [`STALLED_BOUND`], so this check does not test how much one peer
/// may push in (that is `stalled`'s job), and a server that reads without
/// limit takes at most 256 MiB here, as in `stalled`.
pub const STALLED_MANY_BYTES: u64 = 8 << 20;

fn stalled_many(addr: SocketAddr) -> Result<String, String> {
    stalled_many_with(addr, STALLED_MANY_PEERS, STALLED_MANY_BYTES)
}

/// `stalled_many` with other numbers: `peers` clients each send up to
/// `bytes_each` and stop reading; while all of them are stalled, another
/// client must be served. Public so tests can ask for more peers than the
/// registered check uses.
pub fn stalled_many_with(
    addr: SocketAddr,
    peers: usize,
    bytes_each: u64,
) -> Result<String, String> {
    let _one_at_a_time = one_at_a_time();
    // Every peer connects first; then they all send at once, each until
    // its writes stop making progress for half a second or its bytes are
    // all sent.
    let streams = (0..peers)
        .map(|i| connect(addr).map_err(|e| format!("peer {i} of {peers}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let stuck = streams
        .into_iter()
        .enumerate()
        .map(|(i, stream)| {
            NonReader::start(stream, 30_000 + i as u64, bytes_each)
                .map_err(|e| format!("peer {i} of {peers}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let stalled_at = NonReader::wait_until_all_stalled(
        &stuck,
        Duration::from_millis(500),
        Duration::from_secs(60),
    );
    let least = stalled_at.iter().copied().min().unwrap_or(0);
    let most = stalled_at.iter().copied().max().unwrap_or(0);
    let in_flight = if least >> 20 == most >> 20 {
        format!("{} MiB each", most >> 20)
    } else {
        format!("{} to {} MiB each", least >> 20, most >> 20)
    };

    // While none of them reads, one more client must be served.
    let started = Instant::now();
    let served = connect(addr).and_then(|mut other| {
        let mut offset = 0;
        for len in [10usize, 1000, 10_000] {
            client::echo_once(&mut other, 8, offset, len).map_err(|e| {
                format!(
                    "while {peers} clients that do not read had {in_flight} in flight, another \
                     client was not served: {e}"
                )
            })?;
            offset += len as u64;
        }
        Ok(started.elapsed())
    });

    // A stalled peer's writes only wait; a write that failed means the
    // server closed (or reset) a connection that was merely slow to read.
    let cut: Vec<usize> = (0..peers).filter(|&i| stuck[i].write_failed()).collect();

    // Every peer reads again, all at once: every byte each sent must come
    // back, in order.
    let readers: Vec<_> = stuck
        .into_iter()
        .map(|peer| thread::spawn(move || peer.read_everything_back()))
        .collect();
    let echoed: Vec<_> = readers
        .into_iter()
        .map(|reader| {
            reader.join().unwrap_or_else(|_| {
                Err(client::EchoError::Io {
                    during: "read",
                    at: 0,
                    err: io::Error::other("the reading thread panicked"),
                })
            })
        })
        .collect();

    let waited = served?;
    if let Some(&i) = cut.first() {
        return Err(format!(
            "the server closed {} of the {peers} clients that did not read (peer {i}, after \
             it had sent {} MiB): a client that is slow to read is not an error; keep it, \
             stop reading from it, and serve the others",
            cut.len(),
            stalled_at[i] >> 20
        ));
    }
    let mut total = 0;
    for (i, result) in echoed.into_iter().enumerate() {
        total += result.map_err(|e| {
            format!("peer {i} of the {peers} that stopped reading, once it read again: {e}")
        })?;
    }

    // As in `stalled`: far more than the kernel's buffers hold means the
    // server kept reading from a peer that was not reading. With the
    // registered numbers no peer sends that much; a caller that asks for
    // more bytes each gets this check too.
    if let Some(i) = (0..peers).find(|&i| stalled_at[i] > STALLED_BOUND) {
        return Err(format!(
            "peer {i} of the {peers} that did not read got {} MiB into the server before it \
             stopped taking more (every byte came back later, but more than {} MiB means the \
             server held them in its own memory, not the kernel's buffers): stop reading from \
             a peer while its echo waits",
            stalled_at[i] >> 20,
            STALLED_BOUND >> 20
        ));
    }
    Ok(format!(
        "another client served in {} ms while {peers} clients that do not read had \
         {in_flight} in flight; all {} MiB came back",
        waited.as_millis(),
        total >> 20
    ))
}

fn idle(addr: SocketAddr) -> Result<String, String> {
    const CONNECTIONS: usize = 2000;
    let mut streams = Vec::with_capacity(CONNECTIONS);
    for i in 0..CONNECTIONS {
        let stream = connect(addr).map_err(|e| {
            format!("connection {i} of {CONNECTIONS} (the others held open and idle): {e}")
        })?;
        streams.push(stream);
    }
    for (i, stream) in streams.iter_mut().enumerate() {
        let data = pattern::bytes(10_000 + i as u64, 0, 8);
        stream
            .write_all(&data)
            .map_err(|e| format!("connection {i}: write failed: {e}"))?;
    }
    for (i, stream) in streams.iter_mut().enumerate() {
        client::read_expected(stream, 10_000 + i as u64, 0, 8)
            .map_err(|e| format!("connection {i} of {CONNECTIONS} held open: {e}"))?;
    }
    Ok(format!("{CONNECTIONS} connections, each answered"))
}

fn churn(addr: SocketAddr) -> Result<String, String> {
    const THREADS: u64 = 4;
    const PER_THREAD: u64 = 250;
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            thread::spawn(move || -> Result<(), String> {
                for i in 0..PER_THREAD {
                    let mut stream = connect(addr).map_err(|e| format!("cycle {i}: {e}"))?;
                    client::echo_once(&mut stream, 20_000 + t * PER_THREAD + i, 0, 64)
                        .map_err(|e| format!("cycle {i}: {e}"))?;
                }
                Ok(())
            })
        })
        .collect();
    for (t, worker) in workers.into_iter().enumerate() {
        worker
            .join()
            .map_err(|_| "a client thread panicked".to_string())?
            .map_err(|e| format!("client {t}: {e}"))?;
    }
    Ok(format!(
        "{} connections opened, echoed and closed",
        THREADS * PER_THREAD
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stalled_many_says_the_numbers_it_uses() {
        let what = check("stalled_many").unwrap().what;
        let peers = format!("{STALLED_MANY_PEERS} clients");
        let bytes = format!("{} MiB", STALLED_MANY_BYTES >> 20);
        assert!(what.contains(&peers) && what.contains(&bytes), "{what}");
        assert!(
            what.contains(&format!("none of the {STALLED_MANY_PEERS}")),
            "{what}"
        );
    }
}
