//! One soak client at a time (`run_session`), and a round of them
//! (`run_round`): every byte of every echo checked.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use uring_echo_tools::client::{self, EchoError};
use uring_echo_tools::pattern;

use crate::common::LIMIT;
use crate::plan::{Ending, Plan, Rng};

/// What the clients did, added up.
#[derive(Default, Clone, Copy, Debug)]
pub struct Tally {
    connections: u64,
    bytes: u64,
    resets: u64,
    half_closes: u64,
    slow: u64,
}

impl Tally {
    pub fn add(&mut self, other: &Tally) {
        self.connections += other.connections;
        self.bytes += other.bytes;
        self.resets += other.resets;
        self.half_closes += other.half_closes;
        self.slow += other.slow;
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} connections, {:.1} MiB verified, {} resets, {} half-closes, {} slow readers",
            self.connections,
            self.bytes as f64 / f64::from(1 << 20),
            self.resets,
            self.half_closes,
            self.slow
        )
    }
}

/// What the reader tells the writer: how far the echo has come, and when
/// to stop. The writer of a lock-step message waits on it.
#[derive(Default)]
struct Progress {
    echoed: Mutex<u64>,
    moved: Condvar,
    stop: AtomicBool,
}

impl Progress {
    fn advance(&self, to: u64) {
        *self.echoed.lock().unwrap_or_else(|p| p.into_inner()) = to;
        self.moved.notify_all();
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        // Taking the lock orders the store before a waiter's next check.
        drop(self.echoed.lock());
        self.moved.notify_all();
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Waits until `offset` bytes have come back (or the reader stopped).
    fn wait_for(&self, offset: u64) -> Result<(), String> {
        let deadline = Instant::now() + LIMIT;
        let mut echoed = self.echoed.lock().unwrap_or_else(|p| p.into_inner());
        while *echoed < offset && !self.stopped() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "lock-step: the echo stopped at {} of {offset} B",
                    *echoed
                ));
            }
            echoed = self
                .moved
                .wait_timeout(echoed, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        Ok(())
    }
}

/// A client with a small receive buffer: set before `connect`, so the
/// window it advertises is small from the first segment.
fn connect_slow(addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_recv_buffer_size(16 * 1024)?;
    socket.connect_timeout(&addr.into(), LIMIT)?;
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(LIMIT))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

// ANCHOR: session
/// Runs one client's plan. The writer runs on a thread of its own, so the
/// client never stops reading while it writes: if anything deadlocks, it
/// is the server.
pub fn run_session(addr: SocketAddr, plan: &Plan) -> Result<Tally, String> {
    let stream = if plan.slow {
        connect_slow(addr).map_err(|e| format!("could not connect: {e}"))?
    } else {
        client::connect(addr, LIMIT).map_err(|e| e.to_string())?
    };
    let mut tally = Tally {
        connections: 1,
        slow: u64::from(plan.slow),
        ..Tally::default()
    };
    if plan.ending == Ending::ResetAtOnce {
        let some = plan.messages[0].min(4096) as usize;
        // The server may see the data, the reset, or both in one read.
        let _ = (&stream).write_all(&pattern::bytes(plan.stream, 0, some));
        client::reset(stream).map_err(|e| format!("could not reset: {e}"))?;
        tally.resets = 1;
        return Ok(tally);
    }

    let writer = stream.try_clone().map_err(|e| e.to_string())?;
    // SO_SNDTIMEO: a blocked write returns every 100 ms to look at `stop`.
    writer
        .set_write_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| e.to_string())?;
    let progress = Progress::default();
    let (read, written) = thread::scope(|s| {
        let sender = s.spawn(|| write_messages(writer, plan, &progress));
        let read = read_echoes(&stream, plan, &progress);
        if read.is_err() {
            // Unblock the writer, whatever it waits for.
            progress.stop();
            let _ = stream.shutdown(Shutdown::Both);
        } else if plan.ending == Ending::ResetMidway {
            progress.stop();
        }
        let written = sender
            .join()
            .unwrap_or_else(|_| Err("the writer panicked".into()));
        (read, written)
    });
    tally.bytes = read?;
    written?;
    match plan.ending {
        Ending::ResetMidway => {
            // Echoes are still on their way: the server meets ECONNRESET
            // or EPIPE with its send half done.
            client::reset(stream).map_err(|e| format!("could not reset: {e}"))?;
            tally.resets = 1;
        }
        Ending::HalfClose => tally.half_closes = 1,
        Ending::Close | Ending::ResetAtOnce => {}
    }
    Ok(tally)
}

