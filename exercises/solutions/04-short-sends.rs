//! Exercise 04-short-sends, the reference solution.
//!
//! A send completes with the number of bytes the kernel took, and without
//! `MSG_WAITALL` that may be fewer than we offered: as many as fitted in the
//! socket's send buffer. That is not an error. The starter counted the
//! bytes, forgot the rest, and received again over the buffer that still
//! held them. Every short send cut a hole in the echo.
//!
//! With the kernel's default send buffer a send comes up short only when the
//! peer's side is nearly full (a client that stops reading, or a very big
//! message). With `--buffer-size 65536 --sndbuf 4096` the first 64 KiB send
//! of a big message already does: the starter's `sizes` went wrong at byte
//! 32,768 on every run. That is why the exercise runs the server that way.
//!
//! ```text
//! cargo run --bin echo-check -- --exercise 04-short-sends --solution
//! ```

#[cfg(target_os = "linux")]
use std::io;
use std::process::ExitCode;

use clap::Parser;
#[cfg(target_os = "linux")]
use io_uring::{IoUring, opcode, squeue, types};
#[cfg(target_os = "linux")]
use nix::libc;
#[cfg(target_os = "linux")]
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
#[cfg(target_os = "linux")]
use std::ptr::NonNull;
#[cfg(target_os = "linux")]
use std::time::Duration;
use uring_echo_book::cli::CommonArgs;

/// Lesson 04's io_uring echo server, compact, the bug fixed (Linux).
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,

    /// Each connection's buffer, in bytes: what one receive can bring and
    /// one send must get out.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=(1 << 20)))]
    buffer_size: u32,

    /// SO_SNDBUF for every connection, in bytes (default: the kernel's).
    /// Smaller than the buffer, it makes the kernel take part of a send.
    #[arg(long, value_name = "BYTES")]
    sndbuf: Option<usize>,
}

#[cfg(not(target_os = "linux"))]
fn main() -> ExitCode {
    let _ = Args::parse();
    eprintln!("error: this exercise needs Linux (io_uring)");
    ExitCode::FAILURE
}

#[cfg(target_os = "linux")]
fn main() -> ExitCode {
    let args = Args::parse();
    uring_echo_book::limits::raise_open_file_limit_or_warn();
    // Ctrl-C ends the process at once, requests in flight or not; the kernel
    // tears the ring down after us. Lesson 04 shows the careful way out:
    // the signal arrives through the ring, and what is in flight is cancelled.
    if let Err(e) = uring_echo_book::signals::exit_on_signal() {
        eprintln!("error: cannot install the SIGINT/SIGTERM handler: {e}");
        return ExitCode::FAILURE;
    }
    let mut server = match Server::new(&args) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let sndbuf = args
        .sndbuf
        .map_or("the kernel's".into(), |b| format!("{b} B"));
    eprintln!("buffers of {} B, SO_SNDBUF {sndbuf}", args.buffer_size);
    let Err(e) = server.run();
    eprintln!("error: the event loop failed: {e}");
    // The kernel may still write into our buffers: never free them. The
    // process is exiting, which takes the ring down first.
    std::mem::forget(server);
    ExitCode::FAILURE
}

// A request's 64-bit `user_data` comes back in its completion, untouched:
// kind in the top byte, then a 24-bit generation, then the connection's
// slot. The generation tells a late completion for a closed connection from
// one for the new connection in the same slot.
#[cfg(target_os = "linux")]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Accept = 1,
    Recv = 2,
    Send = 3,
}

#[cfg(target_os = "linux")]
fn pack(kind: Kind, index: usize, generation: u32) -> u64 {
    ((kind as u64) << 56) | (u64::from(generation & 0xff_ffff) << 32) | (index as u64 & 0xffff_ffff)
}

#[cfg(target_os = "linux")]
fn unpack(user_data: u64) -> (Option<Kind>, usize, u32) {
    let kind = match user_data >> 56 {
        1 => Some(Kind::Accept),
        2 => Some(Kind::Recv),
        3 => Some(Kind::Send),
        _ => None,
    };
    let generation = ((user_data >> 32) & 0xff_ffff) as u32;
    (kind, (user_data & 0xffff_ffff) as usize, generation)
}

