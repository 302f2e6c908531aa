//! Raising the open-file limit.
//!
//! Every connection is a file descriptor, and most Linux distributions start a
//! process with a soft limit of 1024 descriptors: a server that keeps the
//! default fails its 1021st client with `EMFILE` ("Too many open files"). The
//! hard limit, which an unprivileged process may raise its soft limit up to, is
//! usually far higher, so every server raises the soft limit at start.

use std::io;

/// Raises the soft limit on open files as far as the hard limit allows and
/// returns the new soft limit.
#[cfg(unix)]
pub fn raise_open_file_limit() -> io::Result<u64> {
    // `increase_nofile_limit` also knows macOS's extra cap (`kern.maxfilesperproc`).
    rlimit::increase_nofile_limit(u64::MAX)
}

/// Other platforms have no such limit to raise.
#[cfg(not(unix))]
pub fn raise_open_file_limit() -> io::Result<u64> {
    Ok(u64::MAX)
}

/// Raises the limit and, when that fails, says so on stderr and goes on: a
/// server with 1024 descriptors still works, it only serves fewer clients.
pub fn raise_open_file_limit_or_warn() {
    if let Err(e) = raise_open_file_limit() {
        eprintln!("warning: could not raise the open-file limit ({e}); serving with the default");
    }
}
