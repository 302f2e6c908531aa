//! The RESP checks themselves (see `resp::CHECKS`), and `strlen`, which
//! exercise 07-strlen uses. Each passes against `redis-server` 7 as well:
//! `tests/resp.rs` runs them against it.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::resp::{Client, LIMIT, Value, encode};

fn connect(addr: SocketAddr) -> Result<Client, String> {
    Client::connect(addr).map_err(|e| format!("cannot connect: {e}"))
}

/// Sends `args`, expects `want`.
fn expect(client: &mut Client, args: &[&[u8]], want: Value) -> Result<(), String> {
    let got = client
        .call(args)
        .map_err(|e| format!("{}: {e}", show(args)))?;
    if got != want {
        return Err(format!(
            "{}: expected {}, got {}",
            show(args),
            brief(&want),
            brief(&got)
        ));
    }
    Ok(())
}

/// A reply in a few words: a long bulk shows its first 40 bytes and its
/// length.
fn brief(value: &Value) -> String {
    match value {
        Value::Bulk(Some(b)) if b.len() > 40 => format!(
            "Bulk({:?}... {} bytes)",
            String::from_utf8_lossy(&b[..40]),
            b.len()
        ),
        Value::Bulk(Some(b)) => format!("Bulk({:?})", String::from_utf8_lossy(b)),
        other => format!("{other:?}"),
    }
}

