//! Exercise 06-bundle-order: which buffers a bundle filled.
//!
//! Lesson 06 itself, with one function changed: `queue_bundle`, which
//! queues the buffers a receive bundle filled: this one queues them from
//! the last to the first.
//! The rest of the server is `exercises/programs/06-bundles.rs`, which takes
//! in every other file of the lesson.
//!
//! Run it, and grade it:
//!
//! ```text
//! cargo run --example 06-bundle-order -- --buffers 64 --recv multishot   # on 127.0.0.1:7878
//! cargo run --bin echo-check -- --exercise 06-bundle-order               # builds, starts, grades
//! ```
//!
//! The statement is `exercises/06-bundle-order/README.md`.

include!("../programs/06-bundles.rs");

#[cfg(target_os = "linux")]
// ANCHOR: todo
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
            // TODO: with bundles, some echoes come back with their bytes in
            // the wrong order. Which buffer holds a bundle's first bytes?
            for k in (0..n).rev() {
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
// ANCHOR_END: todo
