//! The core: each connection's own memory, for framing and for replies.
//! One anonymous mapping, allocated at start-up, cut into one slot per
//! entry of the connection table: a carry of `--max-request` bytes and a
//! reply buffer of `--reply-buffer` bytes. The kernel gives a page of it
//! real memory only when we first write there, so an idle connection, or
//! one whose replies stay small, costs a page or two, not the whole slot.

use std::ptr::NonNull;

use nix::sys::mman::{MapFlags, ProtFlags, mmap_anonymous, munmap};

// ANCHOR: arena
pub(crate) struct Arena {
    /// Only raw pointers into it exist: the kernel reads the part of a
    /// reply buffer that a send in flight covers, while we write after it.
    memory: NonNull<u8>,
    bytes: usize,
    carry: usize,
    reply: usize,
}

impl Arena {
    pub(crate) fn new(conns: usize, carry: usize, reply: usize) -> Result<Arena, String> {
        let bytes = conns * (carry + reply);
        let length = std::num::NonZeroUsize::new(bytes).ok_or("an arena of 0 bytes")?;
        // MAP_NORESERVE: reserve no swap for it up front; most of it is
        // never touched.
        // SAFETY: a fresh private anonymous mapping aliases nothing; `drop`
        // unmaps it with this length.
        let memory = unsafe {
            mmap_anonymous(
                None,
                length,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE | MapFlags::MAP_NORESERVE,
            )
        }
        .map_err(|e| format!("cannot map {bytes} bytes for the connections' buffers: {e}"))?;
        Ok(Arena {
            memory: memory.cast(),
            bytes,
            carry,
            reply,
        })
    }

    fn slot(&self, index: usize) -> *mut u8 {
        assert!((index + 1) * (self.carry + self.reply) <= self.bytes);
        // SAFETY: the assert keeps the slot inside the mapping.
        unsafe { self.memory.as_ptr().add(index * (self.carry + self.reply)) }
    }

    /// Connection `index`'s carry, and the end of its reply buffer from
    /// byte `from` on: the part no send in flight covers (a send covers
    /// bytes before `from` only).
    pub(crate) fn parts(&mut self, index: usize, from: usize) -> (&mut [u8], &mut [u8]) {
        assert!(from <= self.reply);
        let slot = self.slot(index);
        // SAFETY: both ranges lie inside this connection's slot and do not
        // overlap; `&mut self` means no other slice of the arena is alive.
        // The kernel reads only the reply bytes of a send in flight, which
        // lie before `from`, and never writes here.
        unsafe {
            (
                std::slice::from_raw_parts_mut(slot, self.carry),
                std::slice::from_raw_parts_mut(slot.add(self.carry + from), self.reply - from),
            )
        }
    }

    /// Where byte `at` of connection `index`'s reply buffer is, for a send.
    pub(crate) fn reply_ptr(&self, index: usize, at: usize) -> *const u8 {
        assert!(at <= self.reply);
        // SAFETY: inside the slot, by the assert.
        unsafe { self.slot(index).add(self.carry + at) }
    }

    /// Moves reply bytes `from..to` to the start of the reply buffer, so
    /// new replies find room. Only while no send of it is in flight.
    pub(crate) fn compact(&mut self, index: usize, from: usize, to: usize) {
        assert!(from <= to && to <= self.reply);
        let start = self.reply_ptr(index, 0).cast_mut();
        // SAFETY: both ranges are inside the reply buffer (the assert); no
        // send is in flight, so the kernel reads none of it; `copy` allows
        // the ranges to overlap.
        unsafe { std::ptr::copy(start.add(from), start, to - from) };
    }

    pub(crate) fn reply_size(&self) -> usize {
        self.reply
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: the mapping came from `mmap_anonymous` with this length,
        // and no send is in flight: the server that owns the arena drops
        // only after `shutdown` has reaped every completion (`main` forgets
        // it otherwise).
        let _ = unsafe { munmap(self.memory.cast(), self.bytes) };
    }
}
// ANCHOR_END: arena
