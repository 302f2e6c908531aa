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
use std::{io, ptr::NonNull, sync::atomic::AtomicU16, sync::atomic::Ordering};

#[cfg(target_os = "linux")]
use io_uring::{IoUring, squeue, types};

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
    // share an opcode), so this tries one. A kernel that has it (6.0) has
    // multishot accept and buffer rings (5.19) too.
    uring::check_multishot_recv(&mut ring)?;
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
        ring.submit()?;
    }
}

/// Hands the kernel every queued request, waits for at least one
/// completion, and returns all there are: (user_data, result, flags).
/// Copied out, because handling one pushes new requests, and that needs
/// the ring the completion queue borrows.
#[cfg(target_os = "linux")]
pub fn wait(ring: &mut IoUring) -> io::Result<Vec<(u64, i32, u32)>> {
    match ring.submit_and_wait(1) {
        Ok(_) => {}
        // EINTR: a signal; EBUSY: the completion queue overflowed.
        Err(e) if matches!(e.raw_os_error(), Some(nix::libc::EINTR | nix::libc::EBUSY)) => {}
        Err(e) => return Err(e),
    }
    let completions = ring.completion();
    Ok(completions
        .map(|c| (c.user_data(), c.result(), c.flags()))
        .collect())
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

/// `count` buffers of `size` bytes, and the ring through which we hand
/// them to the kernel.
#[cfg(target_os = "linux")]
pub struct BufRing {
    /// The ring's entries, page-aligned as the kernel requires; the ring's
    /// tail counter shares the first entry.
    entries: NonNull<types::BufRingEntry>,
    entries_bytes: usize,
    /// Our next entry; published to the kernel as the tail. It wraps at
    /// 65536, as the kernel's counter does.
    tail: u16,
    mask: u16,
    /// The buffers, in one mapping. Only raw pointers into it exist: the
    /// kernel writes into the buffers in the ring while we read ours.
    memory: NonNull<u8>,
    memory_bytes: usize,
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
            // kernel returns it page-aligned and zero-filled. It is unmapped
            // in `drop`, after the io_uring that used it is gone.
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
        let entries_bytes = count * std::mem::size_of::<types::BufRingEntry>();
        let memory_bytes = count * size as usize;
        let mut ring = BufRing {
            entries: map(entries_bytes)?.cast(),
            entries_bytes,
            tail: 0,
            mask: (count - 1) as u16,
            memory: map(memory_bytes)?.cast(),
            memory_bytes,
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
        // SAFETY: the entries stay mapped until `drop`. The kernel reads them,
        // and writes into the buffers they name, only for receives in flight.
        // While the server runs, its field order drops the io_uring (which
        // ends every request and unregisters the ring) before this ring; if
        // set-up fails after this call, nothing has been submitted yet.
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
        // SAFETY: `slot < count`, so the entry is inside the mapping, and the
        // kernel reads only entries below the published tail, which this one
        // is not until the store below.
        let entry = unsafe { &mut *self.entries.as_ptr().add(slot) };
        entry.set_addr(self.addr(bid) as u64);
        entry.set_len(self.size as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: `BufRingEntry::tail` points at the ring's u16 tail field,
        // which the kernel reads concurrently; AtomicU16 has u16's layout.
        // The release store makes the entry visible before the tail does.
        unsafe {
            let tail = types::BufRingEntry::tail(self.entries.as_ptr()) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
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
    fn drop(&mut self) {
        // SAFETY: both mappings came from `mmap_anonymous` with these
        // lengths, and no receive can still write into them: either the
        // io_uring that knew them was dropped first (the server's field
        // order), or set-up failed before any request was submitted.
        unsafe {
            let _ = nix::sys::mman::munmap(self.entries.cast(), self.entries_bytes);
            let _ = nix::sys::mman::munmap(self.memory.cast(), self.memory_bytes);
        }
    }
}