/// One client. It has exactly one request in the kernel at any time, a
/// receive or a send, so it is closed only from a completion, when the
/// kernel holds nothing of it.
#[cfg(target_os = "linux")]
struct Conn {
    socket: OwnedFd,
    generation: u32,
    /// The kernel receives into it and sends from it, through its address.
    buf: KernelBuf,
    /// `buf[..filled]` arrived; `buf[..sent]` of it has gone back.
    filled: usize,
    sent: usize,
}

/// Heap memory lent to the kernel, as in lesson 04: reached only through
/// a raw pointer. A `Box<[u8]>` would keep the bytes in place when `conns`
/// grows and moves the `Conn`, but each move of a `Box` tells the compiler
/// that the `Box` is the only way to those bytes, while the kernel may be
/// writing into them. We never make a reference to them either: the
/// server only hands their address to the kernel.
#[cfg(target_os = "linux")]
struct KernelBuf {
    ptr: NonNull<u8>,
    len: usize,
}

#[cfg(target_os = "linux")]
impl KernelBuf {
    /// `len` zeroed bytes on the heap, out of their `Box` for good.
    fn new(len: usize) -> KernelBuf {
        let raw: *mut [u8] = Box::into_raw(vec![0u8; len].into_boxed_slice());
        let ptr = NonNull::new(raw.cast::<u8>()).expect("a Box is never null");
        KernelBuf { ptr, len }
    }

    /// The address of byte `at`, for the kernel; `wrapping_add` is the
    /// safe form of pointer arithmetic, and the assert keeps it inside.
    fn addr(&self, at: usize) -> *mut u8 {
        assert!(at <= self.len, "an address outside the buffer");
        self.ptr.as_ptr().wrapping_add(at)
    }
}

#[cfg(target_os = "linux")]
impl Drop for KernelBuf {
    fn drop(&mut self) {
        let raw = std::ptr::slice_from_raw_parts_mut(self.ptr.as_ptr(), self.len);
        // SAFETY: `raw` is what `Box::into_raw` returned in `new`, same
        // address and length, and only here is it turned back into a `Box`:
        // once, as the `KernelBuf` goes away.
        drop(unsafe { Box::from_raw(raw) });
    }
}

#[cfg(target_os = "linux")]
struct Server {
    ring: IoUring,
    listener: std::net::TcpListener,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    next_generation: u32,
    buffer_size: usize,
    /// An accept is in flight. Off while accepting pauses for lack of
    /// descriptors; the next close resumes it.
    accepting: bool,
}

#[cfg(target_os = "linux")]
impl Server {
    fn new(args: &Args) -> Result<Server, String> {
        use uring_echo_book::uring::{self, Needed};
        // One request per connection plus the accept can be waiting in the
        // completion queue. 4096 is plenty for the checks; past that the
        // kernel keeps the overflow aside (IORING_FEAT_NODROP, Linux 5.5).
        let mut builder: io_uring::Builder = IoUring::builder();
        builder.setup_cqsize(4096);
        // `build` turns ENOSYS, EPERM and ENOMEM into one line saying why.
        let ring = uring::build(&builder, 256)?;
        let needed = [
            (opcode::Accept::CODE, "IORING_OP_ACCEPT", "5.5"),
            (opcode::Recv::CODE, "IORING_OP_RECV", "5.6"),
            (opcode::Send::CODE, "IORING_OP_SEND", "5.6"),
        ];
        let needed = needed.map(|(code, name, since)| Needed { code, name, since });
        uring::require(&ring, &needed)?;

        let addr = args.common.addr;
        let listener = uring_echo_book::listen::bind_or_explain(addr)?;
        if let Some(size) = args.sndbuf {
            // Accepted sockets inherit the listener's buffer sizes.
            socket2::SockRef::from(&listener)
                .set_send_buffer_size(size)
                .map_err(|e| format!("cannot set SO_SNDBUF: {e}"))?;
        }
        let local = listener
            .local_addr()
            .map_err(|e| format!("cannot read the listening address: {e}"))?;
        let mut server = Server {
            ring,
            listener,
            conns: Vec::new(),
            free: Vec::new(),
            next_generation: 0,
            buffer_size: args.buffer_size as usize,
            accepting: false,
        };
        server.submit_accept().map_err(|e| e.to_string())?;
        uring_echo_book::listen::announce(local);
        Ok(server)
    }

