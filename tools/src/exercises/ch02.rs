//! Chapter 02's exercises.

use super::{Exercise, Kind};

pub(super) const EXERCISES: &[Exercise] = &[
    Exercise {
        name: "02-lock-across-read",
        solution: "02-lock-across-read",
        program: Some("02-lock-across-read"),
        lesson: "02_threads",
        title: "A lock held across a read",
        kind: Kind::Fix,
        checks: &["basic", "concurrent"],
        server_args: &[],
        hints: &[
            (
                "basic",
                "one client alone is not served: the bug you are looking for only shows with \
                 two clients at once, so this is a new one; run the server by hand, send a \
                 line with `nc`, and read its stderr",
            ),
            (
                "concurrent",
                "client 0 was echoed and the next one was not, though each has a thread: \
                 run the server, connect two `nc`s, and look at where the second one's \
                 thread waits (`gdb -p PID` then `thread apply all bt`, or \
                 `grep . /proc/PID/task/*/wchan`). How long does a `MutexGuard` keep its \
                 lock, and what does `serve` do while this one exists?",
            ),
        ],
    },
    Exercise {
        name: "02-connection-cap",
        solution: "02-connection-cap",
        program: Some("02-connection-cap"),
        lesson: "02_threads",
        title: "A cap on connections",
        kind: Kind::Extend,
        // `connection_cap` ends one connection with a reset (an error for the
        // server) and one with a clean hang-up, and needs room again after
        // each: a count that forgets failed connections fails it.
        checks: &["basic", "sizes", "connection_cap"],
        server_args: &["--max-conns", "4"],
        hints: &[
            (
                "connection_cap",
                "keep a count of open connections that the accept loop and every \
                 connection thread share (an `Arc` around an atomic or a `Mutex`): the \
                 accept loop adds one and, over the cap, drops the new stream at once; \
                 the thread takes its one away when it ends, however it ends: in a `Drop` \
                 that the connection thread owns, not on a line after `serve` that a `?` \
                 or an error path skips",
            ),
            (
                "basic",
                "a single client was turned away or not served: is the count above the \
                 cap, or just at it, when you refuse? Remember the connection you just \
                 accepted, and the one the grader opened and closed before this check",
            ),
            (
                "sizes",
                "these clients come one after another, each closing before the next \
                 connects: if they are refused, places are not given back when a \
                 connection ends",
            ),
        ],
    },
    Exercise {
        name: "02-stack-size",
        solution: "02-stack-size",
        program: None,
        lesson: "02_threads",
        title: "Smaller stacks",
        kind: Kind::Measure,
        checks: &[],
        server_args: &[],
        hints: &[],
    },
];
