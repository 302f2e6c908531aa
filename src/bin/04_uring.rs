//! 04_uring — completions instead of readiness: a first io_uring server.
//!
//! Lesson 03 asked the kernel "which sockets are ready?" and then did the
//! reads and writes itself, two or more system calls per echo. With io_uring
//! we ask the kernel to *do* the operations: we write requests ("receive
//! into this buffer", "send these bytes") into a submission queue shared
//! with the kernel, and the kernel writes a result for each into a
//! completion queue when it is done. One `io_uring_enter` call hands over a
//! whole batch of requests and waits for a batch of results.
//!
//! This lesson uses the simplest form of each operation: one `Accept` in
//! flight at a time, and per connection one `Recv` into the connection's own
//! 4 KiB buffer, then one `Send` of what arrived (again for the rest, if the
//! kernel sent only part), then the next `Recv`. The new difficulty is
//! ownership: while the kernel holds a request, it holds a pointer into our
//! memory, and the borrow checker cannot see that.
//!
//! Run it:
//!
//! ```text
//! cargo run --bin 04_uring
//! cargo run --bin echo-check -- 127.0.0.1:7878
//! strace -c -f cargo run --release --bin 04_uring    # count io_uring_enter calls
//! ```

use std::io;
use std::process::ExitCode;

use clap::Parser;
#[cfg(target_os = "linux")]
use io_uring::{IoUring, opcode, squeue, types};
#[cfg(target_os = "linux")]
use nix::libc;
#[cfg(target_os = "linux")]
use nix::sys::signal::{SigSet, Signal};
#[cfg(target_os = "linux")]
use nix::sys::signalfd::{SfdFlags, SignalFd};
#[cfg(target_os = "linux")]
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
#[cfg(target_os = "linux")]
use std::ptr::NonNull;
#[cfg(target_os = "linux")]
use std::time::Duration;
use uring_echo_book::cli::CommonArgs;

// ANCHOR: options
/// A single-threaded echo server on io_uring with single-shot operations (Linux).
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,

    /// Entries in the submission queue: how many requests can be queued
    /// before one `io_uring_enter` hands them to the kernel. More are fine:
    /// when the queue is full we submit and carry on.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=32768))]
    ring_entries: u32,

    /// Most connections served at once. The completion queue is sized from
    /// it so that it can never overflow; accepting pauses at the cap.
    #[arg(long, default_value_t = 16384, value_parser = clap::value_parser!(u64).range(1..=30000))]
    max_conns: u64,

    /// Each connection's buffer, in bytes: what one receive can bring and
    /// one send must get out. One page by default.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=(1 << 20)))]
    buffer_size: u32,

    /// SO_SNDBUF for every connection, in bytes (default: the kernel's).
    /// A send buffer smaller than one of our buffers makes short sends
    /// frequent: try `--buffer-size 65536 --sndbuf 4096` and watch the
    /// `short_sends` counter at exit.
    #[arg(long, value_name = "BYTES")]
    sndbuf: Option<usize>,
}
// ANCHOR_END: options

#[cfg(not(target_os = "linux"))]
fn main() -> ExitCode {
    let _ = Args::parse();
    eprintln!("error: 04_uring needs Linux (io_uring); lessons 01 and 02 run on any OS");
    ExitCode::FAILURE
}

