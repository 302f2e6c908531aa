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
