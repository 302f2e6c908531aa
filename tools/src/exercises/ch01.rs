//! Chapter 01's exercises.

use super::{Exercise, Kind};

pub(super) const EXERCISES: &[Exercise] = &[
    Exercise {
        name: "01-end-of-file",
        solution: "01-end-of-file",
        program: Some("01-end-of-file"),
        lesson: "01_blocking",
        title: "The client that left",
        kind: Kind::Fix,
        checks: &["basic", "sizes", "half_close"],
        server_args: &[],
        hints: &[(
            "*",
            "the grader first connects once and hangs up, to see that your server answers; \
             after that, nobody was served. What does `read` return once the peer has \
             closed, and what does the loop do with it?",
        )],
    },
    Exercise {
        name: "01-idle-timeout",
        solution: "01-idle-timeout",
        program: Some("01-idle-timeout"),
        lesson: "01_blocking",
        title: "An idle client must not hold the server forever",
        kind: Kind::Extend,
        checks: &["idle_timeout", "basic", "sizes"],
        server_args: &["--idle-timeout", "1"],
        hints: &[(
            "idle_timeout",
            "a blocking read can be told to give up after a while: look at what \
             `std::net::TcpStream` lets you set on a socket (the chapter's further reading \
             has the system call). Then: what does a read that gave up return, and what \
             should the server do with that connection?",
        )],
    },
    Exercise {
        name: "01-syscalls",
        solution: "01-syscalls",
        program: None,
        lesson: "01_blocking",
        title: "Count the system calls",
        kind: Kind::Measure,
        checks: &[],
        server_args: &[],
        hints: &[],
    },
];
