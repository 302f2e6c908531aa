//! The core, second part: the pool of buffers we share with the kernel,
//! and the two registered rings through which we hand them over. Every
//! `unsafe` block of the buffer ring is in this file, and so are the tests
//! that read the rings back as the kernel would, without a kernel.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::IoUring;

// ANCHOR: pool
/// The buffer groups: two rings, registered under these ids. A receive
/// names one to say "take a buffer from this one". Every receive may draw
/// from the open pool; only exact one-buffer receives, for connections that
/// hold no buffer, draw from the reserve (see `reserve_recv`, in
/// `fairness.rs`).
pub(crate) const OPEN: u16 = 0;
pub(crate) const RESERVE: u16 = 1;

/// "No buffer": the end of a connection's queue of buffers.
pub(crate) const NONE: u16 = u16::MAX;

// ANCHOR: ring_entry
/// One entry of a buffer ring, laid out as the kernel's `struct io_uring_buf`:
/// where a buffer is, how long it is, and its id. In entry 0 the last two
/// bytes are not `resv` but the ring's tail: the kernel reads them there.
#[repr(C)]
struct RingEntry {
    addr: u64,
    len: u32,
    bid: u16,
    resv: u16,
}

const _: () = assert!(std::mem::size_of::<RingEntry>() == 16);
// ANCHOR_END: ring_entry

/// A registered buffer ring: the entries through which we hand one group's
/// buffers to the kernel.
///
/// ```text
///      ring entries (16 bytes each, read by the kernel)     buffers (ours)
///    +-------+-------+-------+-------+-------+-------+    +----+----+----+--
///    | tail  |       |       |       |       |       |    | b0 | b1 | b2 | ..
///    | b3    | b0    | b5    | b1    |       |       |    +----+----+----+--
///    +-------+-------+-------+-------+-------+-------+
///        ^ head: the kernel takes       ^ tail: we add
/// ```
///
/// An id between head and tail is the kernel's: it may fill that buffer at
/// any moment. From the completion that names a buffer until we write its id
/// at the tail again, the buffer is ours, and the kernel will not touch it.
struct BufRing {
    group: u16,
    /// Page-aligned memory from an anonymous mmap, as the kernel requires,
    /// `entries` long (a power of two). Only raw pointers into it exist: the
    /// kernel reads it at any time, tail included.
    entries: NonNull<RingEntry>,
    count: usize,
    /// Where our next returned buffer goes. Published to the kernel as the
    /// ring's tail; it wraps at 65536, as the kernel's own counter does.
    tail: u16,
    mask: u16,
}

impl BufRing {
    /// A ring with room for `buffers` entries, rounded up to a power of two.
    fn new(group: u16, buffers: usize) -> Result<BufRing, String> {
        let count = buffers.next_power_of_two();
        let bytes = count * std::mem::size_of::<RingEntry>();
        Ok(BufRing {
            group,
            entries: map_anonymous(bytes, true)?.cast(),
            count,
            tail: 0,
            mask: (count - 1) as u16,
        })
    }

    fn register(&self, ring: &IoUring) -> io::Result<()> {
        // SAFETY: the entries are mapped, `count` long, until `drop`. The
        // kernel pins their pages when it registers them and reads them
        // through its own mapping until it lets go (at `unregister`, or when
        // the ring is torn down), so even our unmapping them first would
        // leave the kernel's reads valid.
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                self.entries.as_ptr() as u64,
                self.count as u16,
                self.group,
                0,
            )
        }
    }

    // ANCHOR: publish
    /// Writes an entry at the tail, then publishes the new tail.
    fn publish(&mut self, addr: *const u8, len: u32, bid: u16) {
        let slot = usize::from(self.tail & self.mask);
        // SAFETY: `slot < count`, so the entry lies inside the mapping. We
        // write its fields through raw pointers, never through a `&mut
        // RingEntry`: a reference to entry 0 would also cover the tail, which
        // the kernel reads concurrently. The kernel reads this entry's fields
        // only once a published tail covers it, which the store below does.
        unsafe {
            let entry = self.entries.as_ptr().add(slot);
            (&raw mut (*entry).addr).write(addr as u64);
            (&raw mut (*entry).len).write(len);
            (&raw mut (*entry).bid).write(bid);
        }
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail is the u16 in the last two bytes of entry 0,
        // inside the mapping and 2-aligned; an AtomicU16 has the size and
        // alignment of a u16. The kernel reads it concurrently, so we store
        // it atomically, and with Release, so that the entry written above
        // is visible to the kernel before the tail that covers it.
        unsafe {
            AtomicU16::from_ptr(&raw mut (*self.entries.as_ptr()).resv)
                .store(self.tail, Ordering::Release);
        }
    }
    // ANCHOR_END: publish
}

