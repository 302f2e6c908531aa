//! The core: the command table. Each command reads its arguments (spans
//! of the received bytes, never copies), works on the map, and appends its
//! reply. A reply that would not fit in the connection's reply buffer
//! returns `Full` *before* the command changes anything, so the request can
//! run again, whole, once sends have made room.

use crate::reply::{Full, Reply};
use crate::resp::decimal;
use crate::store::{OutOfMemory, Store};

// ANCHOR: request
// ANCHOR: request_types
/// One request's arguments: spans of `base`, the bytes they were parsed from.
pub(crate) struct Request<'a> {
    pub(crate) base: &'a [u8],
    pub(crate) spans: &'a [(u32, u32)],
}

impl Request<'_> {
    pub(crate) fn len(&self) -> usize {
        self.spans.len()
    }
    pub(crate) fn arg(&self, i: usize) -> &[u8] {
        let (start, end) = self.spans[i];
        &self.base[start as usize..end as usize]
    }
}

/// What the connection does after a command.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum After {
    Continue,
    /// QUIT: close once the replies are sent.
    Close,
}

type Run = fn(&Request, &mut Store, u64, &mut Reply) -> Result<After, Full>;

/// A command: its name, its arity as Redis states it (N: exactly N
/// arguments with the name; -N: at least N), and its code.
struct Command {
    name: &'static str,
    arity: i32,
    run: Run,
}
// ANCHOR_END: request_types

/// The table: the commands `redis-benchmark -t ping_inline,set,get` and
/// `redis-cli` use first, since the lookup reads it in order.
const COMMANDS: &[Command] = &[
    Command {
        name: "get",
        arity: 2,
        run: get,
    },
    Command {
        name: "set",
        arity: -3,
        run: set,
    },
    Command {
        name: "ping",
        arity: -1,
        run: ping,
    },
    Command {
        name: "del",
        arity: -2,
        run: del,
    },
    Command {
        name: "exists",
        arity: -2,
        run: exists,
    },
    Command {
        name: "incr",
        arity: 2,
        run: incr,
    },
    Command {
        name: "echo",
        arity: 2,
        run: echo,
    },
    Command {
        name: "flushdb",
        arity: -1,
        run: flushdb,
    },
    Command {
        name: "quit",
        arity: -1,
        run: quit,
    },
    Command {
        name: "select",
        arity: 2,
        run: select,
    },
    Command {
        name: "config",
        arity: -2,
        run: config,
    },
    Command {
        name: "command",
        arity: -1,
        run: command,
    },
];

// ANCHOR: execute
/// Runs one request: finds its command (case does not matter), checks its
/// arity, runs it. Unknown commands and wrong arities get Redis's errors.
pub(crate) fn execute(
    request: &Request,
    store: &mut Store,
    now: u64,
    reply: &mut Reply,
) -> Result<After, Full> {
    let name = request.arg(0);
    let Some(command) = COMMANDS
        .iter()
        .find(|c| c.name.as_bytes().eq_ignore_ascii_case(name))
    else {
        unknown(request, reply);
        return Ok(After::Continue);
    };
    let n = request.len() as i32;
    if (command.arity > 0 && n != command.arity) || n < -command.arity {
        let name = command.name.as_bytes();
        reply.error(&[b"ERR wrong number of arguments for '", name, b"' command"]);
        return Ok(After::Continue);
    }
    (command.run)(request, store, now, reply)
}
// ANCHOR_END: execute

/// Redis's words: the name, and the first arguments, each cut so that the
/// whole stays within 128 bytes, with line breaks made spaces.
fn unknown(request: &Request, reply: &mut Reply) {
    reply.raw(b"-ERR unknown command '");
    quoted(reply, request.arg(0), 128);
    reply.raw(b"', with args beginning with: ");
    let mut quoted_len = 0;
    for i in 1..request.len() {
        if quoted_len >= 128 {
            break;
        }
        let arg = request.arg(i);
        let take = arg.len().min(128 - quoted_len);
        reply.raw(b"'");
        quoted(reply, &arg[..take], take);
        reply.raw(b"' ");
        quoted_len += take + 3;
    }
    reply.raw(b"\r\n");
}