#[cfg(target_os = "linux")]
fn main() -> ExitCode {
    let args = Args::parse();
    uring_echo_book::limits::raise_open_file_limit_or_warn();
    let mut server = match Server::new(&args) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match server.run() {
        Ok(()) => {
            eprintln!("{}", server.stats);
            ExitCode::SUCCESS
        }
        Err(e) => {
            // Requests may still be in flight, and the kernel may still write
            // into their buffers: `Server`'s `Drop` (at the end of this file)
            // leaks those rather than free them. The process is exiting.
            eprintln!("error: the event loop failed: {e}");
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: user_data
// Every request carries 64 bits of `user_data` that the kernel copies, untouched,
// into its completion. That is all we get back, so it must say what the
// request was and for whom:
//
//   63      56 55                  32 31                               0
//  +----------+----------------------+----------------------------------+
//  |   kind   |  generation (24 bit) |   connection index (32 bit)      |
//  +----------+----------------------+----------------------------------+
//
// The generation tells a completion for a connection that has since closed,
// and whose slot went to a new connection, from one for the new connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Accept = 1,
    Recv = 2,
    Send = 3,
    Signal = 4,
    Timeout = 5,
    Cancel = 6,
}

fn pack(kind: Kind, index: usize, generation: u32) -> u64 {
    ((kind as u64) << 56) | (u64::from(generation & 0xff_ffff) << 32) | (index as u64 & 0xffff_ffff)
}

fn unpack(user_data: u64) -> (Option<Kind>, usize, u32) {
    let kind = match user_data >> 56 {
        1 => Some(Kind::Accept),
        2 => Some(Kind::Recv),
        3 => Some(Kind::Send),
        4 => Some(Kind::Signal),
        5 => Some(Kind::Timeout),
        6 => Some(Kind::Cancel),
        _ => None,
    };
    let generation = ((user_data >> 32) & 0xff_ffff) as u32;
    (kind, (user_data & 0xffff_ffff) as usize, generation)
}
// ANCHOR_END: user_data

// ANCHOR: conn
/// One client.
#[cfg(target_os = "linux")]
struct Conn {
    /// The socket; dropping it closes it.
    socket: OwnedFd,
    generation: u32,
    /// The kernel receives into this buffer and sends from it. A
    /// `KernelBuf` (below), not a `Box<[u8]>`: the kernel holds the
    /// buffer's address while we move the `Conn` around.
    buf: KernelBuf,
    /// `buf[..filled]` arrived; `buf[..sent]` of it has been sent back.
    filled: usize,
    sent: usize,
    /// The one request the kernel holds for this connection, if any. While
    /// it is `Some`, the bytes of `buf` must not be touched or freed (and
    /// they cannot move: see `KernelBuf`).
    in_flight: Option<Kind>,
}
// ANCHOR_END: conn

// ANCHOR: kernel_buf
/// Heap memory we lend to the kernel: a connection's buffer, or the 128
/// bytes the signal read fills.
///
/// Why not a `Box<[u8]>`? A `Box` keeps its bytes where they are when the
/// `Box` itself moves, and `conns` moves every `Conn` when it grows. But a
/// `Box` promises more than "the bytes stay put": it promises that it is
/// the *only* way to reach them. The compiler optimizes on that promise
/// (to it a `Box` is `noalias`, like a `&mut`), and every move of the `Box`
/// makes the promise again. While a receive is in flight the kernel writes
/// into those bytes, so the promise would be false, and a program that
/// breaks a promise the compiler relies on has undefined behaviour, even
/// when it seems to work.
///
/// A raw pointer promises nothing. Moving a `KernelBuf` copies an address
/// and says nothing about the bytes behind it. And we never make a Rust
/// reference (`&[u8]`, `&mut [u8]`) to those bytes at all: this server
/// never reads them itself, it only hands their address to the kernel.
#[cfg(target_os = "linux")]
struct KernelBuf {
    ptr: NonNull<u8>,
    len: usize,
}

#[cfg(target_os = "linux")]
impl KernelBuf {
    /// `len` zeroed bytes on the heap.
    fn new(len: usize) -> KernelBuf {
        let bytes: Box<[u8]> = vec![0u8; len].into_boxed_slice();
        // `into_raw` ends the `Box`, and its promise, without freeing the
        // memory: from here on only this raw pointer reaches it, until
        // `drop` below frees it.
        let raw: *mut [u8] = Box::into_raw(bytes);
        KernelBuf {
            ptr: NonNull::new(raw.cast::<u8>()).expect("a Box is never null"),
            len,
        }
    }

    /// The address of byte `at`, for the kernel. The assert keeps it
    /// inside the buffer (or just past its end, for an empty range), where
    /// `wrapping_add`, the safe form of pointer arithmetic, gives the same
    /// address as the unsafe `add`.
    fn addr(&self, at: usize) -> *mut u8 {
        assert!(at <= self.len, "an address outside the buffer");
        self.ptr.as_ptr().wrapping_add(at)
    }

    fn len(&self) -> usize {
        self.len
    }
}

#[cfg(target_os = "linux")]
impl Drop for KernelBuf {
    fn drop(&mut self) {
        let raw = std::ptr::slice_from_raw_parts_mut(self.ptr.as_ptr(), self.len);
        // SAFETY: `raw` is the pointer `Box::into_raw` returned in `new`,
        // with the same address and length, and this is the only place that
        // turns it back into a `Box`: once, as the `KernelBuf` goes away.
        // (That the kernel no longer uses the memory by then is `push`'s
        // promise, kept where each request is pushed.)
        drop(unsafe { Box::from_raw(raw) });
    }
}
// ANCHOR_END: kernel_buf

/// What the server did, printed at exit.
#[derive(Default)]
struct Stats {
    enters: u64,
    completions: u64,
    accepted: u64,
    closed: u64,
    recvs: u64,
    sends: u64,
    short_sends: u64,
    accept_pauses: u64,
    stale: u64,
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "stats: enters {} completions {} accepted {} closed {} recvs {} sends {} \
             short_sends {} accept_pauses {} stale {}",
            self.enters,
            self.completions,
            self.accepted,
            self.closed,
            self.recvs,
            self.sends,
            self.short_sends,
            self.accept_pauses,
            self.stale
        )
    }
}

