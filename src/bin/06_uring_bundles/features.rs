//! The core, new in 06: which features this run uses, each detected at
//! start-up with one line when the kernel lacks it; the memory a gathered
//! or zero-copy send points the kernel at; and 06's own counters.

use std::io;
use std::os::fd::RawFd;
use std::ptr::NonNull;

use io_uring::{IoUring, opcode};
use nix::libc;

use crate::pool::Pool;
use crate::{Args, Switch};

// ANCHOR: features
// ANCHOR: detect
/// The features this run uses: what was asked for, minus what the kernel
/// lacks. SQPOLL is decided when the ring is built (`setup.rs`).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Features {
    pub(crate) recv_bundle: bool,
    /// The kernel takes a length on a multishot receive, as a cap on each
    /// completion (`mshot_len` in io_uring/net.c; in Linux 6.17 at the
    /// latest, so we ask for 6.17); before that the length must be 0.
    pub(crate) bundle_cap: bool,
    pub(crate) send_gather: bool,
    pub(crate) fixed_files: bool,
    /// Accepts give slots of the file table, not descriptors (`direct.rs`).
    pub(crate) direct_accept: bool,
    /// The open ring's buffers are consumed incrementally (`inc.rs`).
    pub(crate) buf_inc: bool,
    pub(crate) send_zc: bool,
    pub(crate) sqpoll: bool,
}

impl Features {
    /// Checks each feature asked for against this kernel and registers what
    /// it needs: the file table (`--fixed-files`), the pool as a fixed buffer
    /// (`--send-zc`). One line on stderr for each that is missing.
    pub(crate) fn detect(ring: &IoUring, args: &Args, pool: &Pool, sqpoll: bool) -> Features {
        let mut f = Features {
            sqpoll,
            send_gather: args.send_gather == Switch::On,
            ..Features::default()
        };
        if args.recv_bundle == Switch::On {
            // The kernel says it in the ring's feature flags (6.10).
            f.recv_bundle = ring.params().is_feature_recvsend_bundle();
            f.bundle_cap = uring_echo_book::uring::kernel_version().is_none_or(|k| k >= (6, 17));
            if !f.recv_bundle {
                eprintln!(
                    "--recv-bundle: this kernel lacks receive bundles (Linux 6.10, \
                     IORING_FEAT_RECVSEND_BUNDLE); one buffer per completion"
                );
            }
        }
        if args.fixed_files == Switch::On {
            // A table with one empty slot per connection (Linux 5.19).
            match ring.submitter().register_files_sparse(args.max_conns) {
                Ok(()) => f.fixed_files = true,
                Err(e) => eprintln!(
                    "--fixed-files: cannot register a sparse file table ({e}; Linux 5.19); \
                     using plain descriptors"
                ),
            }
        }
        if args.direct_accept == Switch::On {
            f.direct_accept = detect_direct_accept(f.fixed_files);
        }
        if args.send_zc == Switch::On {
            f.send_zc = detect_send_zc(ring, pool);
        }
        f
    }
}
// ANCHOR_END: detect

// ANCHOR: detect_direct
/// Accepting into the file table needs the table (`--fixed-files on`,
/// registered above) and a kernel that picks a free slot for a multishot
/// accept (`IORING_FILE_INDEX_ALLOC`, Linux 5.19). The opcode probe cannot
/// see that (the accept's opcode is older), so we read the version.
fn detect_direct_accept(table: bool) -> bool {
    if !table {
        eprintln!(
            "--direct-accept: needs the registered file table (--fixed-files on); \
             plain descriptors"
        );
        return false;
    }
    if uring_echo_book::uring::kernel_version().is_some_and(|k| k < (5, 19)) {
        eprintln!(
            "--direct-accept: this kernel cannot accept into the file table \
             (IORING_FILE_INDEX_ALLOC, Linux 5.19); plain descriptors"
        );
        return false;
    }
    true
}
// ANCHOR_END: detect_direct

// ANCHOR: detect_zc
/// Zero-copy send needs `IORING_OP_SEND_ZC` (Linux 6.0) and, to say whether
/// it copied, `IORING_SEND_ZC_REPORT_USAGE` (6.2, which a 6.0 or 6.1
/// kernel refuses with EINVAL at the first send). We send from the pool
/// registered as fixed buffer 0, so the kernel pins its pages once, not at
/// every send.
fn detect_send_zc(ring: &IoUring, pool: &Pool) -> bool {
    let mut probe = io_uring::Probe::new();
    let has_op = ring.submitter().register_probe(&mut probe).is_ok()
        && probe.is_supported(opcode::SendZc::CODE);
    if !has_op || uring_echo_book::uring::kernel_version().is_some_and(|k| k < (6, 2)) {
        eprintln!(
            "--send-zc: this kernel lacks IORING_OP_SEND_ZC with usage reports (Linux 6.2); plain sends"
        );
        return false;
    }
    let (base, len) = pool.region();
    let iov = libc::iovec {
        iov_base: base.cast(),
        iov_len: len,
    };
    // SAFETY: the region is the pool's mapping, which stays mapped until
    // the server drops, after every send from it has completed; the kernel
    // pins its pages while it is registered (until the ring closes).
    match unsafe { ring.submitter().register_buffers(&[iov]) } {
        Ok(()) => true,
        Err(e) => {
            eprintln!("--send-zc: cannot register the pool as a fixed buffer ({e}); plain sends");
            false
        }
    }
}
// ANCHOR_END: detect_zc
// ANCHOR_END: features

