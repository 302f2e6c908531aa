//! Hardening: a feature probe. Multishot receive (Linux 6.0) has the opcode
//! of a plain receive, so the opcode probe cannot tell whether the kernel
//! has it. This file finds out by trying one, and says plainly why the
//! lesson cannot run when the kernel refuses.
//!
//! It stands alone (std, io_uring, nix and the library's error line for a
//! buffer ring, nothing of the lesson's): the chapter's exercise server
//! includes this very file, from `exercises/programs/05-multishot.rs`.

use std::ffi::c_void;
use std::io::Write;
use std::num::NonZeroUsize;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::{IoUring, cqueue, opcode, types};
use nix::libc;
use nix::sys::mman::{MapFlags, ProtFlags, mmap_anonymous, munmap};
use uring_echo_book::uring::explain_buf_ring_error;

// ANCHOR: probe
/// A group id the lessons do not use.
const PROBE_GROUP: u16 = 0xbeef;
/// The user_data of the probe's receive, and of its cancel.
const PROBE: u64 = u64::MAX;
const PROBE_CANCEL: u64 = PROBE - 1;
/// One page: the ring (one 16-byte entry) at its start, the buffer after.
const PAGE: usize = 4096;

// ANCHOR: probe_steps
/// Multishot receive (Linux 6.0) has the opcode of a plain receive, so the
/// opcode probe cannot tell whether the kernel has it. This finds out by
/// trying: it arms a multishot receive on one end of a fresh socket pair,
/// with a one-buffer ring of its own (group `PROBE_GROUP`), writes one byte
/// into the other end, and looks at the completion. A kernel with multishot
/// receive answers with the byte and `IORING_CQE_F_MORE`; an older one
/// refuses the request with `EINVAL`.
///
/// Call it on a fresh ring, before anything else is submitted: it waits for
/// its own completions and would swallow others.
pub(crate) fn check_multishot_recv(ring: &mut IoUring) -> Result<(), String> {
    let memory = map_probe_ring()?;
    // Whether the probe's receive may still be in flight: if the probe
    // stops half way (an enter that fails for good), the kernel may still
    // write into the buffer in our page, so the page is then never unmapped.
    let mut in_flight = false;
    let result = register_and_try(ring, memory, &mut in_flight);
    if !in_flight {
        // SAFETY: the mapping came from `mmap_anonymous` with this length, and
        // the kernel no longer refers to it: the probe's ring was unregistered
        // (and the kernel reads a registered ring through its own pinned
        // pages anyway), and no request of the probe is in flight, so nothing
        // will write into its buffer.
        let _ = unsafe { munmap(memory, PAGE) };
    }
    result
}
// ANCHOR_END: probe_steps

/// One page with a buffer ring of one entry at its start, the entry naming
/// a 64-byte buffer in the second half of the page, and the ring's tail
/// published: the kernel may take that buffer once the ring is registered.
fn map_probe_ring() -> Result<NonNull<c_void>, String> {
    let page = NonZeroUsize::new(PAGE).expect("non-zero");
    // SAFETY: a fresh private anonymous mapping aliases nothing; it is
    // page-aligned and zero-filled, as a buffer ring must be. It is unmapped
    // by `check_multishot_recv`, after the ring no longer refers to it.
    let memory = unsafe {
        mmap_anonymous(
            None,
            page,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_PRIVATE,
        )
    }
    .map_err(|e| fail("cannot map memory for the probe", &e))?;
    let entries = memory.cast::<types::BufRingEntry>();
    // SAFETY: the mapping is 4096 bytes, so its first 16-byte entry exists.
    // A `&mut` to it is fine here, tail included, because the ring is not
    // registered yet: the kernel cannot be reading it.
    unsafe {
        let entry = &mut *entries.as_ptr();
        entry.set_addr(memory.as_ptr() as u64 + 2048);
        entry.set_len(64);
        entry.set_bid(0);
        let tail = types::BufRingEntry::tail(entries.as_ptr()) as *const AtomicU16;
        (*tail).store(1, Ordering::Release);
    }
    Ok(memory)
}

