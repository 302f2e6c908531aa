//! 04_hello_ring — one request through io_uring, and nothing else.
//!
//! Before chapter 04's server, the smallest program that uses a ring: it
//! asks the kernel to read a file into a buffer, waits for the answer, and
//! prints it. Run it with `cargo run --example 04_hello_ring`.

#[cfg(target_os = "linux")]
fn main() -> std::process::ExitCode {
    use std::os::fd::AsRawFd;

    use io_uring::{IoUring, opcode, types};

    // ANCHOR: hello
    // One ring: a submission queue of 8 entries and a completion queue of 16,
    // both mapped into our memory by the kernel (`mmap`).
    let mut ring = match IoUring::new(8) {
        Ok(ring) => ring,
        Err(e) => {
            eprintln!(
                "no ring: {}",
                uring_echo_book::uring::explain_setup_error(&e)
            );
            return std::process::ExitCode::FAILURE;
        }
    };
    let file = std::fs::File::open("/proc/version").expect("/proc/version opens");
    let mut buf = [0u8; 256];

    // The request: "read into `buf` from this file". 42 is our tag: the
    // kernel copies it into the completion without looking at it.
    let read = opcode::Read::new(types::Fd(file.as_raw_fd()), buf.as_mut_ptr(), 256)
        .build()
        .user_data(42);
    // SAFETY: the kernel will write up to 256 bytes into `buf` and read the
    // file's descriptor at some later moment. Both live until the end of
    // `main`, and we wait for the completion below before touching `buf`.
    unsafe { ring.submission().push(&read).expect("the queue has room") };

    // One system call: submit the queued entry and sleep until one
    // completion is there.
    ring.submit_and_wait(1).expect("io_uring_enter");

    // The answer: our tag back, and `res`, bytes read (or minus an errno).
    let cqe = ring.completion().next().expect("one completion");
    println!("user_data {} res {}", cqe.user_data(), cqe.result());
    if let Ok(n) = usize::try_from(cqe.result()) {
        print!("{}", String::from_utf8_lossy(&buf[..n]));
    }
    // ANCHOR_END: hello
    std::process::ExitCode::SUCCESS
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("04_hello_ring needs Linux: io_uring is a Linux interface");
    std::process::exit(1);
}
