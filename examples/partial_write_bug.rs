//! partial_write_bug — an echo server with the bug many copied servers have.
//!
//! It writes each chunk once and forgets whatever the kernel did not take.
//! Typed into `nc` it looks perfect; against a peer that is slow to read, it
//! silently loses bytes. Grade it and see which check catches it:
//!
//! ```text
//! cargo run --example partial_write_bug -- --addr 127.0.0.1:7000
//! cargo run --bin echo-check -- 127.0.0.1:7000
//! ```
//!
//! (The socket is made nonblocking for the write so the short write happens
//! every time a peer's buffers are full; an epoll server that ignores the
//! count `write` returns loses bytes the same way.)

use std::io::{Read, Write};
use std::net::TcpListener;
use std::thread;

use clap::Parser;
use uring_echo_book::cli::CommonArgs;
use uring_echo_book::listen::announce;

/// A deliberately broken echo server, for the grader to catch.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let listener = TcpListener::bind(args.common.addr)?;
    announce(listener.local_addr()?);
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stream.read(&mut buf) {
                let _ = stream.set_nonblocking(true);
                // THE BUG: `write` may take fewer than `n` bytes, or none
                // (EAGAIN); the rest is dropped on the floor.
                let _ = stream.write(&buf[..n]);
                let _ = stream.set_nonblocking(false);
            }
        });
    }
    Ok(())
}
