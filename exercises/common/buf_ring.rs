//! What chapter 05's exercise servers share: setting up, submitting and
//! waiting as in lesson 04, and the registered buffer ring (lesson 05's
//! `Pool`, without the per-connection queues).
//!
//! The starters and the solutions include this file with
//! `#[path = "../common/buf_ring.rs"] mod buf_ring;`. Nothing in it is part
//! of an exercise: the bugs to find are in the servers.
//!
//! ```text
//!      ring entries (16 bytes each, read by the kernel)     buffers (ours)
//!    +-------+-------+-------+-------+-------+-------+    +----+----+----+--
//!    | tail  |       |       |       |       |       |    | b0 | b1 | b2 | ..
//!    | b3    | b0    | b5    | b1    |       |       |    +----+----+----+--
//!    +-------+-------+-------+-------+-------+-------+
//!        ^ head: the kernel takes       ^ tail: we add
//! ```
//!
//! A buffer whose id is between head and tail is the kernel's: it may fill
//! it at any moment. From the completion that names it until we write its
//! id at the tail again, the buffer is ours, and the kernel will not touch it.

#[cfg(target_os = "linux")]
use std::{io, ptr::NonNull, sync::atomic::AtomicU16, sync::atomic::Ordering, time::Duration};

#[cfg(target_os = "linux")]
use io_uring::{IoUring, squeue};

/// Lesson 05's probe for multishot receive, the very file the lesson uses.
#[cfg(target_os = "linux")]
#[path = "../../src/bin/05_uring_multishot/probe.rs"]
mod probe;

/// Sets up what the server needs, or says in one line why it cannot: the
/// open-file limit raised, SIGINT/SIGTERM ending the process (the kernel
/// then tears the ring down), an io_uring of `entries` submission entries
/// (and twice as many completion entries, the kernel's default), a ring of
/// `count` buffers of `size` bytes registered with it as buffer group
/// `group`, and the listening socket.
#[cfg(target_os = "linux")]
pub fn setup(
    addr: std::net::SocketAddr,
    entries: u32,
    count: u16,
    size: u32,
    group: u16,
) -> Result<(IoUring, BufRing, std::net::TcpListener), String> {
    use uring_echo_book::{limits, signals, uring};
    limits::raise_open_file_limit_or_warn();
    signals::exit_on_signal().map_err(|e| format!("cannot handle SIGINT/SIGTERM: {e}"))?;
    let mut ring = uring::build(&IoUring::builder(), entries)?;
    // The opcode probe cannot tell a multishot receive from a plain one (they
    // share an opcode), so this tries one, with lesson 05's own probe. A
    // kernel that has it (6.0) has multishot accept and buffer rings (5.19) too.
    probe::check_multishot_recv(&mut ring)?;
    let buffers = BufRing::new(count, size)?;
    buffers.register(&ring, group)?;
    let listener = uring_echo_book::listen::bind_or_explain(addr)?;
    Ok((ring, buffers, listener))
}

/// Queues one request; if the submission queue is full, hands the queue to
/// the kernel first, which empties it.
///
/// # Safety
///
/// Whatever `entry` points at must stay valid, and untouched by us where
/// the kernel writes, until the request's last completion.
#[cfg(target_os = "linux")]
pub unsafe fn push(ring: &mut IoUring, entry: &squeue::Entry) -> io::Result<()> {
    loop {
        // SAFETY: passed on to our caller, above.
        if unsafe { ring.submission().push(entry) }.is_ok() {
            return Ok(());
        }
        enter(ring, 0)?;
    }
}

/// Hands the kernel every queued request, waits for at least one
/// completion, and returns all there are: (user_data, result, flags).
/// Copied out, because handling one pushes new requests, and that needs
/// the ring the completion queue borrows.
#[cfg(target_os = "linux")]
pub fn wait(ring: &mut IoUring) -> io::Result<Vec<(u64, i32, u32)>> {
    enter(ring, 1)?;
    let completions = ring.completion();
    Ok(completions
        .map(|c| (c.user_data(), c.result(), c.flags()))
        .collect())
}

/// How many failed `io_uring_enter` calls in a row `enter` tries again.
#[cfg(target_os = "linux")]
const ENTER_RETRIES: u32 = 1000;