/// Copies up to `most` bytes, a `\r` or `\n` as a space (a reply line
/// must not break).
fn quoted(reply: &mut Reply, text: &[u8], most: usize) {
    for &b in &text[..text.len().min(most)] {
        reply.raw(&[if b == b'\r' || b == b'\n' { b' ' } else { b }]);
    }
}
// ANCHOR_END: request

const NOT_AN_INTEGER: &[u8] = b"ERR value is not an integer or out of range";
const OOM: &[u8] = b"OOM command not allowed when used memory > 'maxmemory'.";

// ANCHOR: commands
// ANCHOR: get_set
fn get(request: &Request, store: &mut Store, now: u64, reply: &mut Reply) -> Result<After, Full> {
    match store.get(request.arg(1), now) {
        Some(entry) if !reply.fits_bulk(entry.value.len()) => return Err(Full),
        Some(entry) => reply.bulk(&entry.value),
        None => reply.null(),
    }
    Ok(After::Continue)
}

/// `SET key value [EX seconds | PX milliseconds]`.
fn set(request: &Request, store: &mut Store, now: u64, reply: &mut Reply) -> Result<After, Full> {
    let mut expires = None;
    let mut i = 3;
    while i < request.len() {
        let option = request.arg(i);
        let unit = if option.eq_ignore_ascii_case(b"EX") {
            1000
        } else if option.eq_ignore_ascii_case(b"PX") {
            1
        } else {
            0
        };
        if unit == 0 || expires.is_some() || i + 1 == request.len() {
            reply.error(&[b"ERR syntax error"]);
            return Ok(After::Continue);
        }
        let Some(n) = decimal(request.arg(i + 1)) else {
            reply.error(&[NOT_AN_INTEGER]);
            return Ok(After::Continue);
        };
        match n.checked_mul(unit).filter(|&ms| ms > 0) {
            Some(ms) => expires = Some(now.saturating_add(ms as u64)),
            None => {
                reply.error(&[b"ERR invalid expire time in 'set' command"]);
                return Ok(After::Continue);
            }
        }
        i += 2;
    }
    match store.set(request.arg(1), request.arg(2), expires) {
        Ok(()) => reply.simple(b"OK"),
        Err(OutOfMemory) => reply.error(&[OOM]),
    }
    Ok(After::Continue)
}
// ANCHOR_END: get_set

fn ping(request: &Request, _: &mut Store, _: u64, reply: &mut Reply) -> Result<After, Full> {
    match request.len() {
        1 => reply.simple(b"PONG"),
        2 if reply.fits_bulk(request.arg(1).len()) => reply.bulk(request.arg(1)),
        2 => return Err(Full),
        _ => reply.error(&[b"ERR wrong number of arguments for 'ping' command"]),
    }
    Ok(After::Continue)
}

fn echo(request: &Request, _: &mut Store, _: u64, reply: &mut Reply) -> Result<After, Full> {
    if !reply.fits_bulk(request.arg(1).len()) {
        return Err(Full);
    }
    reply.bulk(request.arg(1));
    Ok(After::Continue)
}

fn del(request: &Request, store: &mut Store, now: u64, reply: &mut Reply) -> Result<After, Full> {
    let mut n = 0;
    for i in 1..request.len() {
        // Through `get` first: an expired key counts as absent.
        if store.get(request.arg(i), now).is_some() && store.delete(request.arg(i)) {
            n += 1;
        }
    }
    reply.integer(n);
    Ok(After::Continue)
}

