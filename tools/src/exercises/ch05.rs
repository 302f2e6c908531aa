//! Chapter 05's exercises.

use super::{Exercise, Kind};

pub(super) const EXERCISES: &[Exercise] = &[
    // In the chapter's order: exercises 2, 3 and 5 (1 and 4 change a copy
    // of the lesson itself and have no entry here).
    Exercise {
        name: "05-taskrun-modes",
        solution: "05-taskrun-modes",
        program: None,
        lesson: "05_uring_multishot",
        title: "Measure the task-run modes",
        kind: Kind::Measure,
        checks: &[],
        server_args: &[],
        hints: &[],
    },
    Exercise {
        name: "05-early-recycle",
        solution: "05-multishot",
        program: Some("05-multishot"),
        lesson: "05_uring_multishot",
        title: "A buffer given back too early",
        kind: Kind::Fix,
        checks: &["concurrent", "stalled"],
        // Four buffers (three in the ring: lesson 05's pool keeps a quarter
        // as its reserve, which this server leaves unused): a buffer back in
        // the ring is refilled within a few receives, so the bug shows on
        // every run (with the default 1,024 it passes every check).
        server_args: &["--buffers", "4", "--buffer-size", "64"],
        hints: &[
            (
                "concurrent",
                "an echo came back with bytes another client sent: the buffer this \
                 client's bytes were received into was filled again before its send read \
                 it. When does the kernel read a send's buffer: when you queue the \
                 request, or when the send runs? And who may write into a buffer once it \
                 is back in the ring?",
            ),
            (
                "stalled",
                "the send to the client that does not read waits for room in its socket, \
                 and reads its buffer only when that client reads again; meanwhile the \
                 other client's bytes pass through the same four buffers. Which \
                 completion tells you that the kernel is done with a buffer?",
            ),
        ],
    },
    Exercise {
        name: "05-rearm",
        solution: "05-multishot",
        program: Some("05-multishot"),
        lesson: "05_uring_multishot",
        title: "A multishot receive that ended",
        kind: Kind::Fix,
        checks: &["concurrent", "stalled"],
        // SQ 4, CQ 8: the completion queue is full all the time under load,
        // and the kernel ends multishot receives with data hundreds of times
        // a run.
        server_args: &["--ring-entries", "4"],
        hints: &[
            (
                "concurrent",
                "some clients got no echo: their bytes wait in the server's socket \
                 (`ss -tn`, Recv-Q) and nothing reads them, because no receive is armed \
                 for them any more. Print res and flags of every receive completion: \
                 which completion was the last one of those connections, and what did \
                 on_recv conclude from it?",
            ),
            (
                "stalled",
                "the server stopped reading the client that sends a lot after a few dozen \
                 buffers, long before that client stopped sending. A multishot receive \
                 can end at any completion, not only at an error: which flag says so, \
                 and on which completions does on_recv look at it?",
            ),
        ],
    },
];
