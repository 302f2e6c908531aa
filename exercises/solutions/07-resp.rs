//! Exercises 07-framing and 07-strlen, the reference solution.
//!
//! Both exercises change the same server, lesson 07 taken in file by file
//! (`exercises/programs/07-resp.rs`), each in a region of its own, so they
//! share this one solution: the server as it should be, with both regions
//! solved. Each region is a file of its own here: `07-framing.rs` (the
//! `frame` module: framing requests across buffers) and `07-strlen.rs`
//! (the `strlen` module: one more command).
//!
//! ```text
//! cargo run --bin echo-check -- --exercise 07-framing --solution
//! cargo run --bin echo-check -- --exercise 07-strlen --solution
//! ```

include!("../programs/07-resp.rs");

// ANCHOR: 07-strlen
#[path = "07-strlen.rs"]
mod strlen;
// ANCHOR_END: 07-strlen

#[cfg(target_os = "linux")]
// ANCHOR: 07-framing
#[path = "07-framing.rs"]
mod frame;
// ANCHOR_END: 07-framing
