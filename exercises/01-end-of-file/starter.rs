//! Exercise 01-end-of-file: the client that left.
//!
//! This is lesson 01's server with one line changed, the way it is often
//! written from memory. It answers the first client perfectly. Then nobody
//! else is ever served, and one CPU runs at 100%.
//!
//! The line is in `serve`, below. The rest of the server (options, `main`,
//! the accept loop) is `exercises/programs/01-end-of-file.rs`, included on
//! the first line of code; you need not change it.
//!
//! Run it, and grade it:
//!
//! ```text
//! cargo run --example 01-end-of-file                       # listens on 127.0.0.1:7878
//! cargo run --bin echo-check -- --exercise 01-end-of-file  # builds, starts and grades it
//! ```
//!
//! The statement is `exercises/01-end-of-file/README.md`.

include!("../programs/01-end-of-file.rs");

// ANCHOR: todo
mod todo {
    use std::io::{self, Read, Write};
    use std::net::TcpStream;

    /// Echoes everything the client sends until the client is done.
    pub fn serve(mut stream: TcpStream) -> io::Result<()> {
        let mut buf = [0u8; 4096];
        loop {
            // TODO: once the first client hangs up, this loop never lets the
            // server serve anyone else. Find out why (`strace -p PID` shows it
            // in a second), then fix it here.
            let n = stream.read(&mut buf)?;
            stream.write_all(&buf[..n])?;
        }
    }
}
// ANCHOR_END: todo
