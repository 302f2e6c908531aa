//! The Linux calls the load generator needs that `std` does not offer:
//! pinning a thread to a CPU, reading a thread's own CPU time, and a timer
//! finer than epoll's milliseconds.
//!
//! They go straight to libc (through `nix::libc`): nix wraps them only
//! behind features this crate does not enable, and each is a call or two.

use std::io;
use std::mem;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

use nix::libc;

/// Pins the calling thread to `cpu` (`sched_setaffinity`). Threads it starts
/// afterwards inherit the mask.
///
/// Why pin at all: on a two-core machine the server and the client compete
/// for the same two CPUs. Left to the scheduler, both may land on one core
/// for a while and the numbers swing from run to run; server on CPU 0 and
/// client on CPU 1 gives each a core of its own, the same in every run.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    let limit = libc::CPU_SETSIZE as usize;
    if cpu >= limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("an affinity mask names CPUs 0 to {}", limit - 1),
        ));
    }
    // SAFETY: `cpu_set_t` is a plain array of integers, for which all zero
    // bits is a valid value (the empty set).
    let mut set: libc::cpu_set_t = unsafe { mem::zeroed() };
    // SAFETY: CPU_SET only sets one bit inside `set`, and `cpu` is below
    // CPU_SETSIZE (checked above), so that bit is inside the array.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 means the calling thread; the kernel reads exactly
    // `size_of::<cpu_set_t>()` bytes from `&set`, a live, initialised value.
    let rc = unsafe { libc::sched_setaffinity(0, mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EINVAL) {
        // EINVAL here means the mask holds no CPU we may run on.
        let cpus = std::thread::available_parallelism().map_or(0, usize::from);
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "no such CPU, or not one this process may use ({cpus} available; \
                 they are numbered from 0, see `nproc` and `taskset -p $$`)"
            ),
        ));
    }
    Err(err)
}

/// The calling thread's CPU time so far, split into user and system time
/// (`getrusage(RUSAGE_THREAD)`), or `None` if the kernel would not say.
pub fn thread_cpu_time() -> Option<(Duration, Duration)> {
    // SAFETY: `rusage` is a plain struct of integers and `timeval`s; all
    // zero bits is a valid value.
    let mut usage: libc::rusage = unsafe { mem::zeroed() };
    // SAFETY: getrusage writes one `rusage` through the pointer, which
    // points at ours; RUSAGE_THREAD measures only the calling thread, which
    // is the one running the load.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    if rc != 0 {
        return None;
    }
    let time = |tv: libc::timeval| {
        Duration::from_secs(tv.tv_sec.max(0) as u64)
            + Duration::from_micros(tv.tv_usec.max(0) as u64)
    };
    Some((time(usage.ru_utime), time(usage.ru_stime)))
}

/// A one-shot timer as a descriptor (`timerfd`), which epoll reports
/// readable when it expires.
///
/// Why not epoll's own timeout: it counts whole milliseconds, and an
/// open-loop client that sends on a schedule must send at the time it says,
/// not up to a millisecond later, or it would charge its own lateness to
/// the server. A timerfd counts nanoseconds, and the kernel adds no timer
/// slack to it.
pub struct Timer(OwnedFd);

impl Timer {
    /// A disarmed timer on the monotonic clock (the one `Instant` reads).
    pub fn new() -> io::Result<Timer> {
        // SAFETY: plain system call with constant arguments; it returns a
        // new descriptor or -1.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by the kernel and nothing else owns it.
        Ok(Timer(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Arms the timer to expire once, `after` from now (at least a
    /// nanosecond: a zero value would disarm it instead).
    pub fn arm(&self, after: Duration) -> io::Result<()> {
        let after = after.max(Duration::from_nanos(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: after.as_secs().min(i32::MAX as u64) as libc::time_t,
                tv_nsec: after.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: `spec` is a valid itimerspec for the duration of the call;
        // a null old-value pointer is allowed.
        let rc =
            unsafe { libc::timerfd_settime(self.0.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Reads the expiry count, so a level-triggered poll stops reporting
    /// the timer readable. Nothing to read is fine.
    #[cfg(test)]
    pub fn clear(&self) {
        let mut count = 0u64;
        // SAFETY: reads at most 8 bytes into `count`, which has 8.
        unsafe {
            libc::read(
                self.0.as_raw_fd(),
                (&raw mut count).cast(),
                mem::size_of::<u64>(),
            )
        };
    }
}

impl AsFd for Timer {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cpu_that_cannot_exist_is_refused_before_the_kernel_is_asked() {
        let err = pin_current_thread(usize::MAX).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn the_thread_cpu_clock_moves() {
        let (u0, s0) = thread_cpu_time().expect("getrusage works on Linux");
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(30) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        std::hint::black_box(x);
        let (u1, s1) = thread_cpu_time().unwrap();
        assert!(u1 + s1 > u0 + s0, "30 ms of spinning costs CPU time");
    }

    #[test]
    fn the_timer_expires_after_the_time_asked_and_not_long_after() {
        let timer = Timer::new().unwrap();
        let start = std::time::Instant::now();
        timer.arm(Duration::from_micros(300)).unwrap();
        let mut ready = libc::pollfd {
            fd: timer.as_fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut ready, 1, 5000) };
        assert_eq!(n, 1, "the timer fires");
        assert!(start.elapsed() >= Duration::from_micros(300));
        timer.clear();
    }
}