    /// Queues one request; when the submission queue is full, hands what is
    /// queued to the kernel first.
    ///
    /// # Safety
    ///
    /// The memory `entry` points to stays allocated and where it is, and we
    /// neither read nor write it, until the request's completion has been
    /// reaped: the kernel holds its address, not a borrow.
    unsafe fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
        // SAFETY: the crate's `push` asks that the entry's memory stay valid
        // for the whole operation, which is what our caller promises.
        while unsafe { self.ring.submission().push(&entry) }.is_err() {
            self.enter(0)?;
        }
        Ok(())
    }

    /// How many failed `io_uring_enter` calls in a row `enter` tries again.
    const ENTER_RETRIES: u32 = 1000;

    /// One `io_uring_enter`: submits what is queued and, with `want` 1,
    /// waits for a completion. As in lesson 04: EINTR (a signal came),
    /// EAGAIN (no kernel memory for a request) and EBUSY (older kernels,
    /// completions backed up) mean the kernel took nothing, so try again,
    /// a bounded number of times.
    fn enter(&mut self, want: usize) -> io::Result<()> {
        let mut failures = 0;
        loop {
            let e = match self.ring.submit_and_wait(want) {
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

    /// Submits, sleeps until completions arrive, handles them; forever.
    fn run(&mut self) -> io::Result<std::convert::Infallible> {
        let mut batch = Vec::new();
        loop {
            self.enter(1)?;
            // Copied out first: handling a completion queues new requests,
            // which needs the ring that the completion queue borrows.
            batch.clear();
            batch.extend(self.ring.completion().map(|c| (c.user_data(), c.result())));
            for &(user_data, res) in &batch {
                let (kind, index, generation) = unpack(user_data);
                let current = self.conns.get(index).and_then(Option::as_ref);
                let fresh = current.is_some_and(|c| c.generation == generation);
                match kind {
                    Some(Kind::Accept) => self.on_accept(res)?,
                    Some(Kind::Recv) if fresh => self.on_recv(index, res)?,
                    Some(Kind::Send) if fresh => self.on_send(index, res)?,
                    _ => eprintln!("a stale completion ({user_data:#x}): a bug"),
                }
            }
        }
    }

    fn submit_accept(&mut self) -> io::Result<()> {
        let fd = types::Fd(self.listener.as_raw_fd());
        let entry = opcode::Accept::new(fd, std::ptr::null_mut(), std::ptr::null_mut())
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(pack(Kind::Accept, 0, 0));
        // SAFETY: the null pointers ask for no peer address: the request
        // points to no memory of ours.
        unsafe { self.push(entry) }?;
        self.accepting = true;
        Ok(())
    }

    fn on_accept(&mut self, res: i32) -> io::Result<()> {
        self.accepting = false;
        if res < 0 {
            let e = io::Error::from_raw_os_error(-res);
            eprintln!("accept failed: {e}");
            if matches!(-res, libc::EMFILE | libc::ENFILE) && self.conns.len() > self.free.len() {
                // Out of descriptors: accepting again now would fail again
                // at once, forever. The next close resumes it.
                return Ok(());
            }
            return self.submit_accept();
        }
        // SAFETY: a successful accept's result is a new descriptor that
        // nothing else in this process knows, so `OwnedFd` may own it.
        let socket = unsafe { OwnedFd::from_raw_fd(res) };
        self.next_generation = (self.next_generation + 1) & 0xff_ffff;
        let conn = Conn {
            socket,
            generation: self.next_generation,
            buf: KernelBuf::new(self.buffer_size),
            filled: 0,
            sent: 0,
        };
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                self.conns.push(None);
                self.conns.len() - 1
            }
        };
        self.conns[index] = Some(conn);
        self.submit_recv(index)?;
        self.submit_accept()
    }

    /// Receives into the connection's whole buffer.
    fn submit_recv(&mut self, index: usize) -> io::Result<()> {
        let Some(conn) = self.conns[index].as_mut() else {
            return Ok(());
        };
        let fd = types::Fd(conn.socket.as_raw_fd());
        let entry = opcode::Recv::new(fd, conn.buf.addr(0), conn.buf.len as u32)
            .build()
            .user_data(pack(Kind::Recv, index, conn.generation));
        // SAFETY: the kernel writes into `conn.buf`. Its bytes stay put when
        // `conns` grows (only the `KernelBuf`, an address, moves); they are
        // freed only with the `Conn`, which `close` drops only from a
        // completion, when this connection's one request has come back; and
        // we never read or write them ourselves.
        unsafe { self.push(entry) }
    }

    /// Sends what has not gone back yet: `buf[sent..filled]`.
    fn submit_send(&mut self, index: usize) -> io::Result<()> {
        let Some(conn) = self.conns[index].as_mut() else {
            return Ok(());
        };
        // MSG_NOSIGNAL: a peer that has gone makes the send fail with EPIPE
        // instead of raising SIGPIPE, which would end the server.
        let entry = opcode::Send::new(
            types::Fd(conn.socket.as_raw_fd()),
            conn.buf.addr(conn.sent),
            (conn.filled - conn.sent) as u32,
        )
        .flags(libc::MSG_NOSIGNAL)
        .build()
        .user_data(pack(Kind::Send, index, conn.generation));
        // SAFETY: the kernel reads `conn.buf[sent..filled]`; as for the
        // receive, those bytes stay put, are freed only after this request's
        // completion, and we do not touch them.
        unsafe { self.push(entry) }
    }

    fn on_recv(&mut self, index: usize, res: i32) -> io::Result<()> {
        let Some(conn) = self.conns[index].as_mut() else {
            return Ok(());
        };
        if res <= 0 {
            // 0: the peer closed its side, and everything it sent has been
            // echoed. Negative: ECONNRESET and friends. Either way, done.
            return self.close(index);
        }
        conn.filled = res as usize;
        conn.sent = 0;
        self.submit_send(index)
    }

    // ANCHOR: solution
    /// The send finished: `res` is how many bytes the kernel took, or an error.
    fn on_send(&mut self, index: usize, res: i32) -> io::Result<()> {
        let Some(conn) = self.conns[index].as_mut() else {
            return Ok(());
        };
        if res < 0 {
            return self.close(index); // EPIPE, ECONNRESET: the peer is gone
        }
        conn.sent += res as usize;
        if conn.sent < conn.filled {
            // A short send: the socket's send buffer had room for part of
            // the message only. Send the rest, from where the kernel
            // stopped, before receiving anything new: a receive now would
            // write over the bytes not yet sent. One request at a time per
            // connection also keeps the bytes in order, and is the
            // backpressure: while this send waits for room, nothing more is
            // read from this client.
            return self.submit_send(index);
        }
        self.submit_recv(index)
    }
    // ANCHOR_END: solution

    /// Called only from a completion, so the kernel holds nothing of the
    /// connection any more: its socket may be closed and its buffer freed.
    fn close(&mut self, index: usize) -> io::Result<()> {
        if self.conns[index].take().is_some() {
            self.free.push(index);
        }
        if self.accepting {
            return Ok(());
        }
        self.submit_accept() // a descriptor is free again
    }
}

#[cfg(target_os = "linux")]
impl Drop for Server {
    /// The server is dropped with requests in flight only while a panic
    /// unwinds (`run` never returns `Ok`, and `main` forgets the server
    /// when it fails). Leak the buffers, rather than free memory the
    /// kernel may still write into.
    fn drop(&mut self) {
        std::mem::forget(std::mem::take(&mut self.conns));
    }
}
