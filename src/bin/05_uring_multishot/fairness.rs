//! Hardening: fairness. A quarter of the pool is a reserve that only exact
//! one-buffer receives draw from, one buffer at a time, for connections
//! that met an empty open pool and hold no buffer; and a line, oldest
//! first, for when the reserve is all promised. However many buffers peers
//! that never read are holding, a connection with empty hands still gets
//! one, at once or in its turn.

use std::io;

use io_uring::{opcode, squeue, types};

use crate::pool::RESERVE;
use crate::recv::Arm;
use crate::setup::Server;

// ANCHOR: fairness
impl Server {
    /// The receive for a starved connection (its receive met an empty open
    /// pool), by the fairness rule: from the reserve, with one exact
    /// one-buffer receive, and only once it holds no buffer at all; in
    /// line, oldest first, when the reserve is all promised. So each
    /// connection holds at most one reserve buffer at a time, and peers
    /// that never read cannot take more of the reserve than one buffer
    /// each. `None`: no receive now (the connection waits).
    pub(crate) fn reserve_recv(
        &mut self,
        index: usize,
        why: Arm,
        fd: types::Fd,
    ) -> Option<squeue::Entry> {
        if self.conns[index].held > 0 {
            return None; // `on_send` re-arms it once its last echo is out
        }
        let ahead = why != Arm::FromLine && !self.waiting.is_empty();
        if ahead || self.pool.reserve_unpromised() == 0 {
            self.wait_for_buffers(index);
            return None;
        }
        // Exactly one buffer, promised to this receive until it completes.
        self.pool.promised += 1;
        self.stats.reserve_recvs += 1;
        Some(one_buffer_recv(fd, RESERVE, self.buffer_size))
    }

    /// Puts the connection at the back of the line for buffers.
    fn wait_for_buffers(&mut self, index: usize) {
        let conn = &mut self.conns[index];
        if !conn.waiting {
            conn.waiting = true;
            self.waiting.push_back(index as u32);
            self.stats.waits += 1;
        }
    }

    /// Buffers came back: arm the connections in line, oldest first, one per
    /// free buffer: from the open pool while it has some (the connection is
    /// no longer starved), then from the reserve. Called after every batch,
    /// for any buffer returned by any connection, so no waiting connection
    /// depends on its own sends to wake it.
    pub(crate) fn wake_waiting(&mut self) -> io::Result<()> {
        let mut open = self.pool.open_available();
        let mut reserve = self.pool.reserve_unpromised();
        while open + reserve > 0 {
            let Some(index) = self.waiting.pop_front() else {
                break;
            };
            let conn = &mut self.conns[index as usize];
            conn.waiting = false;
            if open > 0 {
                conn.starved = false;
                open -= 1;
            } else {
                reserve -= 1;
            }
            self.arm_recv(index as usize, Arm::FromLine)?;
        }
        Ok(())
    }
}

/// A receive that takes exactly one buffer from `group` and ends: the
/// receive of lesson 04, with the kernel picking the buffer. It tries at
/// once: it is armed only for a starved connection, whose bytes wait.
fn one_buffer_recv(fd: types::Fd, group: u16, size: u32) -> squeue::Entry {
    opcode::Recv::new(fd, std::ptr::null_mut(), size)
        .buf_group(group)
        .build()
        .flags(squeue::Flags::BUFFER_SELECT)
}
// ANCHOR_END: fairness
