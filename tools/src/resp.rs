//! RESP, for the lessons that speak it (07): a small client, the RESP
//! check set (`CHECKS`, run by `tests/resp.rs` against every RESP lesson
//! and against the real `redis-server`, so the checks themselves are held
//! to Redis's behaviour), and finding and starting the real Redis tools.
//!
//! Each check takes the server's address and returns what went wrong, in
//! a sentence, or `Ok`. Time limits are generous: a debug build on two
//! busy cores must pass.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::grader::{CheckResult, ServerReport, Verdict};

/// Generous, as the grader's limits are.
pub const LIMIT: Duration = Duration::from_secs(30);

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Simple(String),
    Error(String),
    Integer(i64),
    /// `None`: the null bulk, `$-1`.
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Value>>),
}

impl Value {
    pub fn bulk(bytes: &[u8]) -> Value {
        Value::Bulk(Some(bytes.to_vec()))
    }
    pub fn ok() -> Value {
        Value::Simple("OK".into())
    }
}

/// A request as a multibulk, as every client library sends it.
pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend(format!("${}\r\n", arg.len()).bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A connection that sends requests and reads replies.
pub struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, LIMIT)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(LIMIT))?;
        stream.set_write_timeout(Some(LIMIT))?;
        Ok(Client {
            reader: BufReader::with_capacity(64 * 1024, stream),
        })
    }

    pub fn stream(&mut self) -> &mut TcpStream {
        self.reader.get_mut()
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.reader.get_mut().write_all(bytes)
    }

    /// One request, one reply.
    pub fn call(&mut self, args: &[&[u8]]) -> io::Result<Value> {
        self.send_raw(&encode(args))?;
        self.read()
    }

    /// Reads one reply.
    pub fn read(&mut self) -> io::Result<Value> {
        read_value(&mut self.reader)
    }

    /// Whether the server has closed the connection (EOF, or a reset)
    /// before sending anything more.
    pub fn closed(&mut self) -> io::Result<bool> {
        let mut byte = [0u8; 1];
        match self.reader.read(&mut byte) {
            Ok(0) => Ok(true),
            Ok(_) => Ok(false),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(true),
            Err(e) => Err(e),
        }
    }
}

fn bad(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// Reads one RESP2 value.
pub fn read_value(reader: &mut impl BufRead) -> io::Result<Value> {
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the server closed the connection",
        ));
    }
    if !line.ends_with(b"\r\n") {
        return Err(bad(format!(
            "a reply line without \\r\\n: {:?}",
            String::from_utf8_lossy(&line)
        )));
    }
    let text = String::from_utf8_lossy(&line[1..line.len() - 2]).into_owned();
    let number = || {
        text.parse::<i64>()
            .map_err(|_| bad(format!("not a number: {text:?}")))
    };
    Ok(match line[0] {
        b'+' => Value::Simple(text),
        b'-' => Value::Error(text),
        b':' => Value::Integer(number()?),
        b'$' => match number()? {
            -1 => Value::Bulk(None),
            n if n >= 0 => {
                let mut bytes = vec![0u8; n as usize + 2];
                reader.read_exact(&mut bytes)?;
                if !bytes.ends_with(b"\r\n") {
                    return Err(bad("a bulk not followed by \\r\\n".into()));
                }
                bytes.truncate(n as usize);
                Value::Bulk(Some(bytes))
            }
            n => return Err(bad(format!("a bulk of length {n}"))),
        },
        b'*' => match number()? {
            -1 => Value::Array(None),
            n if n >= 0 => Value::Array(Some(
                (0..n)
                    .map(|_| read_value(reader))
                    .collect::<io::Result<_>>()?,
            )),
            n => return Err(bad(format!("an array of length {n}"))),
        },
        other => return Err(bad(format!("a reply starting with {:?}", other as char))),
    })
}

/// A RESP check: a stable name, what it does, and the check itself.
pub struct Check {
    pub name: &'static str,
    pub what: &'static str,
    pub run: fn(SocketAddr) -> Result<(), String>,
}

