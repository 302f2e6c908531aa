//! Chapter 03's exercises.

use super::{Exercise, Kind};

pub(super) const EXERCISES: &[Exercise] = &[
    Exercise {
        name: "03-partial-writes",
        solution: "03-partial-writes",
        program: Some("03-partial-writes"),
        lesson: "03_epoll",
        title: "Keep what write did not take",
        kind: Kind::Fix,
        checks: &["sizes", "half_close", "stalled"],
        server_args: &[],
        hints: &[
            (
                "stalled",
                "if the client that stopped reading got back only the first few MiB: a \
                 nonblocking `write` returns how many bytes it took, maybe fewer than offered, \
                 maybe none (EAGAIN), so where do the others go? If nearly everything came \
                 back but the end never did: who tells the loop that the socket has room \
                 again (which event must it ask epoll for)? If the detail says the client \
                 got too much into the server: what does reading on cost while a client's \
                 bytes wait?",
            ),
            (
                "sizes",
                "a long message came back wrong: bytes kept from an earlier short write must go \
                 out before anything read later, and a partly sent queue must not be sent twice",
            ),
            (
                "half_close",
                "after the client's FIN (read returns 0) some of its bytes may still wait for \
                 room in the socket: close only when every one of them is sent",
            ),
        ],
    },
    Exercise {
        name: "03-idle-timeout",
        solution: "03-idle-timeout",
        program: Some("03-idle-timeout"),
        lesson: "03_epoll",
        title: "Close idle connections",
        kind: Kind::Extend,
        checks: &["idle_timeout", "basic", "sizes", "concurrent"],
        server_args: &["--idle-timeout", "1"],
        hints: &[
            (
                "idle_timeout",
                "a silent client makes no socket ready, so an epoll_wait without a timeout never \
                 wakes up to notice it: what is its last argument for? Then remember, per \
                 connection, when it was last active, and close only those quiet for longer \
                 than the limit (a client that talks every 250 ms must stay open)",
            ),
            (
                "basic",
                "the starter passed this check: your change closes or breaks connections that \
                 are not idle. Does `Idle::new` (a connection just accepted) start its clock, \
                 and does `touch` (every event of it) set it again?",
            ),
            (
                "sizes",
                "the starter passed this check: a connection busy echoing a large message \
                 was disturbed. Does `touch` count every event as activity (writable ones \
                 come through it too), and does the sweep only drop connections past the \
                 limit?",
            ),
            (
                "concurrent",
                "the starter passed this check: with 200 clients, each one's events must \
                 update its own activity time, and a sweep must not close the rest",
            ),
        ],
    },
    Exercise {
        name: "03-level-vs-edge",
        solution: "03-level-vs-edge",
        program: None,
        lesson: "03_epoll",
        title: "Level or edge: count the calls",
        kind: Kind::Measure,
        checks: &[],
        server_args: &[],
        hints: &[],
    },
];
