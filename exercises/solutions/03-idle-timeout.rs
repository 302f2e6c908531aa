//! Exercise 03-idle-timeout, the reference solution.
//!
//! Two things make an idle timeout: knowing when each connection was last
//! active, and waking up when nothing happens. The first is one `Instant`
//! per connection, set when it is accepted and whenever epoll reports an
//! event for it. The second is the timeout argument of `epoll_wait`: without
//! one it sleeps until a socket is ready, and a silent client makes no
//! socket ready, so the starter never got a chance to notice anything. With
//! a timeout the loop wakes at least every quarter of the idle limit, looks
//! at every connection, and closes those quiet for longer than the limit.
//!
//! Why an event, and not "received a byte", counts as activity: in this
//! server a connection gets an event when bytes or the client's FIN arrive
//! (EPOLLIN), when a client that was not reading has read again (EPOLLOUT:
//! room in the send buffer), or on an error. Each is progress in one
//! direction or the other. A client that sends a lot and then reads slowly
//! is therefore not cut off while its echo is still on the way, as long as
//! it keeps reading; one that neither sends nor reads for the whole limit
//! is closed, whichever way its bytes were flowing.
//!
//! Looking at every connection on each wake-up costs time in proportion to
//! the open connections, four times per limit. A server with a very large
//! number of them keeps them in order of last activity instead (a list
//! that a connection moves to the back of when active), so that only the
//! ones at the front need a look; or it uses a timer wheel.
//!
//! Only the `todo` region differs from the starter; the rest of the server
//! is `exercises/programs/03-idle-timeout.rs` and `exercises/common/epoll.rs`.
//!
//! ```text
//! cargo run --bin echo-check -- --exercise 03-idle-timeout --solution
//! ```

include!("../programs/03-idle-timeout.rs");

#[cfg(target_os = "linux")]
// ANCHOR: solution
mod todo {
    use std::convert::Infallible;
    use std::io;
    use std::time::{Duration, Instant};

    use nix::sys::epoll::EpollTimeout;

    use super::Server;

    /// What a connection keeps for the idle timeout: when epoll last
    /// reported anything for it (bytes in, room to send bytes out, the
    /// client's FIN, or an error), or when it was accepted.
    pub struct Idle {
        last_active: Instant,
    }

    impl Idle {
        /// For a connection just accepted.
        pub fn new() -> Idle {
            Idle {
                last_active: Instant::now(),
            }
        }

        /// An event of the connection: bytes or the client's FIN arrived,
        /// there is room to send again, or an error.
        pub fn touch(&mut self) {
            self.last_active = Instant::now();
        }
    }

    impl Server {
        /// Waits for events and serves them, forever; with a limit, closes
        /// the connections quiet for longer than that.
        pub fn run(&mut self, idle_timeout: Option<Duration>) -> io::Result<Infallible> {
            let Some(limit) = idle_timeout else {
                eprintln!("no idle timeout");
                loop {
                    self.turn(EpollTimeout::NONE)?;
                }
            };
            eprintln!("idle timeout: {} s", limit.as_secs());
            // Sweeping four times per limit closes a quiet connection between
            // 1 and 1.25 times the limit after its last activity.
            let every = limit / 4;
            let mut next_sweep = Instant::now() + every;
            loop {
                // Sleep until something is ready, or until the next sweep is
                // due: a silent client makes no socket ready, so without a
                // timeout we would never wake up to notice it. (Rounded up to
                // the next millisecond, epoll_wait's unit: waking up a moment
                // early would only mean waiting again.)
                let left = next_sweep.saturating_duration_since(Instant::now());
                let timeout =
                    EpollTimeout::try_from(left.as_millis() + 1).unwrap_or(EpollTimeout::MAX);
                self.turn(timeout)?;
                let now = Instant::now();
                if now < next_sweep {
                    continue;
                }
                // Dropping a connection closes its socket, which also takes
                // it out of the epoll set.
                let before = self.conns.len();
                self.conns
                    .retain(|_, conn| now.duration_since(conn.idle.last_active) < limit);
                let closed = before - self.conns.len();
                if closed > 0 {
                    eprintln!("closed {closed} idle connections");
                }
                next_sweep = now + every;
            }
        }
    }
}
// ANCHOR_END: solution
