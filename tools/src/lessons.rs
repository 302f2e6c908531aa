//! The lesson list: the one place that says which lessons exist.
//!
//! Tests, the grader, the benches and the book check read this table; nothing
//! else enumerates lessons and nothing scans file names. A new lesson joins
//! every check by being added here.

/// One rung of the ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lesson {
    /// The binary's name, `NN_name`, as in `cargo run --bin NN_name`.
    pub name: &'static str,
    /// The chapter's file, relative to `chapters/`.
    pub chapter: &'static str,
    /// The I/O model, in a few words.
    pub model: &'static str,
    /// What this design cannot do: the next chapter's motivation.
    pub cannot: &'static str,
    /// Whether the lesson needs Linux (epoll, io_uring).
    pub linux_only: bool,
    /// Whether the lesson needs io_uring, which a kernel or a container may
    /// forbid even on Linux.
    pub needs_io_uring: bool,
    /// The expectations table: the grader checks this design cannot pass,
    /// each with the reason. `echo-check --expect NAME` shows them as
    /// "expected", and the tests assert that they really fail.
    pub expected_failures: &'static [Expected],
    /// The protocol it speaks, which decides the tools that apply to it.
    pub protocol: Protocol,
}

/// What a lesson's server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Echo: every byte back, in order. The grader `echo-check`, the fault
    /// tests, `echo-bench`, `echo-ladder` and `cargo bench` take it.
    Echo,
    /// RESP, the Redis protocol: requests framed and answered, not echoed.
    /// The echo tools skip it, saying why; `tests/resp.rs` (the RESP
    /// checks, `resp_check`) and `resp-ladder` (against `redis-server`,
    /// driven by `redis-benchmark`) take it.
    Resp,
}

/// Why the echo tools skip a lesson that speaks RESP.
pub const NOT_ECHO: &str = "speaks RESP, not echo: the echo checks and loads do not apply; \
     its checks are tests/resp.rs and its benchmark is resp-ladder, against redis-server";

/// A grader check a lesson (or a peer) is expected to fail, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    /// The check's stable name (see `grader::CHECKS`).
    pub check: &'static str,
    /// Why the design cannot pass it, in a few words.
    pub why: &'static str,
    /// Whether it fails in every run. `false` when the design's flaw shows
    /// only in some runs (it depends on timing, or on how much the
    /// kernel's socket buffers absorb): a failure is then still "expected",
    /// and a pass is a plain pass, not a surprise. Every lesson's expected
    /// failure is `true`.
    pub always: bool,
}

/// Why lesson 01 fails every check that needs two clients served at once.
const ONE_AT_A_TIME: &str = "serves one client at a time: the others wait in the accept queue";

/// Every lesson, in reading order.
pub const LESSONS: &[Lesson] = &[
    Lesson {
        name: "01_blocking",
        chapter: "01_blocking.md",
        model: "blocking accept/read/write, one client at a time",
        cannot: "a second client waits until the first one hangs up",
        linux_only: false,
        needs_io_uring: false,
        expected_failures: &[
            Expected {
                check: "concurrent",
                why: ONE_AT_A_TIME,
                always: true,
            },
            Expected {
                check: "stalled",
                why: ONE_AT_A_TIME,
                always: true,
            },
            Expected {
                check: "stalled_many",
                why: ONE_AT_A_TIME,
                always: true,
            },
            Expected {
                check: "idle",
                why: ONE_AT_A_TIME,
                always: true,
            },
        ],
        protocol: Protocol::Echo,
    },
    Lesson {
        name: "02_threads",
        chapter: "02_threads.md",
        model: "a thread per connection",
        cannot: "memory and context switches grow with every connection",
        linux_only: false,
        needs_io_uring: false,
        expected_failures: &[],
        protocol: Protocol::Echo,
    },
    Lesson {
        name: "03_epoll",
        chapter: "03_epoll.md",
        model: "nonblocking sockets and an epoll readiness loop",
        cannot: "two or more system calls per echo: readiness first, then the copy",
        linux_only: true,
        needs_io_uring: false,
        expected_failures: &[],
        protocol: Protocol::Echo,
    },
    Lesson {
        name: "04_uring",
        chapter: "04_uring.md",
        model: "io_uring with single-shot accept, recv and send",
        cannot: "one request per operation, and a buffer per connection even when idle",
        linux_only: true,
        needs_io_uring: true,
        expected_failures: &[],
        protocol: Protocol::Echo,
    },
    Lesson {
        name: "05_uring_multishot",
        chapter: "05_uring_multishot.md",
        model: "multishot accept and recv, a registered buffer ring",
        cannot: "one core, and every byte still copied through user space",
        linux_only: true,
        needs_io_uring: true,
        expected_failures: &[],
        protocol: Protocol::Echo,
    },
    Lesson {
        name: "06_uring_bundles",
        chapter: "06_uring_bundles.md",
        model: "lesson 05 with receive bundles, gathered sends, registered files",
        cannot: "one core; on loopback the kernel's TCP work is the floor, and zero-copy still copies",
        linux_only: true,
        needs_io_uring: true,
        expected_failures: &[],
        protocol: Protocol::Echo,
    },
    Lesson {
        name: "07_uring_resp",
        chapter: "07_uring_resp.md",
        model: "a pipelined RESP (Redis) subset on lesson 05's io_uring loop",
        cannot: "one core and one map: no persistence, no replication, a handful of commands",
        linux_only: true,
        needs_io_uring: true,
        expected_failures: &[],
        protocol: Protocol::Resp,
    },
];

