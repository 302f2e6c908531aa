//! Exercise 07-strlen: one more command.
//!
//! Lesson 07, whole, with one command more in front of its command table:
//! STRLEN, which the region below is to answer. The rest of the server is
//! `exercises/programs/07-resp.rs` (lesson 07's own files), and its framing
//! is exercise 07-framing's region, solved, in
//! `exercises/solutions/07-framing.rs`; you need not change it.
//!
//! Run it, and grade it:
//!
//! ```text
//! cargo run --example 07-strlen                           # listens on 127.0.0.1:7878
//! redis-cli -p 7878 set k hello; redis-cli -p 7878 strlen k
//! cargo run --bin echo-check -- --exercise 07-strlen      # builds, starts and grades it
//! ```
//!
//! The statement is `exercises/07-strlen/README.md`.

include!("../programs/07-resp.rs");

#[cfg(target_os = "linux")]
// Exercise 07-framing's region, solved: framing across buffers.
#[path = "../solutions/07-framing.rs"]
mod frame;

// ANCHOR: todo
mod strlen {
    use crate::commands::{After, Request};
    use crate::reply::{Full, Reply};
    use crate::store::Store;

    /// `STRLEN key`: the length of the key's value, 0 for a key that is not
    /// there.
    pub(crate) fn strlen(
        request: &Request,
        store: &mut Store,
        now: u64,
        reply: &mut Reply,
    ) -> Result<After, Full> {
        // TODO: answer as Redis does: `:5` for a value of 5 bytes, `:0` for
        // a key that is not there (or has expired), and Redis's error for a
        // wrong number of arguments. `store.get` and `reply.integer` are
        // what the lesson's GET and DEL use (src/bin/07_uring_resp/).
        let _ = (request, store, now);
        reply.error(&[b"ERR STRLEN is not written yet"]);
        Ok(After::Continue)
    }
}
// ANCHOR_END: todo
