//! Exercise 01-end-of-file, the reference solution.
//!
//! `read` returns 0 when the peer has closed its side: there will never be
//! more bytes. The starter treated that 0 as a message of zero bytes, echoed
//! nothing, and read again, which returned 0 again at once: a busy loop on a
//! dead connection that never went back to `accept`.
//!
//! Only `serve` differs from the starter; the rest of the server is
//! `exercises/programs/01-end-of-file.rs`.
//!
//! ```text
//! cargo run --bin echo-check -- --exercise 01-end-of-file --solution
//! ```

include!("../programs/01-end-of-file.rs");

// ANCHOR: solution
mod todo {
    use std::io::{self, Read, Write};
    use std::net::TcpStream;

    /// Echoes everything the client sends until the client is done.
    pub fn serve(mut stream: TcpStream) -> io::Result<()> {
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf)?;
            // Zero bytes is not an empty message: it is the end of the
            // stream. The peer has closed its side, and every later read
            // returns 0 at once, so looping on would spin forever on a
            // finished client.
            if n == 0 {
                return Ok(());
            }
            stream.write_all(&buf[..n])?;
        }
    }
}
// ANCHOR_END: solution
