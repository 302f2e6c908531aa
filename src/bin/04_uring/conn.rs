//! What a request says about itself, and one connection with the memory it
//! lends the kernel. The core: the first thing to read after `main.rs`'s
//! options, and the lesson's topic, ownership while the kernel holds memory.

use std::os::fd::OwnedFd;
use std::ptr::NonNull;

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
pub(crate) enum Kind {
    Accept = 1,
    Recv = 2,
    Send = 3,
    Signal = 4,
    Timeout = 5,
    Cancel = 6,
}

pub(crate) fn pack(kind: Kind, index: usize, generation: u32) -> u64 {
    ((kind as u64) << 56) | (u64::from(generation & 0xff_ffff) << 32) | (index as u64 & 0xffff_ffff)
}

pub(crate) fn unpack(user_data: u64) -> (Option<Kind>, usize, u32) {
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
pub(crate) struct Conn {
    /// The socket; dropping it closes it.
    pub(crate) socket: OwnedFd,
    pub(crate) generation: u32,
    /// The kernel receives into this buffer and sends from it. A
    /// `KernelBuf` (below), not a `Box<[u8]>`: the kernel holds the
    /// buffer's address while we move the `Conn` around.
    pub(crate) buf: KernelBuf,
    /// `buf[..filled]` arrived; `buf[..sent]` of it has been sent back.
    pub(crate) filled: usize,
    pub(crate) sent: usize,
    /// The one request the kernel holds for this connection, if any. While
    /// it is `Some`, the bytes of `buf` must not be touched or freed (and
    /// they cannot move: see `KernelBuf`).
    pub(crate) in_flight: Option<Kind>,
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
// ANCHOR: kernel_buf_type
pub(crate) struct KernelBuf {
    ptr: NonNull<u8>,
    len: usize,
}

impl KernelBuf {
    /// `len` zeroed bytes on the heap.
    pub(crate) fn new(len: usize) -> KernelBuf {
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
    pub(crate) fn addr(&self, at: usize) -> *mut u8 {
        assert!(at <= self.len, "an address outside the buffer");
        self.ptr.as_ptr().wrapping_add(at)
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

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
// ANCHOR_END: kernel_buf_type
// ANCHOR_END: kernel_buf