// ANCHOR: server
#[cfg(target_os = "linux")]
struct Server {
    ring: IoUring,
    listener: std::net::TcpListener,
    signals: SignalFd,
    /// The kernel writes a `signalfd_siginfo` (128 bytes) here when a signal
    /// arrives: memory lent to the kernel, like a connection's buffer.
    siginfo: KernelBuf,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    generations: Vec<u32>,
    max_conns: usize,
    buffer_size: usize,
    /// Requests the kernel holds and whose completion we have not yet seen.
    /// At exit we wait for this to reach zero before freeing any memory.
    in_flight: usize,
    accepting: bool,
    /// Accepting is paused (EMFILE or --max-conns) and a timeout is armed.
    timeout_armed: bool,
    stopping: bool,
    /// Completions copied out of the ring, reused from batch to batch.
    batch: Vec<(u64, i32)>,
    stats: Stats,
}

/// How long accepting pauses after EMFILE. The kernel copies a timeout's
/// `timespec` when it takes the request from the submission queue (at our
/// next `io_uring_enter`), not later: it only has to be valid until then.
/// A `static` is valid, and unchanged, for as long as the program runs.
#[cfg(target_os = "linux")]
static PAUSE: types::Timespec = types::Timespec::new().nsec(100_000_000);
// ANCHOR_END: server

