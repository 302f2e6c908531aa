//! Setting up an io_uring, or saying plainly why it cannot be done.
//!
//! io_uring may be missing (`ENOSYS`: an old kernel, or one built without
//! it), switched off (`EPERM`: the `kernel.io_uring_disabled` sysctl, or a
//! container's seccomp profile), or too big for the locked-memory limit
//! (`ENOMEM`). An opcode may be missing on an older kernel. The io_uring
//! lessons call [`build`] and [`require`] and, when either fails, print the
//! one line from here and exit non-zero instead of panicking.

use std::io;

use io_uring::{IoUring, Probe};

/// An operation a lesson needs, with the kernel that brought it.
#[derive(Debug, Clone, Copy)]
pub struct Needed {
    /// The opcode number (`io_uring::opcode::Accept::CODE`, ...).
    pub code: u8,
    /// Its name in the kernel's headers.
    pub name: &'static str,
    /// The first Linux version that has it.
    pub since: &'static str,
}

/// Why a ring could not be had, in one line that says what to do.
pub fn explain_setup_error(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(nix::libc::ENOSYS) => format!(
            "io_uring is not available: this kernel has no io_uring_setup ({e}); \
             lesson 04 needs Linux 5.6 or newer and lesson 05 6.0 (see `uname -r`); lesson 03 \
             runs without it"
        ),
        Some(nix::libc::EPERM) => format!(
            "io_uring is not permitted here ({e}): the sysctl kernel.io_uring_disabled is set \
             (`sysctl kernel.io_uring_disabled`, 0 allows it) or a container's seccomp profile \
             blocks io_uring_setup; allow it, or run lesson 03 instead"
        ),
        Some(nix::libc::ENOMEM) => format!(
            "the ring does not fit in locked memory ({e}): raise the limit (`ulimit -l`) or ask \
             for a smaller ring: the completion queue grows with --max-conns, the submission \
             queue with --ring-entries"
        ),
        Some(nix::libc::EINVAL) => format!(
            "the kernel refused the ring's parameters ({e}): it is probably older than a flag \
             we asked for needs; try a smaller --ring-entries or a newer kernel"
        ),
        _ => format!("cannot set up an io_uring: {e}"),
    }
}

/// Why a buffer ring could not be registered, in one line that says what to do.
///
/// The kernel pins a buffer ring's memory and, for a user without
/// `CAP_IPC_LOCK`, charges it to the same locked-memory limit as the ring
/// itself. So `ENOMEM` here is that limit again, not an old kernel: a
/// limit just big enough for the ring fails one step later, at this call.
/// (The fault suite found the first version of this line blaming the
/// kernel version for it; see `tests/privileges.rs`, `memlock_edge`.)
pub fn explain_buf_ring_error(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(nix::libc::ENOMEM) => format!(
            "the buffer ring does not fit in locked memory ({e}): raise the limit \
             (`ulimit -l`) or ask for fewer buffers (--buffers)"
        ),
        _ => format!(
            "this kernel cannot register a buffer ring ({e}): registered buffer rings and \
             multishot accept need Linux 5.19, multishot receive 6.0 (see `uname -r`); \
             lesson 04 runs without them"
        ),
    }
}

/// Builds a ring with `builder`, turning a failure into [`explain_setup_error`]'s line.
pub fn build(builder: &io_uring::Builder, entries: u32) -> Result<IoUring, String> {
    builder.build(entries).map_err(|e| explain_setup_error(&e))
}

/// Checks that the kernel supports every operation in `needed`, and says
/// which one is missing, and since when it exists, if not.
pub fn require(ring: &IoUring, needed: &[Needed]) -> Result<(), String> {
    let mut probe = Probe::new();
    ring.submitter().register_probe(&mut probe).map_err(|e| {
        format!(
            "this kernel cannot list its io_uring operations ({e}); Linux 5.6 or newer is needed"
        )
    })?;
    let missing: Vec<String> = needed
        .iter()
        .filter(|n| !probe.is_supported(n.code))
        .map(|n| format!("{} (Linux {})", n.name, n.since))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "this kernel's io_uring lacks {}; upgrade the kernel, or run lesson 03",
            missing.join(", ")
        ))
    }
}

/// The running kernel's version as (major, minor), read from
/// `/proc/sys/kernel/osrelease` (`6.18.44-generic` gives `(6, 18)`); `None`
/// when it cannot be read. Some behaviours that matter to a lesson changed
/// in a given release without a flag to probe for.
pub fn kernel_version() -> Option<(u32, u32)> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    parse_kernel_version(&release)
}

