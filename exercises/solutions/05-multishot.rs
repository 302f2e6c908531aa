//! Exercises 05-early-recycle and 05-rearm, the reference solution.
//!
//! Both exercises plant a bug in the same compact multishot server,
//! `exercises/programs/05-multishot.rs`, each in a region of its own, so
//! they share this one solution: the server as it should be, with both
//! regions solved. Each region, and what was wrong with it, is a file of
//! its own here: `05-early-recycle.rs` (`send_next` and `on_send`: when a
//! buffer may go back into the ring) and `05-rearm.rs` (`on_recv`: which
//! completion ends a multishot receive).
//!
//! ```text
//! cargo run --bin echo-check -- --exercise 05-early-recycle --solution
//! cargo run --bin echo-check -- --exercise 05-rearm --solution
//! ```

include!("../programs/05-multishot.rs");

#[cfg(target_os = "linux")]
// ANCHOR: 05-early-recycle
#[path = "05-early-recycle.rs"]
mod recycle;
// ANCHOR_END: 05-early-recycle

#[cfg(target_os = "linux")]
// ANCHOR: 05-rearm
#[path = "05-rearm.rs"]
mod rearm;
// ANCHOR_END: 05-rearm
