//! Small blocking clients that check an echo server's answers byte for byte.
//!
//! The tests and the grader use these. Every read and write has a time limit,
//! so a server that stops answering fails a check instead of hanging it, and
//! every reply is compared with the position-dependent data of
//! [`crate::pattern`], so a failure says which byte went wrong.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::pattern;

/// Why an exchange with the server failed, in words a student can act on.
#[derive(Debug)]
pub enum EchoError {
    /// connect() failed.
    Connect(io::Error),
    /// A read or write failed.
    Io {
        during: &'static str,
        at: u64,
        err: io::Error,
    },
    /// Nothing arrived within the time limit.
    Timeout {
        waited: Duration,
        at: u64,
        expected: u64,
    },
    /// The server closed the connection before every byte came back.
    EarlyEof { at: u64, expected: u64 },
    /// A byte came back that was not the one sent at that position.
    Mismatch { at: u64, got: u8, wanted: u8 },
    /// More bytes came back than were sent.
    Extra { expected: u64 },
}

impl fmt::Display for EchoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EchoError::Connect(e) => write!(f, "could not connect: {e}"),
            EchoError::Io { during, at, err } => {
                write!(f, "{during} failed after {at} bytes echoed: {err}")
            }
            EchoError::Timeout {
                waited,
                at,
                expected,
            } => write!(
                f,
                "no reply for {:.1} s after {at} of {expected} bytes came back",
                waited.as_secs_f64()
            ),
            EchoError::EarlyEof { at, expected } => write!(
                f,
                "the server closed the connection after {at} of {expected} bytes came back"
            ),
            EchoError::Mismatch { at, got, wanted } => write!(
                f,
                "byte {at} of the echo is {got:#04x}, {wanted:#04x} was sent there \
                 (a byte lost, duplicated or reordered before it)"
            ),
            EchoError::Extra { expected } => {
                write!(f, "more bytes came back than the {expected} sent")
            }
        }
    }
}

impl std::error::Error for EchoError {}

/// Connects with a time limit and sets read and write time limits of `timeout`.
pub fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, EchoError> {
    let stream = TcpStream::connect_timeout(&addr, timeout).map_err(EchoError::Connect)?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(EchoError::Connect)?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(EchoError::Connect)?;
    // Small messages should leave at once, not wait for Nagle's algorithm.
    stream.set_nodelay(true).map_err(EchoError::Connect)?;
    Ok(stream)
}

/// Whether a read or write failed because its time limit passed (Linux
/// says WouldBlock for SO_RCVTIMEO, Windows TimedOut).
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Reads `len` bytes of stream `seed` starting at `offset` and checks each one.
pub fn read_expected(
    stream: &mut TcpStream,
    seed: u64,
    offset: u64,
    len: u64,
) -> Result<(), EchoError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0u64;
    let started = Instant::now();
    while got < len {
        let want = (len - got).min(buf.len() as u64) as usize;
        match stream.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(EchoError::EarlyEof {
                    at: offset + got,
                    expected: offset + len,
                });
            }
            Ok(n) => {
                if let Some(i) = pattern::first_mismatch(seed, offset + got, &buf[..n]) {
                    let at = offset + got + i as u64;
                    return Err(EchoError::Mismatch {
                        at,
                        got: buf[i],
                        wanted: pattern::byte_at(seed, at),
                    });
                }
                got += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => {
                return Err(EchoError::Timeout {
                    waited: started.elapsed(),
                    at: offset + got,
                    expected: offset + len,
                });
            }
            Err(err) => {
                return Err(EchoError::Io {
                    during: "read",
                    at: offset + got,
                    err,
                });
            }
        }
    }
    Ok(())
}

/// Sends `len` bytes of stream `seed` and reads the echo **at the same time**,
/// from two threads, so that only the server can deadlock: a server that
/// waits to write everything before it reads again would fill both kernels'
/// buffers and stall here, and the time limit turns that into an error.
pub fn echo_streaming(stream: TcpStream, seed: u64, len: u64) -> Result<(), EchoError> {
    let mut writer = stream.try_clone().map_err(EchoError::Connect)?;
    let sender = thread::spawn(move || -> Result<(), EchoError> {
        let mut chunk = vec![0u8; 64 * 1024];
        let mut sent = 0u64;
        while sent < len {
            let n = (len - sent).min(chunk.len() as u64) as usize;
            pattern::fill(seed, sent, &mut chunk[..n]);
            writer.write_all(&chunk[..n]).map_err(|err| EchoError::Io {
                during: "write",
                at: sent,
                err,
            })?;
            sent += n as u64;
        }
        Ok(())
    });
    let mut reader = stream;
    let received = read_expected(&mut reader, seed, 0, len);
    // If reading failed, unblock a writer stuck on a full buffer.
    if received.is_err() {
        let _ = reader.shutdown(Shutdown::Both);
    }
    let sent = sender.join().unwrap_or_else(|_| {
        Err(EchoError::Io {
            during: "write",
            at: 0,
            err: io::Error::other("writer panicked"),
        })
    });
    received?;
    sent
}

/// Sends one message and checks its echo: the smallest useful exchange.
pub fn echo_once(
    stream: &mut TcpStream,
    seed: u64,
    offset: u64,
    len: usize,
) -> Result<(), EchoError> {
    let data = pattern::bytes(seed, offset, len);
    stream.write_all(&data).map_err(|err| EchoError::Io {
        during: "write",
        at: offset,
        err,
    })?;
    read_expected(stream, seed, offset, len as u64)
}