impl Drop for BufRing {
    fn drop(&mut self) {
        let bytes = self.count * std::mem::size_of::<RingEntry>();
        // SAFETY: the mapping came from `map_anonymous` with this length.
        // The kernel reads the ring through its own pinned pages, never
        // through this mapping (see `register`), so unmapping our view is
        // safe whether or not the ring is still registered.
        let _ = unsafe { nix::sys::mman::munmap(self.entries.cast(), bytes) };
    }
}

/// The pool: `count` buffers of `size` bytes in one mapping, handed to the
/// kernel through two rings. Buffers `0..open` go through the OPEN ring,
/// the rest (a quarter) through the RESERVE ring.
pub(crate) struct Pool {
    rings: [BufRing; 2],
    /// The buffers. Only raw pointers into them exist: the kernel writes into
    /// buffers that are in a ring while we read ours, and a Rust reference
    /// to the whole block would claim that nobody else writes to it.
    memory: NonNull<u8>,
    memory_bytes: usize,
    size: usize,
    pub(crate) count: usize,
    pub(crate) open: usize,
    /// For each buffer: the bytes received into it, and the next buffer in
    /// the same connection's send queue. Allocated once, at start-up.
    pub(crate) len: Box<[u32]>,
    pub(crate) next: Box<[u16]>,
    /// Buffers of each group that we hold: received, not yet given back.
    out: [usize; 2],
    /// Reserve buffers promised to one-buffer receives that are armed: each
    /// will take at most one, so the reserve is never overdrawn.
    pub(crate) promised: usize,
}

impl Pool {
    pub(crate) fn new(count: u16, size: u32) -> Result<Pool, String> {
        let count = usize::from(count);
        let size = size as usize;
        let reserve = (count / 4).max(1);
        let open = count - reserve;
        let memory_bytes = count * size;
        let mut pool = Pool {
            rings: [BufRing::new(OPEN, open)?, BufRing::new(RESERVE, reserve)?],
            // The buffers are mapped but not populated: a page of them costs
            // memory only once the kernel first receives into it.
            memory: map_anonymous(memory_bytes, false)?,
            memory_bytes,
            size,
            count,
            open,
            len: vec![0; count].into_boxed_slice(),
            next: vec![NONE; count].into_boxed_slice(),
            out: [open, reserve],
            promised: 0,
        };
        // Every buffer starts out in its ring, the kernel's to fill.
        for bid in 0..count {
            pool.give_back(bid as u16);
        }
        Ok(pool)
    }

    /// Registers both rings with the kernel side of `ring`.
    pub(crate) fn register(&self, ring: &IoUring) -> io::Result<()> {
        self.rings.iter().try_for_each(|r| r.register(ring))
    }

    /// Unregisters both rings: after this the kernel keeps no reference to
    /// them. Called at the end of `shutdown`, when no receive is left.
    pub(crate) fn unregister(&self, ring: &IoUring) -> io::Result<()> {
        self.rings
            .iter()
            .try_for_each(|r| ring.submitter().unregister_buf_ring(r.group))
    }

    fn group_of(&self, bid: u16) -> usize {
        usize::from(usize::from(bid) >= self.open)
    }