/// A server that is not a lesson: the line every lesson is compared with.
/// The benchmarks start the peers the way they start the lessons, and the
/// tests hold them to the same grader, so a comparison is never with a
/// server that cuts corners, and a check a peer fails is written down here
/// with its reason, never skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// The binary's name, as in `cargo run --bin NAME`.
    pub name: &'static str,
    /// What it is, in a few words.
    pub model: &'static str,
    /// Whether it needs io_uring (and so Linux): where a kernel or a
    /// container forbids it, the peer is skipped with the reason.
    pub needs_io_uring: bool,
    /// The expectations table, as for a lesson: the grader checks this peer
    /// fails, each with the reason. `echo-check --expect NAME` shows them as
    /// "expected", and the tests assert that they really fail.
    pub expected_failures: &'static [Expected],
}

/// Why compio's multishot echo fails the checks with peers that stop
/// reading (see `tools/src/bin/peer-compio-multishot.rs`).
const ONE_SHARED_POOL: &str = "compio's buffer pool is one ring shared by every connection, \
     with no bound per connection: the multishot receive of a peer that does not read keeps \
     taking buffers while its echo waits, until the pool is empty; then every other \
     connection's receive fails with ENOBUFS, and they wait (spinning) until the stalled \
     peer reads again";

/// The peers: what a Rust user would pick instead of writing a lesson.
pub const PEERS: &[Peer] = &[
    Peer {
        name: "peer-tokio",
        model: "tokio, current-thread runtime, a task per connection",
        needs_io_uring: false,
        expected_failures: &[],
    },
    Peer {
        name: "peer-monoio",
        model: "monoio, io_uring driver, one thread, a task per connection",
        needs_io_uring: true,
        expected_failures: &[],
    },
    Peer {
        name: "peer-compio",
        model: "compio, io_uring driver, one thread, a task per connection",
        needs_io_uring: true,
        expected_failures: &[],
    },
    Peer {
        name: "peer-compio-multishot",
        model: "compio, multishot accept and recv with its buffer pool, one thread",
        needs_io_uring: true,
        expected_failures: &[
            // One peer sends up to 64 MiB: more than the kernel's socket
            // buffers on the way back hold, so its echo waits and its
            // receive drains the pool, nearly every time. On a loaded
            // two-core machine the other client was sometimes served before
            // the pool ran dry (2 runs in 4 of the peers' test, while other
            // builds ran), so a pass is a pass, not a surprise.
            Expected {
                check: "stalled",
                why: ONE_SHARED_POOL,
                always: false,
            },
            // 32 peers send 8 MiB each: in most runs the kernel's socket
            // buffers on the way back absorb all of it, no echo waits, and
            // the pool is never emptied; in some it is, and the check fails
            // (on a two-core machine, 1 run in 6 alone, 3 in 6 right after
            // `stalled` on the same server).
            Expected {
                check: "stalled_many",
                why: ONE_SHARED_POOL,
                always: false,
            },
        ],
    },
];

/// A server with an expectations table: a lesson or a peer. The grader's
/// `--expect` takes either.
pub trait Expectations {
    /// The server's binary name.
    fn name(&self) -> &'static str;
    /// The checks it is expected to fail, with the reasons.
    fn expected_failures(&self) -> &'static [Expected];
    /// Why it is expected to fail `check`, if it is.
    fn expected_failure(&self, check: &str) -> Option<&'static Expected> {
        self.expected_failures().iter().find(|e| e.check == check)
    }
}

impl Expectations for Lesson {
    fn name(&self) -> &'static str {
        self.name
    }
    fn expected_failures(&self) -> &'static [Expected] {
        self.expected_failures
    }
}

impl Expectations for Peer {
    fn name(&self) -> &'static str {
        self.name
    }
    fn expected_failures(&self) -> &'static [Expected] {
        self.expected_failures
    }
}

impl Lesson {
    /// Whether this lesson can run on the machine we are on.
    pub fn runs_here(&self) -> bool {
        self.why_not_here().is_none()
    }