/// Closes `stream` with a reset (RST) instead of an orderly FIN: `SO_LINGER`
/// with a zero timeout makes `close` discard unsent data and abort.
pub fn reset(stream: TcpStream) -> io::Result<()> {
    let socket = socket2::Socket::from(stream);
    socket.set_linger(Some(Duration::ZERO))?;
    drop(socket);
    Ok(())
}

/// A client that sends and does not read: the peer every server must
/// survive. Its writes run on a thread of their own, so they can block
/// when every buffer between it and the server is full, which is the point.
pub struct NonReader {
    stream: TcpStream,
    seed: u64,
    cap: u64,
    written: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    sender: thread::JoinHandle<io::Result<u64>>,
}

impl NonReader {
    /// Starts sending stream `seed`, up to `cap` bytes, reading nothing.
    pub fn start(stream: TcpStream, seed: u64, cap: u64) -> Result<NonReader, EchoError> {
        stream.set_write_timeout(None).map_err(EchoError::Connect)?;
        let mut writer = stream.try_clone().map_err(EchoError::Connect)?;
        let written = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (w, s) = (Arc::clone(&written), Arc::clone(&stop));
        let sender = thread::spawn(move || -> io::Result<u64> {
            let mut chunk = vec![0u8; 64 * 1024];
            let mut sent = 0u64;
            while sent < cap && !s.load(Ordering::Relaxed) {
                let n = (cap - sent).min(chunk.len() as u64) as usize;
                pattern::fill(seed, sent, &mut chunk[..n]);
                writer.write_all(&chunk[..n])?;
                sent += n as u64;
                w.store(sent, Ordering::Relaxed);
            }
            Ok(sent)
        });
        Ok(NonReader {
            stream,
            seed,
            cap,
            written,
            stop,
            sender,
        })
    }

    /// Bytes sent so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Waits until the writes make no progress for `quiet` (every buffer on
    /// the way is full: the server has stopped taking bytes), or the cap is
    /// sent, or `limit` passes. Returns the bytes sent by then. There is no
    /// event for "a write has been blocked for a while", so this looks at
    /// the count every 50 ms.
    pub fn wait_until_stalled(&self, quiet: Duration, limit: Duration) -> u64 {
        NonReader::wait_until_all_stalled(std::slice::from_ref(self), quiet, limit)[0]
    }

    /// [`NonReader::wait_until_stalled`] for many peers at once: waits until
    /// each one has stalled (or sent its cap, or failed), watching them all
    /// together, so it takes one quiet period, not one per peer. Returns
    /// the bytes each had sent by then.
    pub fn wait_until_all_stalled(
        peers: &[NonReader],
        quiet: Duration,
        limit: Duration,
    ) -> Vec<u64> {
        let deadline = Instant::now() + limit;
        let mut last: Vec<(u64, Instant)> = peers
            .iter()
            .map(|p| (p.written(), Instant::now()))
            .collect();
        let mut done = vec![false; peers.len()];
        while done.iter().any(|d| !d) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
            for (i, peer) in peers.iter().enumerate() {
                let now = peer.written();
                if peer.sender.is_finished() {
                    done[i] = true;
                } else if now != last[i].0 {
                    last[i] = (now, Instant::now());
                    done[i] = false;
                } else if last[i].1.elapsed() >= quiet {
                    done[i] = true;
                }
            }
        }
        peers.iter().map(NonReader::written).collect()
    }

    /// Whether the sender gave up before its cap without being told to:
    /// a write failed, which means the server reset or closed the
    /// connection (EPIPE, ECONNRESET). A stalled write just waits.
    pub fn write_failed(&self) -> bool {
        self.sender.is_finished() && !self.stop.load(Ordering::Relaxed) && self.written() < self.cap
    }

    /// Hangs up without reading: stops the sender (a write blocked in the
    /// kernel returns once the socket is shut down) and closes the socket.
    /// With echoes still unread, the close sends a reset.
    pub fn hang_up(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.stream.shutdown(Shutdown::Both);
        let _ = self.sender.join();
    }

    /// Stops sending, reads back everything that was sent, checking every
    /// byte, and returns how many bytes that was.
    pub fn read_everything_back(self) -> Result<u64, EchoError> {
        self.stop.store(true, Ordering::Relaxed);
        let mut reader = self.stream;
        let mut received = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        let result = loop {
            if self.sender.is_finished() && received == self.written.load(Ordering::Relaxed) {
                break Ok(received);
            }
            match reader.read(&mut buf) {
                Ok(0) => {
                    break Err(EchoError::EarlyEof {
                        at: received,
                        expected: self.written.load(Ordering::Relaxed),
                    });
                }
                Ok(n) => {
                    if let Some(i) = pattern::first_mismatch(self.seed, received, &buf[..n]) {
                        let at = received + i as u64;
                        break Err(EchoError::Mismatch {
                            at,
                            got: buf[i],
                            wanted: pattern::byte_at(self.seed, at),
                        });
                    }
                    received += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => {
                    break Err(EchoError::Timeout {
                        waited: reader.read_timeout().ok().flatten().unwrap_or_default(),
                        at: received,
                        expected: self.written.load(Ordering::Relaxed),
                    });
                }
                Err(err) => {
                    break Err(EchoError::Io {
                        during: "read",
                        at: received,
                        err,
                    });
                }
            }
        };
        if result.is_err() {
            let _ = reader.shutdown(Shutdown::Both);
        }
        match self.sender.join() {
            Ok(Ok(_)) => result,
            Ok(Err(err)) => result.and(Err(EchoError::Io {
                during: "write",
                at: 0,
                err,
            })),
            Err(_) => result.and(Err(EchoError::Io {
                during: "write",
                at: 0,
                err: io::Error::other("writer panicked"),
            })),
        }
    }
}
