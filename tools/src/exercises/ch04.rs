//! Chapter 04's exercises.

use super::{Exercise, Kind};

pub(super) const EXERCISES: &[Exercise] = &[
    Exercise {
        name: "04-short-sends",
        solution: "04-short-sends",
        program: Some("04-short-sends"),
        lesson: "04_uring",
        title: "Finish a short send",
        kind: Kind::Fix,
        checks: &["basic", "sizes", "stalled"],
        // A send buffer far smaller than one receive makes short sends
        // happen on every big message, not only when a peer stops reading:
        // with the kernel's defaults only `stalled` caught the bug, about
        // 4 MiB in.
        server_args: &["--buffer-size", "65536", "--sndbuf", "4096"],
        hints: &[
            (
                "basic",
                "even small messages fail, so the edit broke the plain path: after a \
                 send that took everything, the connection must receive again, with \
                 exactly one request in the kernel per connection",
            ),
            (
                "sizes",
                "small messages pass and big ones lose bytes: compare what each send \
                 completion says the kernel took (`res`) with what you asked it to send \
                 (`filled - sent`); with --sndbuf 4096 they often differ. Where do the \
                 bytes in between go?",
            ),
            (
                "stalled",
                "a client that stops reading fills the kernel's buffers, and then a send \
                 takes only what still fits. After such a send, what is left in the \
                 connection's buffer, and what does the next receive do to it?",
            ),
        ],
    },
    Exercise {
        name: "04-ring-entries",
        solution: "04-ring-entries",
        program: None,
        lesson: "04_uring",
        title: "How much one enter carries",
        kind: Kind::Measure,
        checks: &[],
        server_args: &[],
        hints: &[],
    },
    Exercise {
        name: "04-linked-timeout",
        solution: "04-linked-timeout",
        program: Some("04-linked-timeout"),
        lesson: "04_uring",
        title: "An idle timeout with a linked timeout",
        kind: Kind::Extend,
        checks: &["idle_timeout", "basic", "concurrent"],
        server_args: &["--idle-timeout", "1"],
        hints: &[
            (
                "idle_timeout",
                "each receive needs a time limit that the kernel enforces: link an \
                 `opcode::LinkTimeout` to it (`squeue::Flags::IO_LINK` on the receive, \
                 the timeout pushed right after it). When the timer wins, the receive \
                 completes with -ECANCELED. If a client that kept talking was cut off, \
                 does every receive get a timer of its own?",
            ),
            (
                "basic",
                "the plain echo broke. A timer's completion with -ECANCELED means that \
                 its receive finished first, not that the client was idle; and a \
                 connection may be closed only once none of its requests is in the \
                 kernel. The server's stderr (shown below) has the assertion or the \
                 stale completions",
            ),
            (
                "concurrent",
                "with many clients the receive's completion and its timer's arrive in \
                 every order: count both against the connection, and close it when the \
                 last of them comes back, whichever that is",
            ),
        ],
    },
];