    /// Why this lesson cannot run here (not Linux; io_uring forbidden), if
    /// it cannot. Tests print it when they skip a lesson.
    pub fn why_not_here(&self) -> Option<String> {
        if self.linux_only && !cfg!(target_os = "linux") {
            return Some(format!("{} needs Linux", self.name));
        }
        #[cfg(target_os = "linux")]
        if self.needs_io_uring
            && let Err(why) = uring_echo_book::uring::available()
        {
            return Some(format!("{}: {why}", self.name));
        }
        None
    }

    /// Why this lesson is expected to fail `check`, if it is.
    pub fn expected_failure(&self, check: &str) -> Option<&'static Expected> {
        self.expected_failures.iter().find(|e| e.check == check)
    }
}

impl Peer {
    /// Why this peer cannot run here (io_uring missing or forbidden), if it
    /// cannot. Tests and benches print it when they skip the peer.
    pub fn why_not_here(&self) -> Option<String> {
        if self.needs_io_uring && !cfg!(target_os = "linux") {
            return Some(format!("{} needs Linux (io_uring)", self.name));
        }
        #[cfg(target_os = "linux")]
        if self.needs_io_uring
            && let Err(why) = uring_echo_book::uring::available()
        {
            return Some(format!("{}: {why}", self.name));
        }
        None
    }

    /// Why this peer is expected to fail `check`, if it is.
    pub fn expected_failure(&self, check: &str) -> Option<&'static Expected> {
        self.expected_failures.iter().find(|e| e.check == check)
    }
}

/// The echo lessons that can run on this machine: what the echo grader,
/// the fault tests and the benches hold to their checks. For each lesson
/// that cannot run here, or does not speak echo, a line on stderr says
/// why, so a skipped test never passes silently.
pub fn runnable() -> Vec<&'static Lesson> {
    runnable_speaking(Protocol::Echo)
}

/// The lessons that speak RESP and can run on this machine, with a line
/// on stderr for each that cannot, as [`runnable`] does.
pub fn runnable_resp() -> Vec<&'static Lesson> {
    runnable_speaking(Protocol::Resp)
}

fn runnable_speaking(protocol: Protocol) -> Vec<&'static Lesson> {
    LESSONS
        .iter()
        .filter(|l| {
            let why = if l.protocol != protocol {
                match l.protocol {
                    Protocol::Resp => Some(format!("{}: {NOT_ECHO}", l.name)),
                    Protocol::Echo => return false, // the RESP tools say nothing of echo lessons
                }
            } else {
                l.why_not_here()
            };
            match why {
                None => true,
                Some(why) => {
                    eprintln!("skipped: {why}");
                    false
                }
            }
        })
        .collect()
}

/// The peers that can run on this machine, with a line on stderr for each
/// one that cannot, as [`runnable`] does for the lessons.
pub fn runnable_peers() -> Vec<&'static Peer> {
    PEERS
        .iter()
        .filter(|p| match p.why_not_here() {
            None => true,
            Some(why) => {
                eprintln!("skipped: {why}");
                false
            }
        })
        .collect()
}

/// Looks a lesson up by its binary name.
pub fn lesson(name: &str) -> Option<&'static Lesson> {
    LESSONS.iter().find(|l| l.name == name)
}

/// Looks a peer up by its binary name.
pub fn peer(name: &str) -> Option<&'static Peer> {
    PEERS.iter().find(|p| p.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_numbered_in_order_and_unique() {
        let mut last = 0;
        for l in LESSONS {
            // NN_: two digits, each lesson's above the one before (a
            // lesson written out of order may leave a gap for a while).
            let number: u32 = l.name[..2].parse().expect("a name starts with its number");
            assert!(
                number > last && l.name.as_bytes()[2] == b'_',
                "{} should be numbered after {last:02}, as NN_name",
                l.name
            );
            last = number;
            assert_eq!(l.chapter, format!("{}.md", l.name));
            assert_eq!(lesson(l.name), Some(l));
            for e in l.expected_failures {
                assert!(
                    e.always,
                    "{}: a lesson's design fails {} every time",
                    l.name, e.check
                );
            }
        }
        assert_eq!(lesson("99_nothing"), None);
    }

    #[test]
    fn the_echo_tools_take_echo_lessons_and_the_resp_tools_resp_ones() {
        assert!(runnable().iter().all(|l| l.protocol == Protocol::Echo));
        assert!(runnable_resp().iter().all(|l| l.protocol == Protocol::Resp));
        assert!(LESSONS.iter().any(|l| l.protocol == Protocol::Resp));
    }

    #[test]
    fn peers_are_named_peer_and_unique() {
        for p in PEERS {
            assert!(p.name.starts_with("peer-"), "{}", p.name);
            assert_eq!(peer(p.name), Some(p));
            assert_eq!(lesson(p.name), None, "a peer is not a lesson");
            for e in p.expected_failures {
                assert!(!e.why.trim().is_empty(), "{}: {}", p.name, e.check);
            }
        }
        assert_eq!(peer("peer-nothing"), None);
    }
}