fn show(args: &[&[u8]]) -> String {
    args.iter()
        .map(|a| String::from_utf8_lossy(&a[..a.len().min(40)]).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A key no other check (or run) uses.
fn key(prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}:{}:{n}", std::process::id())
}

pub fn commands(addr: SocketAddr) -> Result<(), String> {
    let mut c = connect(addr)?;
    let k = key("commands");
    let k = k.as_bytes();
    let n = key("counter");
    let n = n.as_bytes();
    expect(&mut c, &[b"PING"], Value::Simple("PONG".into()))?;
    expect(&mut c, &[b"ping", b"hi"], Value::bulk(b"hi"))?;
    expect(
        &mut c,
        &[b"ECHO", b"hello\r\nworld"],
        Value::bulk(b"hello\r\nworld"),
    )?;
    expect(&mut c, &[b"SET", k, b"v1"], Value::ok())?;
    expect(&mut c, &[b"GET", k], Value::bulk(b"v1"))?;
    expect(&mut c, &[b"set", k, b""], Value::ok())?;
    expect(&mut c, &[b"get", k], Value::bulk(b""))?;
    expect(
        &mut c,
        &[b"EXISTS", k, k, b"no-such-key"],
        Value::Integer(2),
    )?;
    expect(&mut c, &[b"INCR", n], Value::Integer(1))?;
    expect(&mut c, &[b"INCR", n], Value::Integer(2))?;
    let not_integer = Value::Error("ERR value is not an integer or out of range".into());
    expect(&mut c, &[b"INCR", k], not_integer)?;
    expect(&mut c, &[b"DEL", k, n, b"no-such-key"], Value::Integer(2))?;
    expect(&mut c, &[b"GET", k], Value::Bulk(None))?;
    let arity = Value::Error("ERR wrong number of arguments for 'get' command".into());
    expect(&mut c, &[b"GET"], arity)?;
    let unknown = "ERR unknown command 'NOSUCH', with args beginning with: 'a' 'b' ";
    expect(
        &mut c,
        &[b"NOSUCH", b"a", b"b"],
        Value::Error(unknown.into()),
    )?;
    expect(
        &mut c,
        &[b"SET", k, b"v", b"NX", b"EX"],
        Value::Error("ERR syntax error".into()),
    )
}

pub fn inline(addr: SocketAddr) -> Result<(), String> {
    let mut c = connect(addr)?;
    let k = key("inline");
    let send =
        |c: &mut Client, text: String| c.send_raw(text.as_bytes()).map_err(|e| e.to_string());
    send(&mut c, "PING\r\n".into())?;
    send(&mut c, format!("SET {k} \"two words\"\r\n"))?;
    send(&mut c, format!("  get   {k}\n"))?;
    for want in [
        Value::Simple("PONG".into()),
        Value::ok(),
        Value::bulk(b"two words"),
    ] {
        let got = c.read().map_err(|e| e.to_string())?;
        if got != want {
            return Err(format!("expected {}, got {}", brief(&want), brief(&got)));
        }
    }
    Ok(())
}

/// `n` SETs and GETs of distinct keys, their bytes, and the replies due.
fn pipeline_of(n: usize, value_len: usize) -> (Vec<u8>, Vec<Value>) {
    let (mut bytes, mut replies) = (Vec::new(), Vec::new());
    let prefix = key("pipe");
    for i in 0..n {
        let k = format!("{prefix}:{i}");
        let value: Vec<u8> = (0..value_len)
            .map(|j| b'a' + ((i + j) % 26) as u8)
            .collect();
        bytes.extend(encode(&[b"SET", k.as_bytes(), &value]));
        bytes.extend(encode(&[b"GET", k.as_bytes()]));
        replies.push(Value::ok());
        replies.push(Value::Bulk(Some(value)));
    }
    (bytes, replies)
}

fn read_replies(c: &mut Client, want: &[Value]) -> Result<(), String> {
    for (i, want) in want.iter().enumerate() {
        let got = c.read().map_err(|e| format!("reply {i}: {e}"))?;
        if &got != want {
            return Err(format!(
                "reply {i}: expected {}, got {}",
                brief(want),
                brief(&got)
            ));
        }
    }
    Ok(())
}

pub fn pipeline(addr: SocketAddr) -> Result<(), String> {
    let mut c = connect(addr)?;
    let (bytes, replies) = pipeline_of(1000, 10);
    // Written by a thread while this one reads: a server that answers as
    // it parses must not find us not reading.
    let mut writer = c.stream().try_clone().map_err(|e| e.to_string())?;
    let sender = std::thread::spawn(move || writer.write_all(&bytes));
    read_replies(&mut c, &replies)?;
    sender
        .join()
        .map_err(|_| "the writer panicked")?
        .map_err(|e| e.to_string())
}

pub fn split(addr: SocketAddr) -> Result<(), String> {
    let mut c = connect(addr)?;
    let (bytes, replies) = pipeline_of(12, 20_000);
    let mut writer = c.stream().try_clone().map_err(|e| e.to_string())?;
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        // Pieces of 1 to 700 bytes, each its own segment (TCP_NODELAY is
        // on), so the server's reads end in the middle of everything.
        let mut at = 0;
        let mut size = 1;
        while at < bytes.len() {
            let end = (at + size).min(bytes.len());
            writer.write_all(&bytes[at..end])?;
            at = end;
            size = size * 7 % 701 + 1;
        }
        Ok(())
    });
    read_replies(&mut c, &replies)?;
    sender
        .join()
        .map_err(|_| "the writer panicked")?
        .map_err(|e| e.to_string())
}

/// For exercise 07-strlen (Redis has STRLEN; the lesson does not).
pub fn strlen(addr: SocketAddr) -> Result<(), String> {
    let mut c = connect(addr)?;
    let k = key("strlen");
    let k = k.as_bytes();
    expect(&mut c, &[b"SET", k, b"hello world"], Value::ok())?;
    expect(&mut c, &[b"STRLEN", k], Value::Integer(11))?;
    expect(&mut c, &[b"strlen", b"no-such-key"], Value::Integer(0))?;
    let arity = "ERR wrong number of arguments for 'strlen' command";
    expect(&mut c, &[b"STRLEN"], Value::Error(arity.into()))?;
    expect(&mut c, &[b"STRLEN", k, k], Value::Error(arity.into()))
}

pub fn expiry(addr: SocketAddr) -> Result<(), String> {
    let mut c = connect(addr)?;
    let k = key("expiry");
    let k = k.as_bytes();
    expect(&mut c, &[b"SET", k, b"v", b"PX", b"200"], Value::ok())?;
    expect(&mut c, &[b"EXISTS", k], Value::Integer(1))?;
    // The expiry is the event here: there is nothing to wait on but time.
    std::thread::sleep(Duration::from_millis(300));
    expect(&mut c, &[b"GET", k], Value::Bulk(None))?;
    expect(
        &mut c,
        &[b"SET", k, b"v", b"EX", b"0"],
        Value::Error("ERR invalid expire time in 'set' command".into()),
    )
}