// ANCHOR: send_slots
/// How many queued buffers one gathered send carries at most.
pub(crate) const GATHER: usize = 16;

/// The `sendmsg` header and buffer list of one connection's send, and what
/// that send asked for. The kernel reads them while the send is in flight.
#[repr(C)]
pub(crate) struct SendSlot {
    pub(crate) msg: libc::msghdr,
    pub(crate) iov: [libc::iovec; GATHER],
    /// Bytes the send in flight offered.
    pub(crate) offered: u32,
    /// The result of a zero-copy send, kept until its notification.
    pub(crate) zc_res: i32,
    /// The socket is in the registered file table, at the slot's index.
    pub(crate) fixed: bool,
    /// The socket exists only there: a direct descriptor (`direct.rs`);
    /// the connection is live while this is set.
    pub(crate) direct: bool,
}

/// One `SendSlot` per connection slot, allocated at start-up. Held by a raw
/// pointer, for the reason `KernelBytes` is (in `shutdown.rs`): a `Box`
/// would claim that nothing else reads it, while the kernel does.
pub(crate) struct SendSlots {
    ptr: NonNull<SendSlot>,
    len: usize,
}

impl SendSlots {
    pub(crate) fn new(len: usize) -> SendSlots {
        // SAFETY: all-zero is a valid msghdr, iovec, u32, i32 and bool.
        let slots: Box<[SendSlot]> = (0..len).map(|_| unsafe { std::mem::zeroed() }).collect();
        let ptr = NonNull::from(Box::leak(slots)).cast();
        SendSlots { ptr, len }
    }

    /// Slot `index`, as a raw pointer: the kernel may be reading it.
    pub(crate) fn get(&self, index: usize) -> *mut SendSlot {
        assert!(index < self.len);
        // SAFETY: `index < len`, inside the allocation.
        unsafe { self.ptr.as_ptr().add(index) }
    }
}

impl Drop for SendSlots {
    fn drop(&mut self) {
        let slice = std::ptr::slice_from_raw_parts_mut(self.ptr.as_ptr(), self.len);
        // SAFETY: made by `Box::leak` in `new` with this length, freed only
        // here; the server drops only after every send has completed.
        drop(unsafe { Box::from_raw(slice) });
    }
}
// ANCHOR_END: send_slots

/// Puts the socket `fd` into the file table at `index` (`fd` -1 empties the
/// slot). A system call, once per connection at each end.
pub(crate) fn update_file_table(ring: &IoUring, index: usize, fd: RawFd) -> io::Result<()> {
    ring.submitter()
        .register_files_update(index as u32, &[fd])
        .map(drop)
}

/// 06's counters, printed at exit on the `stats:` line after 05's.
#[derive(Default)]
pub(crate) struct More {
    pub(crate) recv_buffers: u64,
    pub(crate) bundles: u64,
    pub(crate) max_bundle: u64,
    pub(crate) gathered_sends: u64,
    pub(crate) gathered_buffers: u64,
    pub(crate) zc_sends: u64,
    pub(crate) zc_copied: u64,
    pub(crate) fixed_files: u64,
    pub(crate) direct_accepts: u64,
    pub(crate) inc_pieces: u64,
    pub(crate) buf_more: u64,
    pub(crate) piece_overflows: u64,
    pub(crate) registered_enters: u64,
}

impl std::fmt::Display for More {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "recv_buffers {} bundles {} max_bundle {} gathered_sends {} gathered_buffers {} \
             zc_sends {} zc_copied {} fixed_files {} direct_accepts {} inc_pieces {} buf_more {} \
             piece_overflows {} registered_enters {}",
            self.recv_buffers,
            self.bundles,
            self.max_bundle,
            self.gathered_sends,
            self.gathered_buffers,
            self.zc_sends,
            self.zc_copied,
            self.fixed_files,
            self.direct_accepts,
            self.inc_pieces,
            self.buf_more,
            self.piece_overflows,
            self.registered_enters
        )
    }
}

/// How a request names a connection's socket: by descriptor, or by its
/// index in the registered file table (`--fixed-files`).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Target {
    Fd(RawFd),
    Fixed(u32),
}