/// The RESP check set.
pub const CHECKS: &[Check] = &[
    Check {
        name: "resp_commands",
        what: "PING, ECHO, SET, GET, DEL, EXISTS, INCR, an unknown command and a wrong arity, answered as Redis answers",
        run: crate::resp_checks::commands,
    },
    Check {
        name: "resp_inline",
        what: "inline commands, as typed at nc, including a quoted argument",
        run: crate::resp_checks::inline,
    },
    Check {
        name: "resp_pipeline",
        what: "2,000 requests written at once get their replies in order",
        run: crate::resp_checks::pipeline,
    },
    Check {
        name: "resp_split",
        what: "a pipeline with 20 KB values, written in pieces of 1 to 700 bytes, parses the same as whole",
        run: crate::resp_checks::split,
    },
    Check {
        name: "resp_expiry",
        what: "SET ... PX 200: the key is there, then after 300 ms it is not",
        run: crate::resp_checks::expiry,
    },
    Check {
        name: "resp_protocol_error",
        what: "malformed requests get Redis's `-ERR Protocol error: ...` and the connection closes; another client is still served",
        run: crate::resp_checks::protocol_error,
    },
    Check {
        name: "resp_stalled_many",
        what: "16 clients pipeline 1,024 GETs each and never read; a new client is still served",
        run: crate::resp_checks::stalled_many,
    },
];

/// Grades the RESP server at `addr` with `checks`, the way the echo grader
/// grades an echo server (`echo-check --protocol resp`): one report, the
/// same table and JSON. RESP checks have no expected failures.
pub fn grade(addr: SocketAddr, label: &str, checks: &[&'static Check]) -> ServerReport {
    let mut report = ServerReport {
        addr: label.to_string(),
        reachable: true,
        expect: None,
        ok: true,
        checks: Vec::new(),
    };
    if let Err(why) = crate::grader::reachable(addr) {
        return crate::grader::unreachable(label, why);
    }
    for check in checks {
        let started = Instant::now();
        let (result, detail, hint) = match (check.run)(addr) {
            Ok(()) => (Verdict::Pass, check.what.to_string(), None),
            Err(why) => (
                Verdict::Fail,
                why,
                Some(format!("what the check does: {}", check.what)),
            ),
        };
        report.ok &= !result.is_failure();
        report.checks.push(CheckResult {
            name: check.name,
            result,
            seconds: started.elapsed().as_secs_f64(),
            detail,
            hint,
        });
    }
    report
}

/// Runs every check against `addr`; the failures, each with its name.
pub fn run_all(addr: SocketAddr) -> Vec<String> {
    CHECKS
        .iter()
        .filter_map(|c| (c.run)(addr).err().map(|e| format!("{}: {e}", c.name)))
        .collect()
}

/// Where a Redis tool is (`redis-server`, `redis-cli`, `redis-benchmark`),
/// or why it cannot be used, with the way to install it.
pub fn redis_tool(name: &str) -> Result<PathBuf, String> {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
        .ok_or_else(|| {
            format!(
                "{name} is not installed (Debian, Ubuntu: `apt-get install redis-server \
                 redis-tools`; redis-cli and redis-benchmark come with redis-tools)"
            )
        })
}

/// A `redis-server` child on a free port, killed when dropped.
pub struct RedisServer {
    child: Child,
    pub addr: SocketAddr,
}

impl RedisServer {
    /// Starts `redis-server` on a free loopback port, with no persistence,
    /// under `prefix` (e.g. `taskset -c 0`), and waits until it answers
    /// PING. `--port 0` would disable TCP, so a free port is found by
    /// binding port 0 and closing it, and the start is tried again if
    /// another process took the port in between.
    pub fn start(prefix: &[&str]) -> Result<RedisServer, String> {
        let program = redis_tool("redis-server")?;
        let mut last = String::new();
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| format!("cannot find a free port: {e}"))?
                .port();
            let mut argv: Vec<String> = prefix.iter().map(|s| s.to_string()).collect();
            argv.push(program.to_string_lossy().into_owned());
            argv.extend(
                [
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--daemonize",
                    "no",
                    "--protected-mode",
                    "no",
                    "--logfile",
                    "",
                ]
                .map(String::from),
            );
            let child = Command::new(&argv[0])
                .args(&argv[1..])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("cannot start {}: {e}", argv[0]))?;
            let mut server = RedisServer {
                child,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
            };
            match server.wait_ready() {
                Ok(()) => return Ok(server),
                Err(e) => last = e,
            }
        }
        Err(format!("redis-server did not start: {last}"))
    }

    /// Waits for redis-server's "Ready to accept connections" line on its
    /// stdout (its log, with `--logfile ""`), at most 10 s; the rest of
    /// the log is drained by a thread, never left to fill the pipe.
    fn wait_ready(&mut self) -> Result<(), String> {
        let stdout = self.child.stdout.take().ok_or("no stdout")?;
        let (ready, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut said = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if !said && line.contains("Ready to accept connections") {
                    let _ = ready.send(Ok(()));
                    said = true;
                } else if !said && line.contains("aborting") {
                    let _ = ready.send(Err(line)); // e.g. the port was taken
                    said = true;
                }
            }
            let _ = ready.send(Err("it exited".into()));
        });
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(result) => result,
            Err(_) => Err("no \"Ready to accept connections\" within 10 s".into()),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