/// Malformed requests, and Redis's reply to each.
pub const MALFORMED: &[(&[u8], &str)] = &[
    (b"*1\r\n$x\r\n", "ERR Protocol error: invalid bulk length"),
    (b"*1\r\n$-5\r\n", "ERR Protocol error: invalid bulk length"),
    (b"*x\r\n", "ERR Protocol error: invalid multibulk length"),
    (
        b"*1\r\nPING\r\n",
        "ERR Protocol error: expected '$', got 'P'",
    ),
    (
        b"SET k \"unbalanced\r\n",
        "ERR Protocol error: unbalanced quotes in request",
    ),
];

pub fn protocol_error(addr: SocketAddr) -> Result<(), String> {
    let mut other = connect(addr)?;
    for (bytes, want) in MALFORMED {
        let mut c = connect(addr)?;
        // A good request first: its reply comes, in order, before the error.
        let mut all = encode(&[b"PING"]);
        all.extend_from_slice(bytes);
        c.send_raw(&all).map_err(|e| e.to_string())?;
        let first = c.read().map_err(|e| e.to_string())?;
        let error = c.read().map_err(|e| e.to_string())?;
        let what = String::from_utf8_lossy(bytes);
        if first != Value::Simple("PONG".into()) || error != Value::Error(want.to_string()) {
            return Err(format!(
                "{what:?}: expected PONG then -{want}, got {first:?} then {error:?}"
            ));
        }
        if !c.closed().map_err(|e| e.to_string())? {
            return Err(format!(
                "{what:?}: the connection stays open after a protocol error"
            ));
        }
        expect(&mut other, &[b"PING"], Value::Simple("PONG".into()))
            .map_err(|e| format!("another client, after {what:?}: {e}"))?;
    }
    Ok(())
}

pub fn stalled_many(addr: SocketAddr) -> Result<(), String> {
    let mut c = connect(addr)?;
    // A long key makes long requests: 1,024 GETs are 1 MB to receive.
    let k = format!("{}:{}", key("stalled"), "k".repeat(1000));
    let value = vec![b'x'; 1024];
    expect(&mut c, &[b"SET", k.as_bytes(), &value], Value::ok())?;
    let request = encode(&[b"GET", k.as_bytes()]);
    let batch: Vec<u8> = request
        .iter()
        .copied()
        .cycle()
        .take(request.len() * 1024)
        .collect();
    // Sixteen clients each send 1,024 GETs and never read: their replies
    // stop, then the server's reading of their requests, which hold
    // buffers meanwhile. Each writes from a thread of its own, which blocks
    // if the server stops reading from it.
    let mut stalled = Vec::new();
    for _ in 0..16 {
        let s = TcpStream::connect_timeout(&addr, LIMIT).map_err(|e| e.to_string())?;
        s.set_write_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        let mut writer = s.try_clone().map_err(|e| e.to_string())?;
        let batch = batch.clone();
        stalled.push((s, std::thread::spawn(move || writer.write_all(&batch))));
    }
    // No event says "the server has taken all it will take from them":
    // give them half a second, far more than filling buffers takes.
    std::thread::sleep(Duration::from_millis(500));
    let start = Instant::now();
    let fresh = connect(addr).and_then(|mut fresh| {
        expect(
            &mut fresh,
            &[b"GET", k.as_bytes()],
            Value::Bulk(Some(value.clone())),
        )
    });
    let waited = start.elapsed();
    for (s, writer) in stalled {
        let _ = s.shutdown(std::net::Shutdown::Both);
        let _ = writer.join();
    }
    fresh.map_err(|e| format!("a new client, beside 16 that do not read: {e}"))?;
    if waited > Duration::from_secs(10) {
        return Err(format!(
            "a new client waited {waited:?} beside 16 that do not read"
        ));
    }
    Ok(())
}
