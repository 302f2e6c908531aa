//! Exercise 06-bundle-order, the reference solution: the `bundle` region of
//! `exercises/programs/06-bundles.rs`, solved (it is lesson 06's own
//! `src/bin/06_uring_bundles/bundle.rs`).
//!
//! The kernel fills a bundle's buffers in ring order: the bytes start in
//! the buffer the completion names and go on in the entries after it. So
//! they join the queue in that order, first to last, each full but the
//! last, which holds what is left. Queued last to first, the bytes of every
//! bundle came back in the wrong order, and the last buffer's stale tail
//! was sent where the first buffer's bytes belonged.

include!("../programs/06-bundles.rs");

#[cfg(target_os = "linux")]
// ANCHOR: solution
mod bundle {
    use std::io;

    use crate::conn::{Kind, Shot, pack};
    use crate::pool::NONE;
    use crate::setup::Server;

    impl Server {
        /// Queues the buffers a completion filled, `bid` and (a bundle) the
        /// ring entries after it, behind the connection's unsent ones; then
        /// sends, unless a send is in flight.
        pub(crate) fn queue_bundle(&mut self, index: usize, bid: u16, res: u32) -> io::Result<()> {
            let n = self.buffers_in(res as i32);
            let size = self.buffer_size;
            self.more.recv_buffers += u64::from(n);
            if n > 1 {
                self.more.bundles += 1;
                self.more.max_bundle = self.more.max_bundle.max(u64::from(n));
            }
            let mut left = res;
            for k in 0..n {
                let this = if k == 0 {
                    bid
                } else {
                    self.pool.take_following(bid, k)
                };
                self.queue_buffer(index, this, left.min(size));
                left -= left.min(size);
            }
            let conn = &mut self.conns[index];
            if conn.held >= self.max_per_conn && conn.recv == Shot::Armed {
                // An armed multishot would keep taking buffers: cancel it.
                conn.recv = Shot::Cancelling;
                let target = pack(Kind::Recv, index, conn.generation);
                self.cancel(target)?;
            }
            self.send_next(index).map(drop)
        }

        /// Links one received buffer at the tail of the connection's queue.
        pub(crate) fn queue_buffer(&mut self, index: usize, bid: u16, len: u32) {
            let conn = &mut self.conns[index];
            conn.starved = false;
            self.pool.len[usize::from(bid)] = len;
            self.pool.next[usize::from(bid)] = NONE;
            if conn.tail == NONE {
                conn.head = bid;
            } else {
                self.pool.next[usize::from(conn.tail)] = bid;
            }
            conn.tail = bid;
            conn.held += 1;
            self.stats.max_held = self.stats.max_held.max(conn.held);
            if conn.held == self.max_per_conn {
                self.stats.backpressure_pauses += 1;
            }
        }
    }
}
// ANCHOR_END: solution