/// The (major, minor) at the start of a kernel release string.
pub fn parse_kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut numbers = release.trim().split(|c: char| !c.is_ascii_digit());
    let major = numbers.next()?.parse().ok()?;
    let minor = numbers.next()?.parse().ok()?;
    Some((major, minor))
}

/// Whether this process can set up a ring at all: tests use it to skip the
/// io_uring lessons, with the reason, where a machine forbids io_uring.
pub fn available() -> Result<(), String> {
    IoUring::new(2)
        .map(drop)
        .map_err(|e| explain_setup_error(&e))
}

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
pub fn check_multishot_recv(ring: &mut IoUring) -> Result<(), String> {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    use std::sync::atomic::{AtomicU16, Ordering};

    use io_uring::{cqueue, opcode, types};
    use nix::sys::mman::{MapFlags, ProtFlags, mmap_anonymous, munmap};

    /// A group id the lessons do not use.
    const PROBE_GROUP: u16 = 0xbeef;
    const PROBE: u64 = u64::MAX;
    let fail = |what: &str, e: &dyn std::fmt::Display| format!("{what}: {e}");

    // One page: the ring (one 16-byte entry) at its start, the buffer after.
    let page = std::num::NonZeroUsize::new(4096).expect("non-zero");
    // SAFETY: a fresh private anonymous mapping aliases nothing; it is
    // page-aligned and zero-filled, as a buffer ring must be. It is unmapped
    // below, after the ring no longer refers to it.
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

    // Whether the probe's receive may still be in flight: if the probe
    // stops half way (an enter that fails for good), the kernel may still
    // write into the buffer in our page, so the page is then never unmapped.
    let mut in_flight = false;
    let result = (|| {
        // SAFETY: the ring memory stays mapped until after it is unregistered.
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                entries.as_ptr() as u64,
                1,
                PROBE_GROUP,
                0,
            )
        }
        .map_err(|e| explain_buf_ring_error(&e))?;
        let outcome = (|| {
            let (ours, theirs) =
                UnixStream::pair().map_err(|e| fail("cannot create a socket pair", &e))?;
            let recv = opcode::RecvMulti::new(types::Fd(ours.as_raw_fd()), PROBE_GROUP)
                .build()
                .user_data(PROBE);
            // SAFETY: the request refers to the socket `ours` and to the
            // probe's buffer ring, both alive until its last completion has
            // been reaped below.
            unsafe { ring.submission().push(&recv) }
                .map_err(|_| "the submission queue is full".to_string())?;
            in_flight = true;
            (&theirs)
                .write_all(b"x")
                .map_err(|e| fail("cannot write to the socket pair", &e))?;
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
                            Some(nix::libc::EINTR | nix::libc::EAGAIN | nix::libc::EBUSY)
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
                        verdict = Some(if res == 1 && armed {
                            Ok(())
                        } else if res == -nix::libc::EINVAL {
                            Err("this kernel has no multishot receive (EINVAL): it needs \
                                 Linux 6.0 (see `uname -r`); lesson 04 runs without it"
                                .to_string())
                        } else {
                            Err(format!(
                                "multishot receive did not work here: result {res}, flags {flags:#x}"
                            ))
                        });
                    }
                }
                if armed && !cancelled {
                    let cancel = opcode::AsyncCancel::new(PROBE).build().user_data(PROBE - 1);
                    // SAFETY: a cancel refers to no memory of ours.
                    unsafe { ring.submission().push(&cancel) }
                        .map_err(|_| "the submission queue is full".to_string())?;
                    cancelled = true;
                }
            }
            // The receive's last completion and the cancel's are both in.
            in_flight = false;
            verdict.unwrap_or_else(|| Err("the probe's receive never completed".to_string()))
        })();
        let _ = ring.submitter().unregister_buf_ring(PROBE_GROUP);
        outcome
    })();
    if !in_flight {
        // SAFETY: the mapping came from `mmap_anonymous` with this length, and
        // the kernel no longer refers to it: the probe's ring was unregistered
        // (and the kernel reads a registered ring through its own pinned
        // pages anyway), and no request of the probe is in flight, so nothing
        // will write into its buffer.
        let _ = unsafe { munmap(memory, page.get()) };
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions_parse() {
        assert_eq!(parse_kernel_version("6.18.44-fc-v1147\n"), Some((6, 18)));
        assert_eq!(parse_kernel_version("6.8.0-49-generic"), Some((6, 8)));
        assert_eq!(parse_kernel_version("5.15"), Some((5, 15)));
        assert_eq!(parse_kernel_version("7"), None);
        assert_eq!(parse_kernel_version(""), None);
        assert!(kernel_version().is_some(), "this is Linux: /proc has it");
    }
}
