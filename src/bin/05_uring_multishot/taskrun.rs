//! Hardening: a fallback. How the kernel runs the work that produces our
//! completions: `defer` (Linux 6.1), `coop` (5.19) or `plain`; with
//! `--taskrun auto`, the best this kernel has.

use io_uring::IoUring;
use nix::libc;

use crate::Taskrun;

// ANCHOR: taskrun
/// Sets up the ring in the task-run mode asked for; with `auto`, the best
/// one this kernel has. Returns the ring and the name of the mode.
pub(crate) fn build_ring(
    taskrun: Taskrun,
    entries: u32,
    cq_entries: u32,
) -> Result<(IoUring, &'static str), String> {
    let tries: &[Taskrun] = match taskrun {
        Taskrun::Auto => &[Taskrun::Defer, Taskrun::Coop, Taskrun::Plain],
        Taskrun::Defer => &[Taskrun::Defer],
        Taskrun::Coop => &[Taskrun::Coop],
        Taskrun::Plain => &[Taskrun::Plain],
    };
    let mut last = String::new();
    for &mode in tries {
        let mut builder: io_uring::Builder = IoUring::builder();
        // SUBMIT_ALL (5.18, older than anything this lesson needs): when one
        // request fails as it is submitted, submit the rest anyway; the
        // failure comes back as that request's completion. Without it the
        // kernel stops at the failing one and leaves the rest queued.
        builder
            .setup_cqsize(cq_entries)
            .setup_clamp()
            .setup_submit_all();
        let (name, since) = match mode {
            Taskrun::Defer => {
                // One thread submits (SINGLE_ISSUER), so the kernel may save
                // its completion work for our next wait (DEFER_TASKRUN).
                builder.setup_single_issuer().setup_defer_taskrun();
                ("defer", "6.1")
            }
            Taskrun::Coop => {
                // The kernel does not interrupt us to run completion work;
                // it runs it when we next enter the kernel.
                builder.setup_coop_taskrun().setup_taskrun_flag();
                ("coop", "5.19")
            }
            _ => ("plain", "5.1"),
        };
        match builder.build(entries) {
            Ok(ring) => return Ok((ring, name)),
            // EINVAL: this kernel does not know the flags. Try the next mode.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                last = format!(
                    "the kernel refused taskrun mode {name} ({e}): it needs Linux {since}; \
                     try --taskrun auto"
                );
            }
            Err(e) => return Err(uring_echo_book::uring::explain_setup_error(&e)),
        }
    }
    Err(last)
}
// ANCHOR_END: taskrun