#[cfg(target_os = "linux")]
impl Server {
    // ANCHOR: setup
    fn new(args: &Args) -> Result<Server, String> {
        use uring_echo_book::uring::{self, Needed};

        // The completion queue must hold every completion that can be
        // pending at once, or the kernel has to keep the overflow aside (and
        // old kernels drop it). At most: one request per connection, the
        // accept, the signal read and the timeout, and at exit one cancel
        // for each of those.
        let max_conns = usize::try_from(args.max_conns).unwrap_or(30000);
        // The kernel also wants it at least as big as the submission queue.
        let cq_entries = (2 * (max_conns + 4))
            .max(2 * args.ring_entries as usize)
            .next_power_of_two()
            .min(65536) as u32;
        let mut builder: io_uring::Builder = IoUring::builder();
        // Not IORING_SETUP_SUBMIT_ALL (Linux 5.18). Without it, an entry
        // the kernel refuses as it takes it (it still posts a completion for
        // it, with the error) ends that enter's submitting early, and the
        // entries after it wait in the queue for the next enter, which our
        // loop makes at once. Nothing is lost or reordered: the flag would
        // save one enter in a rare case, at the price of a fallback for
        // older kernels.
        builder.setup_cqsize(cq_entries).setup_clamp();
        let ring = uring::build(&builder, args.ring_entries)?;
        uring::require(
            &ring,
            &[
                Needed {
                    code: opcode::Accept::CODE,
                    name: "IORING_OP_ACCEPT",
                    since: "5.5",
                },
                Needed {
                    code: opcode::Recv::CODE,
                    name: "IORING_OP_RECV",
                    since: "5.6",
                },
                Needed {
                    code: opcode::Send::CODE,
                    name: "IORING_OP_SEND",
                    since: "5.6",
                },
                Needed {
                    code: opcode::Read::CODE,
                    name: "IORING_OP_READ",
                    since: "5.6",
                },
                Needed {
                    code: opcode::Timeout::CODE,
                    name: "IORING_OP_TIMEOUT",
                    since: "5.4",
                },
                Needed {
                    code: opcode::AsyncCancel::CODE,
                    name: "IORING_OP_ASYNC_CANCEL",
                    since: "5.5",
                },
            ],
        )?;

        let addr = args.common.addr;
        let listener = uring_echo_book::listen::bind_or_explain(addr)?;
        if let Some(size) = args.sndbuf {
            // Accepted sockets inherit the listener's buffer sizes.
            socket2::SockRef::from(&listener)
                .set_send_buffer_size(size)
                .map_err(|e| format!("cannot set SO_SNDBUF: {e}"))?;
        }

        // SIGINT and SIGTERM arrive as reads on a signalfd, which the ring
        // reads like any other file. Blocked first, so the default action
        // (exit at once) does not run.
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGINT);
        mask.add(Signal::SIGTERM);
        mask.thread_block()
            .map_err(|e| format!("cannot block SIGINT/SIGTERM: {e}"))?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC)
            .map_err(|e| format!("cannot create a signalfd: {e}"))?;

        let local = listener
            .local_addr()
            .map_err(|e| format!("cannot read the listening address: {e}"))?;
        let mut server = Server {
            ring,
            listener,
            signals,
            siginfo: KernelBuf::new(std::mem::size_of::<libc::signalfd_siginfo>()),
            conns: Vec::new(),
            free: Vec::new(),
            generations: Vec::new(),
            max_conns,
            buffer_size: args.buffer_size as usize,
            in_flight: 0,
            accepting: false,
            timeout_armed: false,
            stopping: false,
            batch: Vec::with_capacity(cq_entries as usize),
            stats: Stats::default(),
        };
        server.submit_signal_read().map_err(|e| e.to_string())?;
        server.submit_accept().map_err(|e| e.to_string())?;
        uring_echo_book::listen::announce(local);
        Ok(server)
    }
    // ANCHOR_END: setup

    // ANCHOR: push
    /// Queues one request. If the submission queue is full, hands the
    /// queued requests to the kernel first (`enter`), which makes room.
    ///
    /// # Safety
    ///
    /// The entry holds addresses, not borrows: the kernel will use the
    /// memory behind them, and nothing in the type system stops us from
    /// freeing, moving or changing it meanwhile. So the caller promises,
    /// for every address in `entry`:
    ///
    /// - memory the operation reads or writes (a receive's buffer, a
    ///   send's bytes, a read's buffer) stays allocated and where it is,
    ///   and we neither read nor write it, until the request's completion
    ///   has been reaped;
    /// - memory the kernel reads only as it takes the request from the
    ///   submission queue (a timeout's `timespec`, which it copies) stays
    ///   valid and unchanged until then: until the next `enter`.
    unsafe fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: the crate's `push` asks that the memory the entry
            // points to stay valid for the whole operation. That is what
            // our own caller promised, above.
            let pushed = unsafe { self.ring.submission().push(&entry) };
            if pushed.is_ok() {
                self.in_flight += 1;
                return Ok(());
            }
            self.enter(0)?;
        }
    }
    // ANCHOR_END: push

    // ANCHOR: enter
    /// How many failed `io_uring_enter` calls in a row `enter` tries again.
    const ENTER_RETRIES: u32 = 1000;

    /// One `io_uring_enter`: hands the kernel every queued request, and
    /// with `want` 1 sleeps until at least one completion is there.
    ///
    /// Three errors mean "not now" rather than "broken". With each, the
    /// kernel took none of the queued requests, so trying again repeats
    /// nothing and loses nothing:
    ///
    /// - EINTR: a signal interrupted the sleep (Ctrl-Z and `fg` in a
    ///   shell, which stop and continue the process; a debugger). Try
    ///   again at once.
    /// - EAGAIN: the kernel could not allocate memory for a request.
    ///   Give it a millisecond to find some, then try again.
    /// - EBUSY: on older kernels, completions are waiting that found the
    ///   completion queue full. Ours has room for every completion that can
    ///   be pending (see `setup`), so it should not happen here; if it
    ///   does, it is treated like EAGAIN.
    ///
    /// Bounded: after `ENTER_RETRIES` failures in a row (a second of
    /// EAGAIN), something is wrong that trying again will not fix, and the
    /// error ends the server rather than a loop that spins forever.
    fn enter(&mut self, want: usize) -> io::Result<()> {
        let mut failures = 0;
        loop {
            let result = self.ring.submit_and_wait(want);
            self.stats.enters += 1;
            let e = match result {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            match e.raw_os_error() {
                _ if failures == Self::ENTER_RETRIES => return Err(e),
                Some(libc::EINTR) => {}
                Some(libc::EAGAIN | libc::EBUSY) => std::thread::sleep(Duration::from_millis(1)),
                _ => return Err(e),
            }
            failures += 1;
        }
    }
    // ANCHOR_END: enter

    // ANCHOR: signal_read
    fn submit_signal_read(&mut self) -> io::Result<()> {
        let entry = opcode::Read::new(
            types::Fd(self.signals.as_raw_fd()),
            self.siginfo.addr(0),
            self.siginfo.len() as u32,
        )
        .build()
        .user_data(pack(Kind::Signal, 0, 0));
        // SAFETY: the read writes into `siginfo`'s 128 bytes. They stay
        // where they are when the server moves (only the `KernelBuf`, an
        // address, moves), and no code of ours reads or writes them. They
        // are freed only with the server: after `shutdown` has reaped every
        // completion, or, if it is dropped with requests in flight (an
        // error, a panic), never: `Server`'s `Drop` leaks them.
        unsafe { self.push(entry) }
    }
    // ANCHOR_END: signal_read

    // ANCHOR: accept
    /// One accept request in flight. Its completion carries the new socket's
    /// descriptor (or an error), and we submit the next accept then.
    fn submit_accept(&mut self) -> io::Result<()> {
        if self.accepting || self.stopping || self.live() >= self.max_conns {
            return Ok(());
        }
        let entry = opcode::Accept::new(
            types::Fd(self.listener.as_raw_fd()),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
        .flags(libc::SOCK_CLOEXEC)
        .build()
        .user_data(pack(Kind::Accept, 0, 0));
        // SAFETY: the two null pointers ask for no peer address: this
        // request points to no memory of ours.
        unsafe { self.push(entry) }?;
        self.accepting = true;
        Ok(())
    }

    fn on_accept(&mut self, res: i32) -> io::Result<()> {
        self.accepting = false;
        if res >= 0 {
            // SAFETY: a successful accept completion's result is a new
            // descriptor that the kernel just created for us; nothing else in
            // this process knows it, so `OwnedFd` may own and close it.
            let socket = unsafe { OwnedFd::from_raw_fd(res) };
            self.stats.accepted += 1;
            if self.stopping {
                return Ok(()); // dropped, so closed
            }
            self.register(socket)?;
        } else if matches!(
            -res,
            libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM
        ) {
            // Out of descriptors (or of kernel memory). Submitting the accept
            // again at once would fail again at once, forever: a busy loop
            // through the ring. Pause until a connection closes or the
            // timeout fires.
            eprintln!(
                "accept failed: {}; pausing accepts until a connection closes",
                io::Error::from_raw_os_error(-res)
            );
            self.stats.accept_pauses += 1;
            return self.arm_timeout();
        } else if -res != libc::ECONNABORTED && -res != libc::EINTR && -res != libc::ECANCELED {
            eprintln!("accept failed: {}", io::Error::from_raw_os_error(-res));
        }
        if self.live() >= self.max_conns {
            self.stats.accept_pauses += 1;
            return Ok(()); // resumed by `close`
        }
        self.submit_accept()
    }

    fn arm_timeout(&mut self) -> io::Result<()> {
        if self.timeout_armed || self.stopping {
            return Ok(());
        }
        let entry = opcode::Timeout::new(&PAUSE)
            .build()
            .user_data(pack(Kind::Timeout, 0, 0));
        // SAFETY: the only memory is `PAUSE`, which the kernel copies at the
        // next enter. A `static` lives as long as the program and is never
        // written, so it is valid and unchanged until then, and after.
        unsafe { self.push(entry) }?;
        self.timeout_armed = true;
        Ok(())
    }
    // ANCHOR_END: accept

    // ANCHOR: register
    fn live(&self) -> usize {
        self.conns.len() - self.free.len()
    }

    /// Puts a new connection in a free slot and asks for its first bytes.
    fn register(&mut self, socket: OwnedFd) -> io::Result<()> {
        let index = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.generations.push(0);
            self.conns.len() - 1
        });
        self.generations[index] = (self.generations[index] + 1) & 0xff_ffff;
        self.conns[index] = Some(Conn {
            socket,
            generation: self.generations[index],
            buf: KernelBuf::new(self.buffer_size),
            filled: 0,
            sent: 0,
            in_flight: None,
        });
        self.submit_recv(index)
    }
    // ANCHOR_END: register

    // ANCHOR: recv_send
    /// Asks the kernel to receive into the connection's buffer.
    fn submit_recv(&mut self, index: usize) -> io::Result<()> {
        let Some(conn) = self.conns[index].as_mut() else {
            return Ok(());
        };
        let entry = opcode::Recv::new(
            types::Fd(conn.socket.as_raw_fd()),
            conn.buf.addr(0),
            conn.buf.len() as u32,
        )
        .build()
        .user_data(pack(Kind::Recv, index, conn.generation));
        conn.in_flight = Some(Kind::Recv);
        // SAFETY: the kernel writes into `conn.buf`. Its bytes stay where
        // they are when `conns` grows (only the `KernelBuf`, an address,
        // moves), and no code of ours reads or writes them: we only pass
        // their address. They are freed only with the `Conn`: by `close`,
        // which runs only from this connection's completion, with
        // `in_flight` back to `None`; by `shutdown`, which clears `conns`
        // only after every completion; or never, when the server is dropped
        // with requests in flight (`Server`'s `Drop` leaks `conns`).
        unsafe { self.push(entry) }
    }

    /// Asks the kernel to send what is left of the buffer: `buf[sent..filled]`.
    fn submit_send(&mut self, index: usize) -> io::Result<()> {
        let Some(conn) = self.conns[index].as_mut() else {
            return Ok(());
        };
        // MSG_NOSIGNAL: a peer that has gone away makes the send fail with
        // EPIPE instead of raising SIGPIPE.
        let entry = opcode::Send::new(
            types::Fd(conn.socket.as_raw_fd()),
            conn.buf.addr(conn.sent),
            (conn.filled - conn.sent) as u32,
        )
        .flags(libc::MSG_NOSIGNAL)
        .build()
        .user_data(pack(Kind::Send, index, conn.generation));
        conn.in_flight = Some(Kind::Send);
        // SAFETY: the kernel reads `conn.buf[sent..filled]`; the same
        // argument as for the receive: the bytes do not move, are freed only
        // after this request's completion, and we do not touch them.
        unsafe { self.push(entry) }
    }

    fn on_recv(&mut self, index: usize, res: i32) -> io::Result<()> {
        self.stats.recvs += 1;
        let Some(conn) = self.conns[index].as_mut() else {
            return Ok(());
        };
        if res <= 0 || self.stopping {
            // 0: the peer closed its side, and everything it sent has been
            // echoed (we receive only after sending all of the last
            // message), so we close too. Negative: ECONNRESET and friends.
            return self.close(index);
        }
        conn.filled = res as usize;
        conn.sent = 0;
        self.submit_send(index)
    }

    fn on_send(&mut self, index: usize, res: i32) -> io::Result<()> {
        self.stats.sends += 1;
        let Some(conn) = self.conns[index].as_mut() else {
            return Ok(());
        };
        if res < 0 || self.stopping {
            return self.close(index); // EPIPE, ECONNRESET: the peer is gone
        }
        conn.sent += res as usize;
        if conn.sent < conn.filled {
            // A short send: the socket's buffer had room for part only.
            // Not an error. Send the rest, from where the kernel stopped,
            // before receiving anything new, so bytes keep their order.
            self.stats.short_sends += 1;
            return self.submit_send(index);
        }
        self.submit_recv(index)
    }
    // ANCHOR_END: recv_send

    // ANCHOR: close
    /// Closes a connection. Called only from a completion, so the kernel
    /// holds nothing of it any more and its buffer may be freed.
    fn close(&mut self, index: usize) -> io::Result<()> {
        if let Some(conn) = self.conns[index].take() {
            debug_assert!(
                conn.in_flight.is_none(),
                "a buffer freed while the kernel holds it"
            );
            drop(conn); // close(2) on the socket, free(3) on the buffer
            self.free.push(index);
            self.stats.closed += 1;
        }
        // A descriptor and a slot are free: resume accepting if it paused.
        self.submit_accept()
    }
    // ANCHOR_END: close

    // ANCHOR: event_loop
    /// Submits, waits, handles completions; until SIGINT or SIGTERM.
    fn run(&mut self) -> io::Result<()> {
        while !self.stopping {
            // One system call: hand the kernel every queued request and
            // sleep until at least one completion is there.
            self.enter(1)?;
            self.reap()?;
        }
        self.shutdown()
    }

    /// Handles every completion in the queue.
    fn reap(&mut self) -> io::Result<()> {
        // Copy the completions out first: handling one queues new requests,
        // which needs the ring, which the completion queue borrows.
        let mut batch = std::mem::take(&mut self.batch);
        batch.clear();
        batch.extend(
            self.ring
                .completion()
                .map(|cqe| (cqe.user_data(), cqe.result())),
        );
        for &(user_data, res) in &batch {
            self.in_flight -= 1;
            self.stats.completions += 1;
            self.on_completion(user_data, res)?;
        }
        self.batch = batch;
        Ok(())
    }

    fn on_completion(&mut self, user_data: u64, res: i32) -> io::Result<()> {
        let (kind, index, generation) = unpack(user_data);
        match kind {
            Some(Kind::Accept) => self.on_accept(res),
            Some(Kind::Recv | Kind::Send) => {
                let current = self.conns.get_mut(index).and_then(Option::as_mut);
                match current {
                    Some(conn) if conn.generation == generation => {
                        conn.in_flight = None;
                        if kind == Some(Kind::Recv) {
                            self.on_recv(index, res)
                        } else {
                            self.on_send(index, res)
                        }
                    }
                    // Cannot happen while a connection is closed only with
                    // nothing in flight; counted, so a bug would show.
                    _ => {
                        self.stats.stale += 1;
                        Ok(())
                    }
                }
            }
            Some(Kind::Signal) => {
                eprintln!("signal received: closing every connection");
                self.stopping = true;
                Ok(())
            }
            Some(Kind::Timeout) => {
                self.timeout_armed = false;
                self.submit_accept()
            }
            Some(Kind::Cancel) | None => Ok(()),
        }
    }
    // ANCHOR_END: event_loop

    // ANCHOR: shutdown
    /// Cancels every request still in flight and waits for all their
    /// completions before anything is freed: until then the kernel may still
    /// write into our buffers. The listener closes when the server drops,
    /// with no accept pending on it, so the port is free at once.
    fn shutdown(&mut self) -> io::Result<()> {
        let mut targets = Vec::new();
        if self.accepting {
            targets.push(pack(Kind::Accept, 0, 0));
        }
        if self.timeout_armed {
            targets.push(pack(Kind::Timeout, 0, 0));
        }
        for (index, conn) in self.conns.iter().enumerate() {
            if let Some(Conn {
                in_flight: Some(kind),
                generation,
                ..
            }) = conn
            {
                targets.push(pack(*kind, index, *generation));
            }
        }
        for target in targets {
            let cancel =
                opcode::AsyncCancel::new(target)
                    .build()
                    .user_data(pack(Kind::Cancel, 0, 0));
            // SAFETY: a cancel names its target by `user_data`; it points to
            // no memory of ours.
            unsafe { self.push(cancel) }?;
        }
        while self.in_flight > 0 {
            self.enter(1)?;
            self.reap()?;
        }
        let open = self.live();
        self.conns.clear();
        eprintln!("closed {open} connections");
        Ok(())
    }
    // ANCHOR_END: shutdown
}

#[cfg(target_os = "linux")]
impl Drop for Server {
    /// After a clean `shutdown` nothing is in flight, and the fields drop as
    /// usual. But the server can also be dropped with requests in flight:
    /// when the event loop failed, or while a panic unwinds. Then the kernel
    /// may still write into our buffers, so they are leaked, never freed.
    /// The process is on its way out and gives the memory back as it ends.
    fn drop(&mut self) {
        if self.in_flight > 0 {
            std::mem::forget(std::mem::take(&mut self.conns));
            std::mem::forget(std::mem::replace(&mut self.siginfo, KernelBuf::new(0)));
        }
    }
}
