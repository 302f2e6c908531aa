//! The core, new in 06: a receive's bytes when the open ring is consumed
//! incrementally (`--buf-inc`, Linux 6.12). What `bundle.rs` does with
//! whole buffers, with pieces: a completion's bytes may start part-way into
//! the buffer it names (where the kernel's last receive into it stopped),
//! and may end part-way into its last buffer, which the kernel keeps
//! (`IORING_CQE_F_BUF_MORE`) for the next receive, of any connection.

use std::io;

use crate::conn::{Kind, Shot, pack};
use crate::setup::Server;

// ANCHOR: queue_pieces
impl Server {
    /// Queues the `res` bytes of a completion that named open buffer `bid`,
    /// as one piece per buffer they fall in: the rest of `bid` (from where
    /// the kernel had filled it to), then (a bundle) whole buffers, the
    /// ring entries after it, then part of the last one. Every buffer but
    /// the last is full, so the kernel is done with it; the last one too,
    /// unless the completion says `buf_more`.
    pub(crate) fn queue_pieces(
        &mut self,
        index: usize,
        bid: u16,
        res: u32,
        buf_more: bool,
    ) -> io::Result<()> {
        self.more.buf_more += u64::from(buf_more);
        let buffers = self.cut(Some(index), bid, res, buf_more);
        self.more.recv_buffers += u64::from(buffers);
        if buffers > 1 {
            self.more.bundles += 1;
            self.more.max_bundle = self.more.max_bundle.max(u64::from(buffers));
        }
        let conn = &mut self.conns[index];
        if conn.held >= self.max_per_conn && conn.recv == Shot::Armed {
            // As in `bundle.rs`: the share is counted in pieces here.
            conn.recv = Shot::Cancelling;
            let target = pack(Kind::Recv, index, conn.generation);
            self.cancel(target)?;
        }
        self.send_next(index).map(drop)
    }

    /// The bytes of a completion that no connection will send (a stale
    /// one): dropped, but the pool still learns how far the kernel filled
    /// each buffer, or the next piece of it would start in the wrong place.
    pub(crate) fn drop_pieces(&mut self, bid: u16, res: u32, buf_more: bool) {
        self.cut(None, bid, res, buf_more);
    }

    /// Cuts `res` bytes, from where the kernel had filled `bid` to, into
    /// one piece per buffer they fall in, and queues them on connection
    /// `index` (or, `None`, drops them). Returns how many buffers.
    fn cut(&mut self, index: Option<usize>, bid: u16, res: u32, buf_more: bool) -> u16 {
        let size = self.buffer_size;
        let (mut left, mut k, mut this) = (res, 0, bid);
        loop {
            if k > 0 {
                this = self.pool.take_following(bid, k);
            }
            let part = left.min(size - self.pool.filled(this));
            left -= part;
            let last = left == 0;
            match (self.pool.piece(this, part, !(last && buf_more)), index) {
                (Some(piece), Some(index)) => self.queue_piece(index, piece, part),
                (Some(piece), None) => self.pool.release(piece),
                (None, Some(index)) if part > 0 => {
                    // No free piece: these bytes cannot be kept in order,
                    // so the connection ends (counted), not the server.
                    self.more.piece_overflows += 1;
                    self.stats.conn_errors += 1;
                    self.conns[index].failed = true;
                }
                _ => {}
            }
            if last {
                return k + 1;
            }
            k += 1;
        }
    }

    /// Links one piece at the tail of the connection's queue: a piece
    /// has an id of its own above the buffers' ids, so it is linked exactly
    /// as `queue_buffer` (`bundle.rs`) links a whole buffer.
    fn queue_piece(&mut self, index: usize, piece: u16, len: u32) {
        self.queue_buffer(index, piece, len);
        self.more.inc_pieces += 1;
    }
}
// ANCHOR_END: queue_pieces
