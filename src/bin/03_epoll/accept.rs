//! The core: taking new connections. Accept what the listener has waiting,
//! a bounded number per turn, make each socket nonblocking, and give it a
//! slot in the table and a token in epoll. (Running out of descriptors
//! while accepting is hardening, in `descriptors.rs`.)

use std::io;
use std::net::TcpStream;

use nix::sys::epoll::EpollEvent;

use crate::Trigger;
use crate::conn::{Conn, Interest, flags, token};
use crate::descriptors::is_out_of_descriptors;
use crate::setup::Server;

impl Server {
    // ANCHOR: accept
    /// Accepts waiting connections, until EAGAIN or until this turn's share
    /// is used up.
    pub(crate) fn accept_waiting(&mut self) {
        // A turn of accepting has a limit, as a turn of reading has (see
        // `READS_PER_TURN`). Without one, a burst of connects keeps the loop
        // here until the whole accept queue is taken, up to 4096 clients
        // (our listen backlog), and meanwhile every connected client, and
        // SIGINT, waits. Stopping early loses nothing: the listener is
        // level-triggered, so the next epoll_wait reports it again while
        // connections wait. How many: each accept costs three system calls
        // (accept4, the ioctl that makes the socket nonblocking, epoll_ctl),
        // so with 64 the clients already connected wait for at most 192 of
        // them, not 12,288, and a full queue is still taken in 64 turns.
        const ACCEPTS_PER_TURN: u32 = 64;
        for _ in 0..ACCEPTS_PER_TURN {
            match self.listener.accept() {
                Ok((stream, _peer)) => self.register(stream),
                // The accept queue is empty: back to epoll_wait.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // EMFILE/ENFILE: out of descriptors. The trap: the listener
                // is level-triggered and still has connections waiting, so
                // the very next epoll_wait reports it again, accept fails
                // again, and the loop spins at 100% CPU doing nothing. So we
                // stop watching the listener until a connection closes (which
                // frees a descriptor) or the pause's time is up.
                Err(e) if is_out_of_descriptors(&e) => {
                    self.pause_accepting(&e);
                    return;
                }
                // The client gave up before we accepted it (ECONNABORTED), or
                // an interrupted call: the next one may work.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => {
                    eprintln!("accept failed: {e}");
                    return;
                }
            }
        }
    }
    // ANCHOR_END: accept

    // ANCHOR: register
    /// Puts a new connection in a free slot and tells epoll about it.
    fn register(&mut self, stream: TcpStream) {
        self.stats.accepted += 1;
        // An accepted socket starts out blocking, whatever the listener is.
        if let Err(e) = stream.set_nonblocking(true) {
            eprintln!("cannot make a connection nonblocking: {e}");
            return;
        }
        let index = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.generations.push(0);
            self.conns.len() - 1
        });
        self.generations[index] = self.generations[index].wrapping_add(1);
        let generation = self.generations[index];
        // Level: ask only for what we need now, which is "readable".
        // Edge: ask once for both, for good; the kernel reports each change.
        let interest = Interest {
            read: true,
            write: self.trigger == Trigger::Edge,
        };
        let event = EpollEvent::new(flags(interest, self.trigger), token(index, generation));
        if let Err(e) = self.epoll.add(&stream, event) {
            eprintln!("cannot watch a connection: {e}");
            self.free.push(index);
            return;
        }
        self.conns[index] = Some(Conn {
            stream,
            generation,
            queue: Vec::new(),
            sent: 0,
            peer_done: false,
            paused: false,
            interest,
            on_again: false,
        });
    }
    // ANCHOR_END: register
}
