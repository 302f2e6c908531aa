//! Hardening: fairness in edge mode. A connection gets at most
//! `READS_PER_TURN` reads per event (see `drive.rs`). In level mode epoll
//! reports the bytes it left unread again by itself; in edge mode it will
//! not, so the connection goes on the server's `again` list, once, and the
//! event loop serves that list after every batch of events.

use crate::Trigger;
use crate::conn::{Conn, untoken};
use crate::setup::Server;

impl Server {
    // ANCHOR: again
    /// A connection's turn ran out with bytes perhaps still unread.
    pub(crate) fn put_on_again(&mut self, index: usize, token: u64) {
        // Edge mode: epoll will not report those bytes again, so we
        // remember them, but only once. A connection still on `again` from
        // the last turn that has an event this turn as well would otherwise
        // go on twice, and, streaming on, once more every turn: more turns
        // for it than for everyone else, and reads for nothing.
        if self.trigger == Trigger::Edge
            && let Some(conn) = self.conns[index].as_mut()
            && !conn.on_again
        {
            conn.on_again = true;
            // The flag and the list agree; debug builds (the tests) check
            // it.
            debug_assert!(!self.again.contains(&token), "on `again` twice");
            self.again.push_back(token);
        }
    }

    /// Edge mode: the connections whose turn ran out get their next one,
    /// first come first served. A turn that runs out again queues behind
    /// these.
    pub(crate) fn serve_again(&mut self) {
        for _ in 0..self.again.len() {
            let Some(token) = self.again.pop_front() else {
                break;
            };
            // Off the list: if this turn runs out too, it goes back on.
            if let Some(conn) = self.conn_mut(token) {
                conn.on_again = false;
            }
            self.on_ready(token);
        }
    }

    /// The open connection a token names, if there still is one: its slot
    /// must hold a connection of the token's generation (see `token` in
    /// `conn.rs`).
    fn conn_mut(&mut self, token: u64) -> Option<&mut Conn> {
        let (index, generation) = untoken(token);
        self.conns
            .get_mut(index)?
            .as_mut()
            .filter(|conn| conn.generation == generation)
    }
    // ANCHOR_END: again
}
