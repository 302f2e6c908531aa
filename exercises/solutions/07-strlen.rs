//! Exercise 07-strlen, the reference solution: the `strlen` region of the
//! server in `exercises/programs/07-resp.rs`, solved. The reference
//! solution's program, `exercises/solutions/07-resp.rs`, takes it in, and
//! so does exercise 07-framing's starter.
//!
//! A command reads its arguments (spans of the received bytes), checks its
//! arity first, and appends exactly one reply. The length comes from the
//! map through `get`, which deletes an expired key on the way.

// ANCHOR: solution
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
    if request.len() != 2 {
        reply.error(&[b"ERR wrong number of arguments for 'strlen' command"]);
        return Ok(After::Continue);
    }
    // Through `get`, which deletes a key that has expired: it counts as not
    // there, as in Redis.
    let len = store.get(request.arg(1), now).map_or(0, |e| e.value.len());
    reply.integer(len as i64);
    Ok(After::Continue)
}
// ANCHOR_END: solution