/// Sends the plan's messages in order, waiting for the echo before a
/// lock-step message, and half-closes at the end if the plan says so.
fn write_messages(stream: TcpStream, plan: &Plan, progress: &Progress) -> Result<(), String> {
    let mut writer = stream;
    let mut chunk = vec![0u8; 64 * 1024];
    let mut offset = 0u64;
    for (i, &len) in plan.messages.iter().enumerate() {
        if plan.lock_step[i] {
            progress.wait_for(offset)?;
        }
        let end = offset + len;
        while offset < end {
            let n = (end - offset).min(chunk.len() as u64) as usize;
            pattern::fill(plan.stream, offset, &mut chunk[..n]);
            let mut done = 0;
            let mut since = Instant::now();
            while done < n {
                if progress.stopped() {
                    return Ok(());
                }
                match writer.write(&chunk[done..n]) {
                    Ok(k) => {
                        done += k;
                        since = Instant::now();
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock
                                | io::ErrorKind::TimedOut
                                | io::ErrorKind::Interrupted
                        ) =>
                    {
                        if since.elapsed() > LIMIT {
                            return Err(format!(
                                "a write made no progress for {} s at byte {}",
                                LIMIT.as_secs(),
                                offset + done as u64
                            ));
                        }
                    }
                    // After a reset of ours the error is expected.
                    Err(_) if progress.stopped() => return Ok(()),
                    Err(e) => {
                        return Err(format!(
                            "write failed at byte {}: {e}",
                            offset + done as u64
                        ));
                    }
                }
            }
            offset += n as u64;
        }
    }
    if plan.ending == Ending::HalfClose {
        writer
            .shutdown(Shutdown::Write)
            .map_err(|e| format!("shutdown(SHUT_WR) failed: {e}"))?;
    }
    Ok(())
}

/// Reads and checks the echo, byte for byte; after a half-close, also wants
/// the server's EOF. Returns the bytes verified.
fn read_echoes(stream: &TcpStream, plan: &Plan, progress: &Progress) -> Result<u64, String> {
    let total = plan.total();
    let target = match plan.ending {
        Ending::ResetMidway => plan.reset_after,
        _ => total,
    };
    let mut reader = stream;
    let mut buf = vec![0u8; if plan.slow { 4096 } else { 64 * 1024 }];
    let mut got = 0u64;
    let started = Instant::now();
    let fail = |e: EchoError| e.to_string();
    while got < target {
        let want = (target - got).min(buf.len() as u64) as usize;
        match reader.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(fail(EchoError::EarlyEof {
                    at: got,
                    expected: total,
                }));
            }
            Ok(n) => {
                if let Some(i) = pattern::first_mismatch(plan.stream, got, &buf[..n]) {
                    let at = got + i as u64;
                    return Err(fail(EchoError::Mismatch {
                        at,
                        got: buf[i],
                        wanted: pattern::byte_at(plan.stream, at),
                    }));
                }
                got += n as u64;
                progress.advance(got);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(fail(EchoError::Timeout {
                    waited: started.elapsed(),
                    at: got,
                    expected: total,
                }));
            }
            Err(err) => {
                return Err(fail(EchoError::Io {
                    during: "read",
                    at: got,
                    err,
                }));
            }
        }
        if plan.slow {
            // Not synchronisation: this is the slow reader's whole point.
            thread::sleep(Duration::from_millis(1));
        }
    }
    if plan.ending == Ending::HalfClose {
        // Every byte is back; the server owes us its FIN now.
        match reader.read(&mut buf[..1]) {
            Ok(0) => {}
            Ok(_) => return Err(fail(EchoError::Extra { expected: total })),
            Err(e) => {
                return Err(format!(
                    "every byte came back after our SHUT_WR, but no EOF followed: {e}"
                ));
            }
        }
    }
    Ok(got)
}
// ANCHOR_END: session

/// Runs `sessions` clients, `workers` at a time, each with its own plan
/// from `seed`. Returns what they did and every failure.
pub fn run_round(addr: SocketAddr, seed: u64, sessions: u64, workers: u64) -> (Tally, Vec<String>) {
    let next = AtomicU64::new(0);
    let tally = Mutex::new(Tally::default());
    let failures = Mutex::new(Vec::new());
    thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let id = next.fetch_add(1, Ordering::Relaxed);
                    if id >= sessions {
                        break;
                    }
                    let mut rng = Rng::new(seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                    let plan = Plan::draw(&mut rng, seed.wrapping_add(id));
                    match run_session(addr, &plan) {
                        Ok(t) => tally.lock().unwrap_or_else(|p| p.into_inner()).add(&t),
                        Err(e) => failures
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(format!("client {id} ({}): {e}", plan.describe())),
                    }
                }
            });
        }
    });
    (
        tally.into_inner().unwrap_or_else(|p| p.into_inner()),
        failures.into_inner().unwrap_or_else(|p| p.into_inner()),
    )
}