    // ANCHOR: give_back
    /// A completion named buffer `bid`: the kernel took it, it is ours.
    pub(crate) fn taken(&mut self, bid: u16) {
        let group = self.group_of(bid);
        self.out[group] += 1;
    }

    /// Hands buffer `bid` back to the kernel, through its group's ring.
    pub(crate) fn give_back(&mut self, bid: u16) {
        let group = self.group_of(bid);
        let (addr, len) = (self.addr(bid, 0), self.size as u32);
        self.rings[group].publish(addr, len, bid);
        self.out[group] -= 1;
    }
    // ANCHOR_END: give_back

    /// The address of byte `offset` of buffer `bid`.
    pub(crate) fn addr(&self, bid: u16, offset: usize) -> *const u8 {
        debug_assert!(usize::from(bid) < self.count && offset <= self.size);
        // SAFETY: `bid < count` and `offset <= size`, so the result is inside
        // (or one past the end of a buffer in) the `count * size` mapping.
        unsafe {
            self.memory
                .as_ptr()
                .add(usize::from(bid) * self.size + offset)
        }
    }

    /// Buffers of the open pool in its ring, as far as we know: the kernel
    /// may have taken some whose completions we have not read yet.
    pub(crate) fn open_available(&self) -> usize {
        self.open - self.out[0]
    }

    /// Reserve buffers in its ring and not promised to an armed receive:
    /// exact, because only our one-buffer receives take from the reserve.
    pub(crate) fn reserve_unpromised(&self) -> usize {
        (self.count - self.open) - self.out[1] - self.promised
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // SAFETY: the mapping came from `map_anonymous` with this length, and
        // no request that could write into a buffer is in flight: a `Server`
        // (which owns the pool) is dropped only after `shutdown` has reaped
        // every completion; `main` forgets it otherwise, and `Server::new`
        // arms no receive before it has returned the server.
        let _ = unsafe { nix::sys::mman::munmap(self.memory.cast(), self.memory_bytes) };
    }
}

/// A private anonymous mapping of `bytes`, page-aligned and zero-filled, as
/// buffer rings need; `populate` makes its pages resident at once.
fn map_anonymous(bytes: usize, populate: bool) -> Result<NonNull<u8>, String> {
    use nix::sys::mman::{MapFlags, ProtFlags, mmap_anonymous};
    let length = std::num::NonZeroUsize::new(bytes).ok_or("a mapping of 0 bytes")?;
    let mut flags = MapFlags::MAP_PRIVATE;
    if populate {
        flags |= MapFlags::MAP_POPULATE;
    }
    // SAFETY: a fresh private anonymous mapping aliases nothing; its owner
    // unmaps it with this length in its `Drop`.
    unsafe {
        mmap_anonymous(
            None,
            length,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            flags,
        )
    }
    .map(|p| p.cast())
    .map_err(|e| format!("cannot map {bytes} bytes for the buffer pool: {e}"))
}
// ANCHOR_END: pool

/// The pool without a kernel: each test reads the rings back through raw
/// pointers, field by field, as the kernel reads them.
#[cfg(test)]
mod tests {
    use super::*;

    /// Entry `slot` of `ring`: (addr, len, bid).
    fn entry(ring: &BufRing, slot: usize) -> (u64, u32, u16) {
        assert!(slot < ring.count);
        // SAFETY: `slot < count`, so the entry lies inside the mapping, and
        // no kernel reads or writes it: the ring is not registered.
        unsafe {
            let e = ring.entries.as_ptr().add(slot);
            (
                (&raw const (*e).addr).read(),
                (&raw const (*e).len).read(),
                (&raw const (*e).bid).read(),
            )
        }
    }

    /// The tail as the kernel sees it: the last two bytes of entry 0.
    fn published_tail(ring: &BufRing) -> u16 {
        // SAFETY: as in `BufRing::publish`.
        unsafe {
            AtomicU16::from_ptr(&raw mut (*ring.entries.as_ptr()).resv).load(Ordering::Acquire)
        }
    }