fn exists(
    request: &Request,
    store: &mut Store,
    now: u64,
    reply: &mut Reply,
) -> Result<After, Full> {
    let n = (1..request.len())
        .filter(|&i| store.get(request.arg(i), now).is_some())
        .count();
    reply.integer(n as i64);
    Ok(After::Continue)
}

/// `INCR key`: the value read as a decimal i64, plus one; a missing key
/// counts as 0. The expiry, if any, stays.
fn incr(request: &Request, store: &mut Store, now: u64, reply: &mut Reply) -> Result<After, Full> {
    let key = request.arg(1);
    let (value, expires) = match store.get(key, now) {
        Some(entry) => match decimal(&entry.value) {
            Some(v) => (v, entry.expires),
            None => {
                reply.error(&[NOT_AN_INTEGER]);
                return Ok(After::Continue);
            }
        },
        None => (0, None),
    };
    let Some(value) = value.checked_add(1) else {
        reply.error(&[b"ERR increment or decrement would overflow"]);
        return Ok(After::Continue);
    };
    let mut digits = [0u8; 20];
    let text = crate::reply::format_decimal(value, &mut digits);
    match store.set(key, text, expires) {
        Ok(()) => reply.integer(value),
        Err(OutOfMemory) => reply.error(&[OOM]),
    }
    Ok(After::Continue)
}

fn flushdb(_: &Request, store: &mut Store, _: u64, reply: &mut Reply) -> Result<After, Full> {
    store.clear();
    reply.simple(b"OK");
    Ok(After::Continue)
}

fn quit(_: &Request, _: &mut Store, _: u64, reply: &mut Reply) -> Result<After, Full> {
    reply.simple(b"OK");
    Ok(After::Close)
}
// ANCHOR_END: commands

// ANCHOR: handshake
/// `SELECT 0`: there is one database, number 0.
fn select(request: &Request, _: &mut Store, _: u64, reply: &mut Reply) -> Result<After, Full> {
    match decimal(request.arg(1)) {
        Some(0) => reply.simple(b"OK"),
        Some(_) => reply.error(&[b"ERR DB index is out of range"]),
        None => reply.error(&[NOT_AN_INTEGER]),
    }
    Ok(After::Continue)
}

/// `CONFIG GET name...`: `redis-benchmark` asks for `save` and
/// `appendonly` before it starts, to print them. This server saves
/// nothing, and says so; any other name gets no pair, as in Redis.
fn config(request: &Request, _: &mut Store, _: u64, reply: &mut Reply) -> Result<After, Full> {
    if !request.arg(1).eq_ignore_ascii_case(b"GET") || request.len() < 3 {
        reply.error(&[b"ERR unknown subcommand or wrong number of arguments. Try CONFIG HELP."]);
        return Ok(After::Continue);
    }
    let known = |name: &[u8]| -> Option<(&'static [u8], &'static [u8])> {
        if name.eq_ignore_ascii_case(b"save") {
            Some((&b"save"[..], &b""[..]))
        } else if name.eq_ignore_ascii_case(b"appendonly") {
            Some((&b"appendonly"[..], &b"no"[..]))
        } else {
            None
        }
    };
    let pairs = (2..request.len()).filter_map(|i| known(request.arg(i)));
    reply.array(2 * pairs.clone().count());
    for (name, value) in pairs {
        reply.bulk(name);
        reply.bulk(value);
    }
    Ok(After::Continue)
}

