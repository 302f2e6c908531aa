//! 02_threads — a thread per connection.
//!
//! Lesson 01 served one client at a time because its only thread was busy
//! inside `read` or `write`. The simplest cure is more threads: the main
//! thread only accepts, and every connection gets a thread of its own running
//! the very same blocking loop. The kernel's scheduler now does the
//! multiplexing: whichever thread's socket has data is woken up and runs.
//!
//! It works, and for a few hundred clients it works well. The cost is per
//! thread: a stack (2 MiB of address space reserved, the pages it touches
//! resident), a kernel task with its own kernel stack, and a context switch
//! whenever the scheduler moves from one connection's thread to another's. At
//! 10,000 connections that is 10,000 threads; chapter 2 measures what they
//! cost, and lesson 03 serves them all from one thread.
//!
//! Run it:
//!
//! ```text
//! cargo run --bin 02_threads                          # no cap on threads
//! cargo run --bin 02_threads -- --max-threads 2       # at most two clients at once
//! nc 127.0.0.1 7878                                   # in several terminals
//! ```

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use clap::Parser;
use uring_echo_book::cli::CommonArgs;
use uring_echo_book::limits::raise_open_file_limit_or_warn;
use uring_echo_book::listen::{announce, bind_or_explain};
use uring_echo_book::signals::exit_on_signal;

// ANCHOR: args
/// An echo server with one thread per connection.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,

    /// Serve at most this many clients at once (default: no cap). Clients
    /// beyond the cap wait in the kernel's accept queue, as every second
    /// client did in lesson 01, until a thread finishes.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    max_threads: Option<u64>,
}
// ANCHOR_END: args

fn main() -> ExitCode {
    let args = Args::parse();
    raise_open_file_limit_or_warn();
    if let Err(e) = exit_on_signal() {
        eprintln!("error: cannot install the SIGINT/SIGTERM handler: {e}");
        return ExitCode::FAILURE;
    }

    // ANCHOR: setup
    // socket, SO_REUSEADDR, bind, listen: the four steps lesson 01 spelled
    // out, now in a library helper, with a deeper accept queue for bursts.
    let listener = match bind_or_explain(args.common.addr) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match listener.local_addr() {
        Ok(addr) => announce(addr),
        Err(e) => {
            eprintln!("error: cannot read the listening address: {e}");
            return ExitCode::FAILURE;
        }
    }

    // Even "no cap" has a ceiling: every thread takes four memory mappings
    // (its stack, the stack's guard page, and the same two for its signal
    // stack), and a process may have only `vm.max_map_count` of them. Past
    // that, a new thread dies while std sets it up, after `spawn` has said
    // yes, and std aborts the whole process with every client in it. So we
    // stop at the ceiling instead: further clients wait in the accept queue.
    let ceiling = thread_ceiling();
    let cap = match (args.max_threads, ceiling) {
        (Some(cap), Some(ceiling)) if cap > ceiling => Some(ceiling),
        (None, ceiling) => ceiling,
        (cap, _) => cap,
    };
    if cap != args.max_threads {
        eprintln!(
            "at most {} threads at once: vm.max_map_count allows no more",
            cap.unwrap_or_default()
        );
    }
    let slots = Slots::new(cap);
    accept_loop(&listener, &slots);
    // ANCHOR_END: setup
    ExitCode::SUCCESS
}

// ANCHOR: accept
/// Accepts clients forever and hands each one to a new thread.
fn accept_loop(listener: &TcpListener, slots: &Arc<Slots>) {
    loop {
        // With a cap, wait for a free slot *before* accepting: clients beyond
        // the cap stay in the kernel's queue, where they cost us nothing.
        let slot = slots.take();
        match listener.accept() {
            Ok((stream, peer)) => {
                // Each connection gets a thread of its own. `spawn` can fail:
                // the system's thread limit (`ulimit -u`,
                // /proc/sys/kernel/threads-max) or memory runs out long before
                // descriptors do. `thread::spawn` would panic then, and take
                // every other client down with it; `Builder::spawn` returns
                // the error, and dropping the closure closes this one socket.
                // One limit is not caught here: the memory-map limit, which
                // the cap computed in `main` keeps us below.
                let spawned = thread::Builder::new().spawn(move || {
                    // The slot is returned when this thread ends, however it ends.
                    let _slot = slot;
                    if let Err(e) = serve(stream) {
                        eprintln!("{peer}: {e}");
                    }
                });
                // The JoinHandle is dropped at once: the thread is detached,
                // nobody waits for it, and it cleans up after itself.
                if let Err(e) = spawned {
                    eprintln!("{peer}: cannot start a thread ({e}); closing this connection");
                }
            }
            Err(e) => {
                eprintln!("accept failed: {e}");
                if is_out_of_descriptors(&e) {
                    // EMFILE/ENFILE: every descriptor is in use. Accepting
                    // again at once fails the same way; wait until some
                    // thread has likely closed its client.
                    thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
}
// ANCHOR_END: accept

/// The most threads the memory-map limit allows, where the system says
/// (Linux): four mappings per thread, with room left for the rest of the
/// process (its code, libraries and heap take a few dozen).
fn thread_ceiling() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/sys/vm/max_map_count").ok()?;
    let maps: u64 = text.trim().parse().ok()?;
    Some(maps.saturating_sub(1024) / 4).filter(|&n| n > 0)
}

/// EMFILE (this process) or ENFILE (the whole system) ran out of descriptors.
fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(23 | 24)) // ENFILE, EMFILE
}

// ANCHOR: serve
/// Echoes one client's bytes back until it closes its side: lesson 01's loop,
/// unchanged. Blocking is fine now, because only this client's thread waits.
fn serve(mut stream: TcpStream) -> io::Result<()> {
    let mut buf = [0u8; 4096];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        // Partial writes are completed here too: a thread that waits for its
        // slow reader holds up nobody else.
        stream.write_all(&buf[..n])?;
    }
}
// ANCHOR_END: serve

// ANCHOR: slots
/// A counting semaphore: how many connection threads may run at once.
struct Slots {
    cap: Option<u64>,
    running: Mutex<u64>,
    freed: Condvar,
}

/// One running connection thread; dropping it frees the slot.
struct Slot(Arc<Slots>);

impl Slots {
    fn new(cap: Option<u64>) -> Arc<Slots> {
        Arc::new(Slots {
            cap,
            running: Mutex::new(0),
            freed: Condvar::new(),
        })
    }

    /// Blocks while `cap` threads are running, then takes a slot.
    fn take(self: &Arc<Self>) -> Slot {
        // A poisoned lock only means a thread panicked while holding it; the
        // count itself is still right, so carry on with it.
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        while self.cap.is_some_and(|cap| *running >= cap) {
            running = self.freed.wait(running).unwrap_or_else(|p| p.into_inner());
        }
        *running += 1;
        Slot(Arc::clone(self))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut running = self.0.running.lock().unwrap_or_else(|p| p.into_inner());
        *running -= 1;
        self.0.freed.notify_one();
    }
}
// ANCHOR_END: slots
