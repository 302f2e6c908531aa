//! The core, new in 06: what a send's result means for the connection's
//! queue. One send may carry several buffers (`--send-gather`); its result
//! covers some of them whole, which go back to their ring, and perhaps part
//! of one more, which stays at the head of the queue.

use crate::pool::NONE;
use crate::setup::Server;

// ANCHOR: sent
impl Server {
    /// `res` bytes of the connection's queue went out, from its head: give
    /// back every buffer they cover whole, and keep the offset into the
    /// one they cover in part.
    pub(crate) fn sent(&mut self, index: usize, res: usize) {
        let mut left = res;
        while left > 0 {
            let conn = &mut self.conns[index];
            let bid = conn.head;
            let unsent = self.pool.len[usize::from(bid)] as usize - conn.offset;
            if left < unsent {
                conn.offset += left;
                break;
            }
            // The whole buffer went out: only now may it go back to the ring.
            left -= unsent;
            conn.head = self.pool.next[usize::from(bid)];
            if conn.head == NONE {
                conn.tail = NONE;
            }
            conn.offset = 0;
            conn.held -= 1;
            self.pool.release(bid);
        }
    }
}
// ANCHOR_END: sent
