//! The core, and the heart of this lesson: writing back. A nonblocking
//! `write` takes what fits in the socket's send buffer and returns; what
//! it did not take stays in the connection's queue, in order, until epoll
//! says there is room again.

use std::io::{self, Write};
use std::net::TcpStream;

use crate::conn::Conn;
use crate::stats::Stats;

// ANCHOR: echo
// ANCHOR: echo_fn
/// Sends `data` back, keeping whatever the socket does not take.
pub(crate) fn echo(conn: &mut Conn, data: &[u8], stats: &mut Stats) -> io::Result<()> {
    // Bytes already queued must go first, or the peer would get them out of
    // order: append, and let `flush` send them when the socket has room.
    if conn.queued() > 0 {
        // The front of the queue, `queue[..sent]`, is already sent. Drop it
        // once it is half the queue, before appending: otherwise a peer that
        // reads slowly but never lets the queue drain completely would make
        // it grow forever, however few bytes are actually unsent.
        if conn.sent >= conn.queue.len() / 2 {
            conn.queue.drain(..conn.sent);
            conn.sent = 0;
        }
        conn.queue.extend_from_slice(data);
        return Ok(());
    }
    let written = write_some(&mut conn.stream, data, stats)?;
    if written < data.len() {
        // The socket's send buffer is full: the peer is not reading as fast
        // as it sends. Keep the rest; epoll will say when there is room.
        stats.short_writes += 1;
        conn.queue.extend_from_slice(&data[written..]);
        conn.sent = 0;
    }
    Ok(())
}
// ANCHOR_END: echo_fn

// ANCHOR: flush
/// Sends as much of the queue as the socket takes now.
pub(crate) fn flush(conn: &mut Conn, stats: &mut Stats) -> io::Result<()> {
    while conn.queued() > 0 {
        let written = write_some(&mut conn.stream, &conn.queue[conn.sent..], stats)?;
        if written == 0 {
            return Ok(()); // full again; wait for the next "writable"
        }
        conn.sent += written;
    }
    // Drained. A queue that grew large is freed, not kept: an idle
    // connection should cost no buffer.
    conn.sent = 0;
    if conn.queue.capacity() > 64 * 1024 {
        conn.queue = Vec::new();
    } else {
        conn.queue.clear();
    }
    Ok(())
}
// ANCHOR_END: flush

// ANCHOR: write_some
/// One write(): how many bytes the kernel took, 0 when its buffer is full.
fn write_some(stream: &mut TcpStream, data: &[u8], stats: &mut Stats) -> io::Result<usize> {
    loop {
        stats.writes += 1;
        match stream.write(data) {
            Ok(n) => {
                stats.bytes += n as u64;
                return Ok(n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                stats.would_block += 1;
                return Ok(0);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
// ANCHOR_END: write_some
// ANCHOR_END: echo