/// One `io_uring_enter`, as in lesson 04: hands the kernel every queued
/// request and, with `want` 1, sleeps until at least one completion is
/// there.
///
/// Three errors mean "not now" rather than "broken". With each, the kernel
/// took none of the queued requests, so trying again repeats nothing and
/// loses nothing: EINTR (a signal interrupted the sleep; tried again at
/// once), EAGAIN (the kernel could not allocate memory for a request right
/// now) and EBUSY (the same, on older kernels); after those two we give the
/// kernel a millisecond first. After `ENTER_RETRIES` failures in a row (a
/// second of EAGAIN), the error ends the server rather than a loop that
/// spins forever.
#[cfg(target_os = "linux")]
fn enter(ring: &mut IoUring, want: usize) -> io::Result<()> {
    use nix::libc::{EAGAIN, EBUSY, EINTR};
    let mut failures = 0;
    loop {
        let e = match ring.submit_and_wait(want) {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        match e.raw_os_error() {
            _ if failures == ENTER_RETRIES => return Err(e),
            Some(EINTR) => {}
            Some(EAGAIN | EBUSY) => std::thread::sleep(Duration::from_millis(1)),
            _ => return Err(e),
        }
        failures += 1;
    }
}

/// `--buffers`: the kernel's rule for a buffer ring is a power of two, at
/// most 32768 entries.
pub fn parse_count(text: &str) -> Result<u16, String> {
    let n: u32 = text.parse().map_err(|e| format!("{e}"))?;
    if n == 0 || n > 32768 || !n.is_power_of_two() {
        return Err("a power of two from 1 to 32768 (the kernel's rule for buffer rings)".into());
    }
    Ok(n as u16)
}

/// One entry of the ring, laid out as the kernel's `struct io_uring_buf`:
/// where a buffer is, how long it is, and its id. In entry 0 the last two
/// bytes are not `resv` but the ring's tail: the kernel reads them there.
#[cfg(target_os = "linux")]
#[repr(C)]
struct RingEntry {
    addr: u64,
    len: u32,
    bid: u16,
    resv: u16,
}

#[cfg(target_os = "linux")]
const _: () = assert!(std::mem::size_of::<RingEntry>() == 16);

/// `count` buffers of `size` bytes, and the ring through which we hand
/// them to the kernel.
#[cfg(target_os = "linux")]
pub struct BufRing {
    /// The ring's entries, page-aligned as the kernel requires; the ring's
    /// tail counter shares the first entry. Only raw pointers into it
    /// exist: once the ring is registered, the kernel reads it at any
    /// moment, tail included.
    entries: NonNull<RingEntry>,
    entries_bytes: usize,
    /// Our next entry; published to the kernel as the tail. It wraps at
    /// 65536, as the kernel's counter does.
    tail: u16,
    mask: u16,
    /// The buffers, in one mapping, never unmapped (see `drop`). Only raw
    /// pointers into it exist: the kernel writes into the buffers in the
    /// ring while we read ours.
    memory: NonNull<u8>,
    size: usize,
    count: usize,
    /// Buffers we hold: named by a completion, not given back yet.
    out: usize,
}

#[cfg(target_os = "linux")]
impl BufRing {
    /// Maps the ring and the buffers, and puts every buffer in the ring.
    fn new(count: u16, size: u32) -> Result<BufRing, String> {
        use nix::sys::mman::{MapFlags, ProtFlags, mmap_anonymous};
        let map = |bytes: usize| {
            let length = std::num::NonZeroUsize::new(bytes).expect("at least one buffer");
            // SAFETY: a fresh private anonymous mapping aliases nothing; the
            // kernel returns it page-aligned and zero-filled. `drop` unmaps
            // the ring entries and leaves the buffers mapped (see there).
            unsafe {
                mmap_anonymous(
                    None,
                    length,
                    ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                    MapFlags::MAP_PRIVATE,
                )
            }
            .map_err(|e| format!("cannot map {bytes} bytes for the buffer ring: {e}"))
        };
        let count = usize::from(count);
        let entries_bytes = count * std::mem::size_of::<RingEntry>();
        let mut ring = BufRing {
            entries: map(entries_bytes)?.cast(),
            entries_bytes,
            tail: 0,
            mask: (count - 1) as u16,
            memory: map(count * size as usize)?.cast(),
            size: size as usize,
            count,
            out: count,
        };
        for bid in 0..count {
            ring.give_back(bid as u16);
        }
        Ok(ring)
    }

    /// Registers the ring with `uring` as buffer group `group`.
    fn register(&self, uring: &IoUring, group: u16) -> Result<(), String> {
        // SAFETY: the crate asks that the `count` entries at this address
        // stay valid until the group is unregistered or the io_uring is
        // destroyed. They are mapped, `count` long, until `drop`, and what
        // the kernel needs is their pages, not our mapping: it pins them
        // here and reads the ring through its own mapping of them until it
        // lets go (at unregistering, or when the io_uring is freed, which
        // is after its descriptor is closed, not at the close). Our
        // unmapping them first leaves the kernel's reads valid. The
        // buffers the entries point at are never unmapped (see `drop`).
        unsafe {
            uring.submitter().register_buf_ring_with_flags(
                self.entries.as_ptr() as u64,
                self.count as u16,
                group,
                0,
            )
        }
        .map_err(|e| uring_echo_book::uring::explain_buf_ring_error(&e))
    }

    /// A completion named a buffer: the kernel took it from the ring, and it
    /// is ours until [`give_back`](Self::give_back).
    pub fn taken(&mut self) {
        self.out += 1;
    }

    /// Hands buffer `bid` back to the kernel: writes an entry at the tail,
    /// then publishes the new tail.
    pub fn give_back(&mut self, bid: u16) {
        let slot = usize::from(self.tail & self.mask);
        let addr = self.addr(bid) as u64;
        // SAFETY: `slot < count`, so the entry lies inside the mapping. We
        // write its fields through raw pointers, never through a `&mut` to
        // the entry: one to entry 0 would also cover the ring's tail (its
        // last two bytes), which the kernel reads at any moment. The kernel
        // reads the other fields of this entry only once a published tail
        // covers it, which the store below does. Nor is it still reading
        // this slot's old entry: the kernel's part of the ring, from head
        // to tail, holds each buffer we gave it at most once and not `bid`
        // (ours until now), so it spans at most `count - 1` slots behind
        // the tail, and the slot at the tail is not among them.
        unsafe {
            let entry = self.entries.as_ptr().add(slot);
            (&raw mut (*entry).addr).write(addr);
            (&raw mut (*entry).len).write(self.size as u32);
            (&raw mut (*entry).bid).write(bid);
        }
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail is the u16 in the last two bytes of entry 0,
        // inside the mapping and 2-aligned (the mapping is page-aligned);
        // `AtomicU16` has the size and alignment of a u16. The kernel reads
        // the tail concurrently, so our only accesses to it are atomic
        // stores like this one, and Release makes the entry written above visible to the
        // kernel before the tail that covers it.
        unsafe {
            AtomicU16::from_ptr(&raw mut (*self.entries.as_ptr()).resv)
                .store(self.tail, Ordering::Release);
        }
        self.out -= 1;
    }

    /// Where buffer `bid` starts.
    pub fn addr(&self, bid: u16) -> *const u8 {
        assert!(
            usize::from(bid) < self.count,
            "buffer id {bid} out of range"
        );
        // SAFETY: `bid < count`, so the buffer lies inside the mapping.
        unsafe { self.memory.as_ptr().add(usize::from(bid) * self.size) }
    }

    /// Buffers in the ring as far as we know: the kernel may have taken
    /// some whose completions we have not read yet.
    pub fn available(&self) -> usize {
        self.count - self.out
    }
}

#[cfg(target_os = "linux")]
impl Drop for BufRing {
    /// Unmaps the ring entries, and leaves the buffers mapped.
    ///
    /// The kernel writes into a buffer while a receive is in flight, and
    /// neither dropping the io_uring (its teardown is deferred) nor
    /// unregistering the ring stops a receive that has already picked its
    /// buffer. So the buffers could be unmapped only once no receive can be
    /// in flight, and these servers never get there: Ctrl-C ends the
    /// process from another thread (`signals::exit_on_signal`), and an
    /// error or a panic in the event loop leaves receives armed. The
    /// buffers go back to the system when the process ends, which follows
    /// at once in every case (also when set-up fails).
    fn drop(&mut self) {
        // SAFETY: the mapping came from `mmap_anonymous` with this length,
        // and only raw pointers into it exist. The kernel reads the ring
        // through its own mapping of the pages it pinned at registration,
        // never through ours (see `register`), so unmapping our view is
        // safe whether or not the ring is still registered.
        let _ = unsafe { nix::sys::mman::munmap(self.entries.cast(), self.entries_bytes) };
    }
}
