//! The core: the event loop, lesson 05's with two changes: the clock is
//! read once per batch of completions, and after the batch, `flush` sends
//! the replies it produced. And the server's life around it.

use std::io;
use std::process::ExitCode;

use io_uring::cqueue;
use nix::libc;
use uring_echo_book::alloc_count;

use crate::Args;
use crate::conn::{Kind, unpack};
use crate::push::{RETRIES, is_transient};
use crate::setup::Server;

/// The server's life: set up, serve until SIGINT or SIGTERM, shut down.
pub(crate) fn serve(args: &Args) -> ExitCode {
    let mut server = match Server::new(args) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Everything the server needs is allocated by now. From here on, the
    // count must not move until the loop ends.
    let before = alloc_count::allocations();
    let result = server.run();
    server.stats.allocations_after_startup = alloc_count::allocations() - before;
    let result = result.and_then(|()| {
        eprintln!("signal received: closing every connection");
        server.stop_sweep()?;
        server.shutdown()
    });
    match result {
        Ok(()) => {
            // One `stats:` line: lesson 05's counters, then the protocol's.
            eprintln!("{} {}", server.stats, server.extra.resp);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: the event loop failed: {e}");
            // Requests may still be in flight, and the kernel may still write
            // into the pool and into `siginfo`: never free them. The process
            // is exiting, which takes the ring down first.
            std::mem::forget(server);
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: event_loop
impl Server {
    // ANCHOR: run
    /// Submits, waits, handles completions; until SIGINT or SIGTERM.
    pub(crate) fn run(&mut self) -> io::Result<()> {
        while !self.stopping {
            self.enter()?;
            self.reap()?;
        }
        Ok(())
    }
    // ANCHOR_END: run

    // ANCHOR: enter
    /// One system call: hand the kernel every queued request and wait for
    /// at least one completion. With DEFER_TASKRUN this is also when the
    /// kernel does the deferred work that produces completions, which is
    /// why we always wait here and never just submit.
    ///
    /// How many completions to wait for is a trade. One is the default:
    /// we return as soon as there is work, so no reply waits on others. But
    /// a server faster than its clients then finds one or two completions
    /// per enter, and makes an enter for every other echo. When `batching`
    /// (`batch.rs`) says so, the kernel waits for N completions, or for
    /// `--batch-wait-usec` after the first, and returns with whatever has
    /// come. If nothing at all has
    /// come by then, it returns anyway, with ETIME: so after such a wait we
    /// wait plainly for one completion, or an idle server would wake every
    /// few microseconds for nothing.
    pub(crate) fn enter(&mut self) -> io::Result<()> {
        let want = self.batching.want();
        let waited = if want > 1 && !self.idle {
            self.stats.batched_enters += 1;
            self.ring
                .submitter()
                .submit_with_args(want, &self.batch_wait)
        } else {
            self.ring.submit_and_wait(1)
        };
        self.idle = false;
        self.stats.enters += 1;
        match waited {
            Ok(_) => self.retries = 0,
            // ETIME: the batch wait ran out and nothing came; the next
            // enter waits without a time limit.
            Err(e) if e.raw_os_error() == Some(libc::ETIME) => {
                self.idle = true;
                self.stats.batch_timeouts += 1;
            }
            // EINTR, EAGAIN, EBUSY: try again, but not forever.
            Err(e) if is_transient(&e) && self.retries < RETRIES => self.retries += 1,
            Err(e) => return Err(e),
        }
        Ok(())
    }
    // ANCHOR_END: enter

    // ANCHOR: reap
    /// Handles every completion in the queue, then sends the replies they
    /// produced: one send per connection for the whole batch.
    pub(crate) fn reap(&mut self) -> io::Result<()> {
        self.tick();
        // Copy the completions out first: handling one queues new requests,
        // which needs the ring, which the completion queue borrows. The
        // batch has room for a whole completion queue, so this never allocates.
        let mut batch = std::mem::take(&mut self.batch);
        batch.clear();
        if self.ring.submission().cq_overflow() {
            // The queue was full and the kernel kept completions aside; it
            // hands them over as we make room. Nothing is lost, but it is a
            // sign that the queue is too small for the load.
            self.stats.cq_overflowed += 1;
        }
        let mut completion = self.ring.completion();
        self.stats.cq_dropped = completion.overflow();
        batch.extend(
            completion
                .by_ref()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        drop(completion);
        // How full the batch was, for `--batch auto`'s trials.
        self.batching.reaped(batch.len());
        for &(user_data, res, flags) in &batch {
            self.stats.completions += 1;
            if !cqueue::more(flags) {
                self.in_flight -= 1; // this request's last completion
            }
            self.on_completion(user_data, res, flags)?;
        }
        self.batch = batch;
        self.wake_waiting()?;
        self.flush()
    }
    // ANCHOR_END: reap

    // ANCHOR: on_completion
    /// Hands one completion to the handler of its kind: `accept.rs`,
    /// `recv.rs`, `send.rs`, `shutdown.rs`.
    fn on_completion(&mut self, user_data: u64, res: i32, flags: u32) -> io::Result<()> {
        if let Some(bid) = cqueue::buffer_select(flags) {
            // The kernel took a buffer from a ring: it is ours now.
            self.pool.taken(bid);
        }
        let (kind, index, generation) = unpack(user_data);
        let current = self
            .conns
            .get(index)
            .is_some_and(|c| c.socket.is_some() && c.generation == generation);
        match kind {
            Some(Kind::Accept) => self.on_accept(res, cqueue::more(flags)),
            Some(Kind::Recv) if current => self.on_recv(index, res, flags),
            Some(Kind::Send) if current => self.on_send(index, res),
            Some(Kind::Recv | Kind::Send) => {
                // A completion for a connection that is gone. Cannot happen
                // while a slot is freed only with nothing in flight; counted,
                // so a bug would show, and its buffer is not lost.
                self.stats.stale += 1;
                if let Some(bid) = cqueue::buffer_select(flags) {
                    self.pool.give_back(bid);
                }
                Ok(())
            }
            Some(Kind::Signal) => self.on_signal(res),
            Some(Kind::Timeout) => {
                self.timeout_armed = false;
                self.arm_accept()
            }
            Some(Kind::Sweep) => self.on_sweep(),
            Some(Kind::Cancel) | None => Ok(()),
        }
    }
    // ANCHOR_END: on_completion
}
// ANCHOR_END: event_loop
