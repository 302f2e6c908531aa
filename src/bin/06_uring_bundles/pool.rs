//! The core, second part: lesson 05's pool of buffers and its two
//! registered rings, with one thing added for receive bundles: the pool
//! remembers in which order it put buffers into each ring, because a
//! bundle's completion names only its first buffer, and the others are the
//! ring entries that follow it. Every `unsafe` block of the buffer ring is
//! in this file, and so are the tests that read the rings back as the kernel
//! would, without a kernel.

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
    /// Which buffer we published at each slot: `order[position & mask]`.
    /// Ours alone; the kernel never sees it.
    order: Box<[u16]>,
    /// Flags given at registration: 0, or `IOU_PBUF_RING_INC`.
    flags: u16,
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
            order: vec![NONE; count].into_boxed_slice(),
            flags: 0,
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
                self.flags,
            )
        }
    }

    /// Writes an entry at the tail, then publishes the new tail. Returns
    /// the position it wrote at (the tail before), which `Pool` keeps.
    fn publish(&mut self, addr: *const u8, len: u32, bid: u16) -> u16 {
        let position = self.tail;
        let slot = usize::from(self.tail & self.mask);
        self.order[slot] = bid;
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
        position
    }
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
    /// the same connection's send queue. Allocated once, at start-up. With
    /// `--buf-inc`, the same for each piece too (`Incremental`): a queue
    /// links buffers, ids below `count`, and pieces, ids from `count` up.
    pub(crate) len: Box<[u32]>,
    pub(crate) next: Box<[u16]>,
    /// For each buffer: the ring position it was last published at.
    position: Box<[u16]>,
    /// Buffers of each group that we hold: received, not yet given back.
    out: [usize; 2],
    /// Reserve buffers promised to one-buffer receives that are armed: each
    /// will take at most one, so the reserve is never overdrawn.
    pub(crate) promised: usize,
    /// `--buf-inc`: the open ring's buffers are consumed incrementally.
    inc: Option<Incremental>,
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
            position: vec![0; count].into_boxed_slice(),
            out: [open, reserve],
            promised: 0,
            inc: None,
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

    /// A completion named buffer `bid`: the kernel took it, it is ours.
    /// (With `--buf-inc`, counted once, at its first completion.)
    pub(crate) fn taken(&mut self, bid: u16) {
        let group = self.group_of(bid);
        if let Some(inc) = self.inc.as_mut().filter(|_| group == 0)
            && std::mem::replace(&mut inc.counted[usize::from(bid)], true)
        {
            return; // counted at an earlier completion
        }
        self.out[group] += 1;
    }

    /// Hands buffer `bid` back to the kernel, through its group's ring.
    pub(crate) fn give_back(&mut self, bid: u16) {
        let group = self.group_of(bid);
        let (addr, len) = (self.addr(bid, 0), self.size as u32);
        self.position[usize::from(bid)] = self.rings[group].publish(addr, len, bid);
        self.out[group] -= 1;
        if let Some(inc) = self.inc.as_mut().filter(|_| group == 0) {
            let b = usize::from(bid);
            (inc.filled[b], inc.done[b], inc.counted[b]) = (0, false, false);
        }
    }

    // ANCHOR: following
    /// The buffer `k` entries after `bid` in its ring: the `k`-th further
    /// buffer of a bundle whose completion named `bid`. The kernel takes a
    /// bundle's buffers from consecutive entries, starting at the head, and
    /// takes only published entries, so each of them is one we wrote and
    /// recorded in `order`; and it is ours now, counted as taken here.
    pub(crate) fn take_following(&mut self, bid: u16, k: u16) -> u16 {
        let group = self.group_of(bid);
        let ring = &self.rings[group];
        let at = self.position[usize::from(bid)].wrapping_add(k);
        let next = ring.order[usize::from(at & ring.mask)];
        self.taken(next);
        next
    }
    // ANCHOR_END: following

    /// The whole pool as one region, for registering it as a fixed buffer
    /// (`--send-zc`): its address and length.
    pub(crate) fn region(&self) -> (*mut u8, usize) {
        (self.memory.as_ptr(), self.memory_bytes)
    }

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

    /// The address of byte `offset` of queue entry `node`: a buffer, or a
    /// piece of one (`--buf-inc`), which starts where its bytes do.
    pub(crate) fn node_addr(&self, node: u16, offset: usize) -> *const u8 {
        match &self.inc {
            Some(inc) if usize::from(node) >= self.count => {
                let piece = usize::from(node) - self.count;
                let start = inc.piece_start[piece] as usize;
                self.addr(inc.piece_bid[piece], start + offset)
            }
            _ => self.addr(node, offset),
        }
    }

    /// Queue entry `node` has been sent (or dropped): a whole buffer goes
    /// back to its ring; a piece goes back to the free pieces, and its
    /// buffer to its ring if that was its last piece and the kernel is done
    /// with it.
    pub(crate) fn release(&mut self, node: u16) {
        let Some(inc) = self
            .inc
            .as_mut()
            .filter(|_| usize::from(node) >= self.count)
        else {
            return self.give_back(node);
        };
        let piece = usize::from(node) - self.count;
        let bid = inc.piece_bid[piece];
        inc.pending[usize::from(bid)] -= 1;
        inc.free.push(node);
        self.settle(bid);
    }

    /// A completion named buffer `bid` but put no bytes in it: back to its
    /// ring, unless (`--buf-inc`) the kernel keeps it (`buf_more`) or
    /// pieces of it still wait to be sent.
    pub(crate) fn unused(&mut self, bid: u16, buf_more: bool) {
        if self.incremental(bid) {
            self.piece(bid, 0, !buf_more);
        } else {
            self.give_back(bid);
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

// ANCHOR: incremental_pool
/// Incremental consumption (`--buf-inc`, Linux 6.12), for the open ring
/// only. The kernel no longer uses up a whole buffer per receive: it fills
/// a buffer from where the last receive stopped, moves the ring entry's
/// address past what it filled, and keeps the buffer at the head of the
/// ring (`IORING_CQE_F_BUF_MORE` on the completion) until it is full. So
/// one buffer holds the bytes of several receives, one after another, of
/// one connection or of several: each such run of bytes is a **piece**.
/// A connection's queue links pieces where lesson 05's linked buffers.
///
/// A buffer goes back to the ring only when both are true: the kernel is
/// done with it (a completion that moved past it: no `BUF_MORE` for it),
/// and every piece of it has been sent (or dropped).
///
/// Why not the reserve too: its promise is one whole buffer to each
/// connection with empty hands, back in the ring as soon as that
/// connection's echo is out. A shared buffer would come back only when
/// every connection with a piece of it had sent, so one peer that never
/// reads could keep a reserve buffer from everyone else.
struct Incremental {
    /// Per buffer: bytes the kernel has filled so far: where its next piece starts.
    filled: Box<[u32]>,
    /// Per buffer: its pieces waiting in some connection's queue.
    pending: Box<[u16]>,
    /// Per buffer: the kernel has moved past it.
    done: Box<[bool]>,
    /// Per buffer: counted in `out` (from its first completion on).
    counted: Box<[bool]>,
    /// Per piece: its buffer and where in it the piece starts.
    piece_bid: Box<[u16]>,
    piece_start: Box<[u32]>,
    /// Pieces not in any queue, as ids (`count` + index).
    free: Vec<u16>,
}

/// `IOU_PBUF_RING_INC`, a flag of the buffer ring's registration.
pub(crate) const PBUF_RING_INC: u16 = io_uring::types::IOU_PBUF_RING_INC as u16;

impl Pool {
    /// Makes the open ring incremental (registration comes after) with
    /// room for `pieces` pieces, all allocated now. Ids must stay below
    /// `NONE`, so at most `NONE - count` pieces.
    pub(crate) fn make_incremental(&mut self, pieces: usize) {
        let pieces = pieces.min(usize::from(NONE) - self.count);
        let (count, all) = (self.count, self.count + pieces);
        self.len = vec![0; all].into_boxed_slice();
        self.next = vec![NONE; all].into_boxed_slice();
        self.rings[0].flags = PBUF_RING_INC;
        self.inc = Some(Incremental {
            filled: vec![0; count].into_boxed_slice(),
            pending: vec![0; count].into_boxed_slice(),
            done: vec![false; count].into_boxed_slice(),
            counted: vec![false; count].into_boxed_slice(),
            piece_bid: vec![NONE; pieces].into_boxed_slice(),
            piece_start: vec![0; pieces].into_boxed_slice(),
            free: (count..all).rev().map(|id| id as u16).collect(),
        });
    }

    /// Back to whole buffers (a kernel that refused the flag).
    pub(crate) fn make_whole(&mut self) {
        self.rings[0].flags = 0;
        self.inc = None;
    }

    /// Whether buffer `bid` is consumed incrementally.
    pub(crate) fn incremental(&self, bid: u16) -> bool {
        self.inc.is_some() && usize::from(bid) < self.open
    }

    /// Where the kernel's next bytes in buffer `bid` go: what it filled so far.
    pub(crate) fn filled(&self, bid: u16) -> u32 {
        self.inc
            .as_ref()
            .map_or(0, |inc| inc.filled[usize::from(bid)])
    }

    /// A completion put `len` bytes into buffer `bid`, from `filled(bid)`
    /// on; `kernel_done`: the kernel moved past the buffer. Returns the
    /// piece that holds them, for a connection's queue; `None` when there
    /// are no bytes, or (counted by the caller) no free piece is left.
    pub(crate) fn piece(&mut self, bid: u16, len: u32, kernel_done: bool) -> Option<u16> {
        let inc = self.inc.as_mut()?;
        let b = usize::from(bid);
        let start = inc.filled[b];
        inc.filled[b] = start + len;
        inc.done[b] |= kernel_done;
        let node = if len > 0 { inc.free.pop() } else { None };
        if let Some(node) = node {
            let piece = usize::from(node) - self.count;
            (inc.piece_bid[piece], inc.piece_start[piece]) = (bid, start);
            inc.pending[b] += 1;
        }
        self.settle(bid);
        node
    }

    /// The buffer goes back to its ring if the kernel is done with it and
    /// no piece of it waits to be sent.
    fn settle(&mut self, bid: u16) {
        let b = usize::from(bid);
        if let Some(inc) = &self.inc
            && inc.done[b]
            && inc.pending[b] == 0
        {
            self.give_back(bid);
        }
    }
}
// ANCHOR_END: incremental_pool

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
    fn a_bundle_follows_the_order_buffers_were_published_in() {
        let mut pool = Pool::new(8, 64).unwrap(); // 6 open: ring order 0..6
        // Buffers 4 and 1 come back in that order: they follow 5.
        for bid in [4, 1] {
            pool.taken(bid);
        }
        pool.give_back(4);
        pool.give_back(1);
        // A bundle of three starting at buffer 5 took 5, 4 and 1.
        pool.taken(5);
        assert_eq!(pool.take_following(5, 1), 4);
        assert_eq!(pool.take_following(5, 2), 1);
        assert_eq!(pool.out, [3, 0]);
        // A bundle starting at buffer 2 took 2, 3 and 5 (consecutive entries).
        assert_eq!(pool.take_following(2, 1), 3);
        assert_eq!(pool.take_following(2, 3), 5);
    }

    #[test]
    fn an_incremental_buffer_comes_back_when_the_kernel_is_done_and_every_piece_is_sent() {
        let mut pool = Pool::new(8, 64).unwrap(); // 6 open, 2 reserve
        pool.make_incremental(4);
        assert!(pool.incremental(0) && !pool.incremental(6));
        let tail = published_tail(&pool.rings[0]);
        // Two receives, of two connections, fill buffer 0 in turn; the
        // kernel keeps it after each (BUF_MORE), and counts it once.
        pool.taken(0);
        let a = pool.piece(0, 10, false).unwrap();
        pool.taken(0);
        let b = pool.piece(0, 20, false).unwrap();
        assert_eq!(pool.out, [1, 0]);
        assert_eq!(pool.filled(0), 30);
        assert_eq!(pool.node_addr(a, 0) as u64, start(&pool, 0));
        assert_eq!(pool.node_addr(b, 5) as u64, start(&pool, 0) + 15);
        // The first piece is sent: the kernel still has the buffer.
        pool.release(a);
        assert_eq!(published_tail(&pool.rings[0]), tail);
        // A third receive fills it to the end: the kernel is done with it,
        // but piece b still waits, so it stays out.
        pool.taken(0);
        let c = pool.piece(0, 34, true).unwrap();
        assert_eq!(published_tail(&pool.rings[0]), tail);
        pool.release(c);
        assert_eq!(published_tail(&pool.rings[0]), tail);
        // The last piece is sent: back in the ring, whole again.
        pool.release(b);
        assert_eq!(published_tail(&pool.rings[0]), tail.wrapping_add(1));
        let slot = usize::from(tail & pool.rings[0].mask);
        assert_eq!(entry(&pool.rings[0], slot), (start(&pool, 0), 64, 0));
        assert_eq!((pool.out, pool.filled(0)), ([0, 0], 0));
    }

    #[test]
    fn pieces_run_out_and_come_back() {
        let mut pool = Pool::new(8, 64).unwrap();
        pool.make_incremental(2);
        pool.taken(1);
        let p = [pool.piece(1, 1, false), pool.piece(1, 1, false)];
        assert!(p.iter().all(Option::is_some));
        assert_eq!(pool.piece(1, 1, false), None, "two pieces only");
        pool.release(p[0].unwrap());
        assert!(pool.piece(1, 1, false).is_some());
    }
}
