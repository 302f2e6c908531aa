//! Chapter 07's exercises: two regions of one server, lesson 07 itself
//! taken in file by file (`exercises/programs/07-resp.rs`), graded with the
//! RESP checks the exercises use (`resp_split`, `resp_strlen`).

use super::{Exercise, Kind};

pub(super) const EXERCISES: &[Exercise] = &[
    Exercise {
        name: "07-framing",
        solution: "07-resp",
        program: Some("07-resp"),
        lesson: "07_uring_resp",
        title: "A request cut by a buffer's end",
        kind: Kind::Fix,
        checks: &["resp_split"],
        // 64-byte buffers: nearly every request is cut by a buffer's end,
        // so the bug shows on every run (with the default 4 KiB buffers,
        // few requests are cut, and a run may pass).
        server_args: &[
            "--buffers",
            "64",
            "--buffer-size",
            "64",
            "--max-buffers-per-conn",
            "4",
        ],
        hints: &[(
            "resp_split",
            "a valid pipeline got a protocol error, or a wrong reply, half way: the parser \
             went on from the middle of a request. When a request that was cut is whole, \
             the carry holds it and the bytes after it. Where did those bytes come from, \
             and where does the next request start?",
        )],
    },
    Exercise {
        name: "07-strlen",
        solution: "07-resp",
        program: Some("07-resp"),
        lesson: "07_uring_resp",
        title: "One more command: STRLEN",
        kind: Kind::Extend,
        checks: &["resp_strlen"],
        server_args: &[],
        hints: &[(
            "resp_strlen",
            "compare with GET and DEL in src/bin/07_uring_resp/commands.rs: check the \
             arity first, read the key through `store.get` (an expired key counts as not \
             there), and append exactly one reply",
        )],
    },
];