/// `COMMAND`, `COMMAND DOCS`: `redis-cli` asks for the command table to
/// give hints as you type. An empty array: no hints, and it carries on.
fn command(_: &Request, _: &mut Store, _: u64, reply: &mut Reply) -> Result<After, Full> {
    reply.array(0);
    Ok(After::Continue)
}
// ANCHOR_END: handshake

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `words` as one request on `store`, returns the reply.
    fn run(store: &mut Store, now: u64, words: &[&str]) -> String {
        let base: Vec<u8> = words.concat().into_bytes();
        let mut spans = Vec::new();
        let mut at = 0u32;
        for w in words {
            spans.push((at, at + w.len() as u32));
            at += w.len() as u32;
        }
        let request = Request {
            base: &base,
            spans: &spans,
        };
        let mut memory = vec![0u8; 4096];
        let mut reply = Reply::new(&mut memory);
        execute(&request, store, now, &mut reply).unwrap();
        let n = reply.written;
        String::from_utf8_lossy(&memory[..n]).into_owned()
    }

    #[test]
    fn the_subset_answers_as_redis_does() {
        let mut s = Store::new(1 << 20);
        assert_eq!(run(&mut s, 0, &["PING"]), "+PONG\r\n");
        assert_eq!(run(&mut s, 0, &["ping", "hi"]), "$2\r\nhi\r\n");
        assert_eq!(run(&mut s, 0, &["SET", "k", "v"]), "+OK\r\n");
        assert_eq!(run(&mut s, 0, &["get", "k"]), "$1\r\nv\r\n");
        assert_eq!(run(&mut s, 0, &["GET", "nope"]), "$-1\r\n");
        assert_eq!(run(&mut s, 0, &["EXISTS", "k", "k", "x"]), ":2\r\n");
        assert_eq!(run(&mut s, 0, &["INCR", "n"]), ":1\r\n");
        assert_eq!(run(&mut s, 0, &["INCR", "n"]), ":2\r\n");
        assert_eq!(
            run(&mut s, 0, &["INCR", "k"]),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(run(&mut s, 0, &["DEL", "k", "n", "x"]), ":2\r\n");
        assert_eq!(run(&mut s, 0, &["ECHO", "e"]), "$1\r\ne\r\n");
        assert_eq!(
            run(&mut s, 0, &["GET"]),
            "-ERR wrong number of arguments for 'get' command\r\n"
        );
        assert_eq!(
            run(&mut s, 0, &["FOO", "a", "b"]),
            "-ERR unknown command 'FOO', with args beginning with: 'a' 'b' \r\n"
        );
        assert_eq!(
            run(&mut s, 0, &["CONFIG", "GET", "save"]),
            "*2\r\n$4\r\nsave\r\n$0\r\n\r\n"
        );
        assert_eq!(run(&mut s, 0, &["FLUSHDB"]), "+OK\r\n");
    }

    #[test]
    fn set_with_an_expiry() {
        let mut s = Store::new(1 << 20);
        assert_eq!(
            run(&mut s, 1000, &["SET", "k", "v", "PX", "100"]),
            "+OK\r\n"
        );
        assert_eq!(run(&mut s, 1099, &["GET", "k"]), "$1\r\nv\r\n");
        assert_eq!(run(&mut s, 1100, &["GET", "k"]), "$-1\r\n");
        assert_eq!(run(&mut s, 0, &["SET", "k", "v", "ex", "1"]), "+OK\r\n");
        assert_eq!(run(&mut s, 999, &["EXISTS", "k"]), ":1\r\n");
        assert_eq!(
            run(&mut s, 0, &["SET", "k", "v", "EX", "0"]),
            "-ERR invalid expire time in 'set' command\r\n"
        );
        assert_eq!(
            run(&mut s, 0, &["SET", "k", "v", "EX", "x"]),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(
            run(&mut s, 0, &["SET", "k", "v", "NX"]),
            "-ERR syntax error\r\n"
        );
        assert_eq!(
            run(&mut s, 0, &["SET", "k", "v", "EX", "1", "PX", "1"]),
            "-ERR syntax error\r\n"
        );
    }

    #[test]
    fn a_full_store_refuses_writes_with_redis_words() {
        let mut s = Store::new(100);
        assert_eq!(
            run(&mut s, 0, &["SET", "k", &"v".repeat(100)]),
            "-OOM command not allowed when used memory > 'maxmemory'.\r\n"
        );
    }
}
