//! What the io_uring peers share and none of them is about: saying, in one
//! line, why their runtime could not start.
//!
//! `peer-monoio`, `peer-compio` and `peer-compio-multishot` each build their
//! runtime's io_uring driver and nothing else (no epoll fallback), so a
//! kernel or a container without io_uring makes them exit at once. The
//! runtimes report the `io_uring_setup` error as it came; this turns it
//! into the kind of line the lessons print (see
//! `uring_echo_book::uring::explain_setup_error`), pointing at the peer
//! that needs no io_uring instead of at a lesson.

use std::io;

use nix::libc::{ENOMEM, ENOSYS, EPERM};

/// Why `runtime` (`"monoio"`, `"compio"`) could not start its io_uring
/// driver, in one line that says what to do.
pub fn explain_uring_error(runtime: &str, e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(ENOSYS) => format!(
            "io_uring is not available: this kernel has no io_uring_setup ({e}), and \
             {runtime}'s io_uring driver needs it (see `uname -r`); peer-tokio runs without it"
        ),
        Some(EPERM) => format!(
            "io_uring is not permitted here ({e}): the sysctl kernel.io_uring_disabled is set \
             (`sysctl kernel.io_uring_disabled`, 0 allows it) or a container's seccomp profile \
             blocks io_uring_setup; allow it, or compare with peer-tokio, which needs no io_uring"
        ),
        Some(ENOMEM) => format!(
            "{runtime}'s io_uring does not fit in locked memory ({e}): raise the limit \
             (`ulimit -l`)"
        ),
        _ => format!("cannot start {runtime}'s io_uring driver: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_errno_gets_its_line() {
        let line = |errno| explain_uring_error("monoio", &io::Error::from_raw_os_error(errno));
        assert!(line(EPERM).contains("not permitted") && line(EPERM).contains("seccomp"));
        assert!(line(ENOSYS).contains("no io_uring_setup"));
        assert!(line(ENOMEM).contains("ulimit -l"));
        assert!(line(22).starts_with("cannot start monoio's io_uring driver"));
        for errno in [EPERM, ENOSYS, ENOMEM, 22] {
            assert_eq!(line(errno).lines().count(), 1);
        }
    }
}
