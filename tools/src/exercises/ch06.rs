//! Chapter 06's exercises: two bugs planted in one region of lesson 06
//! itself, `queue_bundle` (`exercises/programs/06-bundles.rs`).

use super::{Exercise, Kind};

/// 64 buffers (48 open, a share of 12) and multishot receives forced on
/// (`auto` picks one-buffer receives for a pool this small), so receives
/// come as bundles of up to 12 buffers, and buffers are reused often.
const SMALL_POOL: &[&str] = &["--buffers", "64", "--recv", "multishot"];

pub(super) const EXERCISES: &[Exercise] = &[
    Exercise {
        name: "06-bundle-order",
        solution: "06-bundle-order",
        program: Some("06-bundles"),
        lesson: "06_uring_bundles",
        title: "Which buffers a bundle filled",
        kind: Kind::Fix,
        checks: &["sizes", "concurrent"],
        server_args: SMALL_POOL,
        hints: &[(
            "*",
            "an echo carried the right bytes in the wrong places. A bundle's completion \
             names the buffer the kernel filled first, and the rest came after it, in ring \
             order: in which order do they join the queue, and which one holds only the \
             remainder?",
        )],
    },
    Exercise {
        name: "06-bundle-lengths",
        solution: "06-bundle-lengths",
        program: Some("06-bundles"),
        lesson: "06_uring_bundles",
        title: "How many bytes each buffer holds",
        kind: Kind::Fix,
        checks: &["sizes", "concurrent"],
        server_args: SMALL_POOL,
        hints: &[(
            "*",
            "an echo came back with bytes after the end of what was sent, or with bytes \
             in the wrong place. A bundle's result is the total over its buffers: how many \
             of those bytes are in the last one?",
        )],
    },
];