/// Registers the probe's ring, tries the receive, and unregisters the ring.
fn register_and_try(
    ring: &mut IoUring,
    memory: NonNull<c_void>,
    in_flight: &mut bool,
) -> Result<(), String> {
    // SAFETY: the ring memory stays mapped until after it is unregistered.
    unsafe {
        ring.submitter()
            .register_buf_ring_with_flags(memory.as_ptr() as u64, 1, PROBE_GROUP, 0)
    }
    .map_err(|e| explain_buf_ring_error(&e))?;
    let outcome = try_multishot_recv(ring, in_flight);
    let _ = ring.submitter().unregister_buf_ring(PROBE_GROUP);
    outcome
}

/// Arms the multishot receive on a fresh socket pair, writes one byte to
/// it, and returns what the kernel made of it.
fn try_multishot_recv(ring: &mut IoUring, in_flight: &mut bool) -> Result<(), String> {
    let (ours, theirs) = UnixStream::pair().map_err(|e| fail("cannot create a socket pair", &e))?;
    let recv = opcode::RecvMulti::new(types::Fd(ours.as_raw_fd()), PROBE_GROUP)
        .build()
        .user_data(PROBE);
    // SAFETY: the request refers to the socket `ours` and to the probe's
    // buffer ring, both alive until its last completion has been reaped in
    // `reap_probe`.
    unsafe { ring.submission().push(&recv) }
        .map_err(|_| "the submission queue is full".to_string())?;
    *in_flight = true;
    (&theirs)
        .write_all(b"x")
        .map_err(|e| fail("cannot write to the socket pair", &e))?;
    reap_probe(ring, in_flight)
}

/// Waits for the receive's completions, cancels it if it stays armed, and
/// waits for its last completion and the cancel's. Returns the verdict of
/// the receive's first completion.
fn reap_probe(ring: &mut IoUring, in_flight: &mut bool) -> Result<(), String> {
    let mut verdict = None;
    let mut armed = true;
    let mut cancelled = false;
    let mut cancel_seen = false;
    let mut retries = 0;
    while armed || (cancelled && !cancel_seen) {
        match ring.submit_and_wait(1) {
            Ok(_) => {}
            // A signal interrupted the wait (EINTR), or the kernel
            // had no memory for a request just then (EAGAIN; EBUSY
            // on older kernels): try again, a few times.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
                ) && retries < 100 =>
            {
                retries += 1;
                continue;
            }
            Err(e) => return Err(fail("io_uring_enter failed", &e)),
        }
        let done: Vec<(u64, i32, u32)> = ring
            .completion()
            .map(|c| (c.user_data(), c.result(), c.flags()))
            .collect();
        for (user_data, res, flags) in done {
            if user_data != PROBE {
                cancel_seen = true; // the cancel's own completion
                continue;
            }
            armed = cqueue::more(flags);
            if verdict.is_none() {
                verdict = Some(judge(res, flags, armed));
            }
        }
        if armed && !cancelled {
            let cancel = opcode::AsyncCancel::new(PROBE)
                .build()
                .user_data(PROBE_CANCEL);
            // SAFETY: a cancel refers to no memory of ours.
            unsafe { ring.submission().push(&cancel) }
                .map_err(|_| "the submission queue is full".to_string())?;
            cancelled = true;
        }
    }
    // The receive's last completion and the cancel's are both in.
    *in_flight = false;
    verdict.unwrap_or_else(|| Err("the probe's receive never completed".to_string()))
}

/// What the receive's first completion says about the kernel: one byte,
/// still armed, is a multishot receive.
fn judge(res: i32, flags: u32, armed: bool) -> Result<(), String> {
    if res == 1 && armed {
        Ok(())
    } else if res == -libc::EINVAL {
        Err("this kernel has no multishot receive (EINVAL): it needs \
             Linux 6.0 (see `uname -r`); lesson 04 runs without it"
            .to_string())
    } else {
        Err(format!(
            "multishot receive did not work here: result {res}, flags {flags:#x}"
        ))
    }
}

fn fail(what: &str, e: &dyn std::fmt::Display) -> String {
    format!("{what}: {e}")
}
// ANCHOR_END: probe