    /// Where buffer `bid` starts.
    fn start(pool: &Pool, bid: u16) -> u64 {
        pool.memory.as_ptr() as u64 + u64::from(bid) * pool.size as u64
    }

    #[test]
    fn new_publishes_every_buffer_into_its_ring() {
        // 8 buffers: 6 open, a reserve of 2.
        let pool = Pool::new(8, 64).unwrap();
        assert_eq!((pool.open, pool.count, pool.out), (6, 8, [0, 0]));
        let [open, reserve] = &pool.rings;
        assert_eq!((open.group, open.count, open.tail), (OPEN, 8, 6));
        assert_eq!(
            (reserve.group, reserve.count, reserve.tail),
            (RESERVE, 2, 2)
        );
        assert_eq!(published_tail(open), 6);
        assert_eq!(published_tail(reserve), 2);
        for bid in 0..6 {
            assert_eq!(entry(open, usize::from(bid)), (start(&pool, bid), 64, bid));
        }
        for bid in 6..8 {
            let slot = usize::from(bid - 6);
            assert_eq!(entry(reserve, slot), (start(&pool, bid), 64, bid));
        }
        assert_eq!(pool.open_available(), 6);
        assert_eq!(pool.reserve_unpromised(), 2);
    }

    #[test]
    fn a_quarter_is_the_reserve_and_at_least_one_buffer() {
        for (count, open) in [(2, 1), (4, 3), (8, 6), (1024, 768)] {
            let pool = Pool::new(count, 16).unwrap();
            assert_eq!(pool.open, open, "{count} buffers");
            for bid in 0..count {
                let group = usize::from(usize::from(bid) >= open);
                assert_eq!(pool.group_of(bid), group, "buffer {bid} of {count}");
            }
        }
    }

    #[test]
    fn taken_and_given_back_buffers_are_counted_per_group() {
        let mut pool = Pool::new(8, 64).unwrap();
        pool.taken(2);
        assert_eq!((pool.out, pool.open_available()), ([1, 0], 5));
        pool.taken(7);
        assert_eq!((pool.out, pool.reserve_unpromised()), ([1, 1], 1));
        pool.promised = 1;
        assert_eq!(pool.reserve_unpromised(), 0);
        pool.promised = 0;

        // Back through its own ring, at the tail: the reserve's ring has two
        // slots, so its third entry goes into slot 0, next to the tail.
        pool.give_back(7);
        assert_eq!(pool.out, [1, 0]);
        assert_eq!(published_tail(&pool.rings[1]), 3);
        assert_eq!(entry(&pool.rings[1], 0), (start(&pool, 7), 64, 7));
        pool.give_back(2);
        assert_eq!(pool.out, [0, 0]);
        assert_eq!(published_tail(&pool.rings[0]), 7);
        assert_eq!(entry(&pool.rings[0], 6), (start(&pool, 2), 64, 2));
        assert_eq!(
            published_tail(&pool.rings[1]),
            3,
            "the other ring is untouched"
        );
    }

    #[test]
    fn the_tail_wraps_at_65536_as_the_kernels_does() {
        let mut pool = Pool::new(4, 8).unwrap(); // 3 open, in a ring of 4
        for _ in 0..70_000 {
            pool.taken(1);
            pool.give_back(1);
        }
        let tail = ((3 + 70_000) % 65_536) as u16;
        assert_eq!(
            (pool.rings[0].tail, published_tail(&pool.rings[0])),
            (tail, tail)
        );
        let last = usize::from(tail.wrapping_sub(1) & pool.rings[0].mask);
        assert_eq!(entry(&pool.rings[0], last), (start(&pool, 1), 8, 1));
        assert_eq!(pool.out, [0, 0]);
    }

    #[test]
    fn addr_is_inside_the_buffer() {
        let pool = Pool::new(4, 100).unwrap();
        assert_eq!(pool.addr(3, 0) as u64, start(&pool, 3));
        assert_eq!(pool.addr(3, 100) as u64, start(&pool, 3) + 100);
        assert_eq!(pool.addr(1, 40) as u64, start(&pool, 2) - 60);
    }
}
