//! A connection's life: a slot and a generation, then a receive, a send of
//! what arrived (again for the rest, if the send was short), the next
//! receive, and at the end the close. The core of the echo.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use io_uring::{opcode, types};
use nix::libc;

use crate::conn::{Conn, KernelBuf, Kind, pack};
use crate::setup::Server;

impl Server {
    // ANCHOR: register
    pub(crate) fn live(&self) -> usize {
        self.conns.len() - self.free.len()
    }

    /// Puts a new connection in a free slot and asks for its first bytes.
    pub(crate) fn register(&mut self, socket: OwnedFd) -> io::Result<()> {
        let index = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.generations.push(0);
            self.conns.len() - 1
        });
        self.generations[index] = (self.generations[index] + 1) & 0xff_ffff;
        self.conns[index] = Some(Conn {
            socket,
            generation: self.generations[index],
            buf: KernelBuf::new(self.buffer_size),
            filled: 0,
            sent: 0,
            in_flight: None,
        });
        self.submit_recv(index)
    }
    // ANCHOR_END: register

    // ANCHOR: recv_send
    /// Asks the kernel to receive into the connection's buffer.
    fn submit_recv(&mut self, index: usize) -> io::Result<()> {
        let Some(conn) = self.conns[index].as_mut() else {
            return Ok(());
        };
        let entry = opcode::Recv::new(
            types::Fd(conn.socket.as_raw_fd()),
            conn.buf.addr(0),
            conn.buf.len() as u32,
        )
        .build()
        .user_data(pack(Kind::Recv, index, conn.generation));
        conn.in_flight = Some(Kind::Recv);
        // SAFETY: the kernel writes into `conn.buf`. Its bytes stay where
        // they are when `conns` grows (only the `KernelBuf`, an address,
        // moves), and no code of ours reads or writes them: we only pass
        // their address. They are freed only with the `Conn`: by `close`,
        // which runs only from this connection's completion, with
        // `in_flight` back to `None`; by `shutdown`, which clears `conns`
        // only after every completion; or never, when the server is dropped
        // with requests in flight (`Server`'s `Drop` leaks `conns`).
        unsafe { self.push(entry) }
    }

    /// Asks the kernel to send what is left of the buffer: `buf[sent..filled]`.
    fn submit_send(&mut self, index: usize) -> io::Result<()> {
        let Some(conn) = self.conns[index].as_mut() else {
            return Ok(());
        };
        // MSG_NOSIGNAL: a peer that has gone away makes the send fail with
        // EPIPE instead of raising SIGPIPE.
        let entry = opcode::Send::new(
            types::Fd(conn.socket.as_raw_fd()),
            conn.buf.addr(conn.sent),
            (conn.filled - conn.sent) as u32,
        )
        .flags(libc::MSG_NOSIGNAL)
        .build()
        .user_data(pack(Kind::Send, index, conn.generation));
        conn.in_flight = Some(Kind::Send);
        // SAFETY: the kernel reads `conn.buf[sent..filled]`; the same
        // argument as for the receive: the bytes do not move, are freed only
        // after this request's completion, and we do not touch them.
        unsafe { self.push(entry) }
    }

    pub(crate) fn on_recv(&mut self, index: usize, res: i32) -> io::Result<()> {
        self.stats.recvs += 1;
        let Some(conn) = self.conns[index].as_mut() else {
            return Ok(());
        };
        if res <= 0 || self.stopping {
            // 0: the peer closed its side, and everything it sent has been
            // echoed (we receive only after sending all of the last
            // message), so we close too. Negative: ECONNRESET and friends.
            return self.close(index);
        }
        conn.filled = res as usize;
        conn.sent = 0;
        self.submit_send(index)
    }

    pub(crate) fn on_send(&mut self, index: usize, res: i32) -> io::Result<()> {
        self.stats.sends += 1;
        let Some(conn) = self.conns[index].as_mut() else {
            return Ok(());
        };
        if res < 0 || self.stopping {
            return self.close(index); // EPIPE, ECONNRESET: the peer is gone
        }
        conn.sent += res as usize;
        if conn.sent < conn.filled {
            // A short send: the socket's buffer had room for part only.
            // Not an error. Send the rest, from where the kernel stopped,
            // before receiving anything new, so bytes keep their order.
            self.stats.short_sends += 1;
            return self.submit_send(index);
        }
        self.submit_recv(index)
    }
    // ANCHOR_END: recv_send

    // ANCHOR: close
    /// Closes a connection. Called only from a completion, so the kernel
    /// holds nothing of it any more and its buffer may be freed.
    fn close(&mut self, index: usize) -> io::Result<()> {
        if let Some(conn) = self.conns[index].take() {
            debug_assert!(
                conn.in_flight.is_none(),
                "a buffer freed while the kernel holds it"
            );
            drop(conn); // close(2) on the socket, free(3) on the buffer
            self.free.push(index);
            self.stats.closed += 1;
        }
        // A descriptor and a slot are free: resume accepting if it paused.
        self.submit_accept()
    }
    // ANCHOR_END: close
}
