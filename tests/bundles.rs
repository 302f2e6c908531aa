//! Lesson 06's own promises, beyond the grader (which `tests/grader.rs`
//! runs against it with its defaults): the grader's every check in each
//! combination the chapter recommends or shows (the defaults, every feature
//! off, zero-copy sends, SQPOLL, a tiny pool with bundles); a large echo
//! that really takes bundles and gathered sends; zero-copy sends that the
//! kernel copies anyway on loopback, counted from their notifications; 64
//! peers that never read; the cap. A feature this kernel lacks is skipped
//! with the line the server printed.
#![cfg(target_os = "linux")]

use std::io::{Read, Write};
use std::thread;
use std::time::Duration;

use uring_echo_tools::client;
use uring_echo_tools::grader::{self, CHECKS};
use uring_echo_tools::lessons::lesson;
use uring_echo_tools::process::{ServerProcess, binary_path, stat};

const LIMIT: Duration = Duration::from_secs(30);
const NAME: &str = "06_uring_bundles";

/// Starts 06 with `args`, or says why it cannot run here.
fn start(args: &[&str]) -> Option<ServerProcess> {
    if let Some(why) = lesson(NAME).and_then(|l| l.why_not_here()) {
        eprintln!("skipped: {why}");
        return None;
    }
    let mut all = vec!["--addr", "127.0.0.1:0"];
    all.extend_from_slice(args);
    Some(ServerProcess::start(binary_path(NAME), &all).expect("06_uring_bundles starts"))
}

/// Whether the server ran with `feature` on (its stderr, read once it has
/// exited); if not, prints why the rest of the test is skipped (the
/// server's own line says what the kernel lacks).
fn has(stderr: &str, feature: &str) -> bool {
    let on = stderr.contains(&format!("{feature} on"));
    if !on {
        eprintln!("skipped: {feature} is not available here:\n{stderr}");
    }
    on
}

/// Stops the server with SIGINT, and returns its stderr once it exited 0
/// having reaped every completion for the right connection.
fn stop(mut server: ServerProcess, label: &str) -> String {
    server.interrupt().unwrap();
    let status = server.wait_timeout(LIMIT).unwrap();
    assert!(status.is_some_and(|s| s.success()), "{label}: {status:?}");
    let stderr = server.stderr();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stat(&stderr, "stale"), 0, "{stderr}");
    assert_eq!(stat(&stderr, "cq_dropped"), 0, "{stderr}");
    stderr
}

/// Runs every check but `skip`, asserts they all pass, stops the server.
fn grade_and_stop(server: ServerProcess, label: &str, skip: &[&str]) -> String {
    uring_echo_book::limits::raise_open_file_limit_or_warn();
    let checks: Vec<_> = CHECKS.iter().filter(|c| !skip.contains(&c.name)).collect();
    let report = grader::grade(server.addr(), label, &checks, None, |_| {});
    let failed = report.not_passed();
    assert!(
        failed.is_empty(),
        "{label}: {failed:#?}\n{}",
        server.stderr()
    );
    stop(server, label)
}

#[test]
fn defaults_pass_every_check_without_allocating() {
    let Some(server) = start(&[]) else { return };
    let stderr = grade_and_stop(server, "06 defaults", &[]);
    assert!(stat(&stderr, "accepted") > 3000, "{stderr}");
    assert_eq!(stat(&stderr, "allocations_after_startup"), 0, "{stderr}");
    // With the file table on, every connection entered it.
    if stderr.contains("fixed-files on") {
        assert_eq!(
            stat(&stderr, "fixed_files"),
            stat(&stderr, "accepted"),
            "{stderr}"
        );
    }
}

#[test]
fn every_feature_off_is_lesson_05_and_passes_every_check() {
    let off = [
        "--recv-bundle",
        "off",
        "--send-gather",
        "off",
        "--fixed-files",
        "off",
    ];
    let Some(server) = start(&off) else { return };
    let stderr = grade_and_stop(server, "06 all off", &[]);
    assert!(
        stderr.contains("recv-bundle off send-gather off fixed-files off direct-accept off buf-inc off send-zc off \
             sqpoll off register-ring off"),
        "{stderr}"
    );
    for counter in ["bundles", "gathered_sends", "fixed_files", "zc_sends"] {
        assert_eq!(stat(&stderr, counter), 0, "{counter}: {stderr}");
    }
}

/// One client writes 4 MiB at once (bytes `i % modulus`) from one thread
/// while it reads the echo on another, and checks every byte.
fn echo_four_mib(server: &ServerProcess, modulus: u32) {
    let mut stream = client::connect(server.addr(), LIMIT).unwrap();
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    let data: Vec<u8> = (0..4u32 << 20).map(|i| (i % modulus) as u8).collect();
    let mut writer = stream.try_clone().unwrap();
    let sent = data.clone();
    let write = thread::spawn(move || writer.write_all(&sent));
    let mut back = vec![0u8; data.len()];
    stream.read_exact(&mut back).unwrap();
    write.join().unwrap().unwrap();
    assert!(back == data, "the echo differs");
}

/// One client sends 4 MiB at once and reads the echo: its receives find
/// many buffers' worth waiting, so they come as bundles, and its echoes
/// queue up faster than one send each would take them, so they leave
/// gathered. Both counted at exit; every byte checked.
#[test]
fn a_large_echo_takes_bundles_and_gathered_sends() {
    let Some(server) = start(&[]) else { return };
    echo_four_mib(&server, 251);
    let stderr = stop(server, "06 large echo");
    if !has(&stderr, "recv-bundle") {
        return;
    }
    assert!(stat(&stderr, "bundles") > 0, "{stderr}");
    assert!(stat(&stderr, "max_bundle") > 1, "{stderr}");
    assert!(stat(&stderr, "gathered_sends") > 0, "{stderr}");
    assert!(
        stat(&stderr, "recv_buffers") > stat(&stderr, "recv_completions"),
        "{stderr}"
    );
}

/// Zero-copy sends pass every check; on loopback the notification of each
/// says the kernel copied the bytes after all (the chapter's claim).
#[test]
fn zero_copy_sends_pass_every_check_and_loopback_copies() {
    let Some(server) = start(&["--send-zc", "on"]) else {
        return;
    };
    let stderr = grade_and_stop(server, "06 --send-zc on", &[]);
    if !has(&stderr, "send-zc") {
        return;
    }
    let (sends, copied) = (stat(&stderr, "zc_sends"), stat(&stderr, "zc_copied"));
    assert!(sends > 0, "{stderr}");
    assert_eq!(
        copied, sends,
        "every loopback zero-copy send copied: {stderr}"
    );
    assert_eq!(stat(&stderr, "allocations_after_startup"), 0, "{stderr}");
}

#[test]
fn sqpoll_passes_every_check() {
    let Some(server) = start(&["--sqpoll", "on"]) else {
        return;
    };
    let stderr = grade_and_stop(server, "06 --sqpoll on", &[]);
    if !has(&stderr, "sqpoll") {
        return;
    }
    assert!(stderr.contains("taskrun sqpoll"), "{stderr}");
    assert_eq!(stat(&stderr, "allocations_after_startup"), 0, "{stderr}");
}

#[test]
fn tiny_pool_with_bundles_loses_no_byte() {
    // As lesson 05's test with multishot receives forced on: 4 buffers of
    // 64 bytes, ENOBUFS all the time; here each receive may be a bundle.
    let Some(server) = start(&[
        "--buffers",
        "4",
        "--buffer-size",
        "64",
        "--recv",
        "multishot",
    ]) else {
        return;
    };
    let stderr = grade_and_stop(
        server,
        "06 tiny pool, bundles",
        &["stalled_many", "idle", "churn"],
    );
    assert!(stat(&stderr, "enobufs") > 0, "{stderr}");
    assert!(stat(&stderr, "reserve_recvs") > 0, "{stderr}");
}

/// Lesson 05's fault, with bundles: 64 peers that send and never read do
/// not starve a newcomer, and none of them is cut off.
#[test]
fn sixty_four_peers_that_never_read_do_not_starve_a_newcomer() {
    let Some(server) = start(&[]) else { return };
    let served = grader::checks::stalled_many_with(server.addr(), 64, 8 << 20)
        .unwrap_or_else(|e| panic!("64 peers that never read: {e}\n{}", server.stderr()));
    eprintln!("{served}");
    let stderr = stop(server, "06 64 stalled");
    assert_eq!(stat(&stderr, "conn_errors"), 0, "{stderr}");
    assert!(stat(&stderr, "reserve_recvs") > 0, "{stderr}");
    assert_eq!(stat(&stderr, "allocations_after_startup"), 0, "{stderr}");
    eprintln!(
        "max_held {} max_bundle {}",
        stat(&stderr, "max_held"),
        stat(&stderr, "max_bundle")
    );
}

/// `--max-conns 8`: the cap holds with the file table (a slot's socket
/// leaves the table when it closes, so the slot can be reused).
#[test]
fn the_cap_holds_and_slots_are_reused() {
    let Some(server) = start(&["--max-conns", "8"]) else {
        return;
    };
    for round in 0..3 {
        let mut clients: Vec<_> = (0..8)
            .map(|_| client::connect(server.addr(), LIMIT).unwrap())
            .collect();
        for (i, c) in clients.iter_mut().enumerate() {
            client::echo_once(c, round * 8 + i as u64, 0, 100)
                .unwrap_or_else(|e| panic!("round {round}: {e}\n{}", server.stderr()));
        }
    }
    let stderr = stop(server, "06 cap");
    assert_eq!(stat(&stderr, "refused"), 0, "{stderr}");
    assert_eq!(stat(&stderr, "accepted"), 24, "{stderr}");
}

/// `--direct-accept on`: every connection lives only in the file table,
/// accepted there by the kernel; the grader's every check passes, every
/// accept was a direct one, and every connection was closed through the
/// ring (its table slot freed), none left over.
#[test]
fn direct_accept_passes_every_check() {
    let Some(server) = start(&["--direct-accept", "on"]) else {
        return;
    };
    let stderr = grade_and_stop(server, "06 --direct-accept on", &[]);
    if !has(&stderr, "direct-accept") {
        return;
    }
    let accepted = stat(&stderr, "accepted");
    assert!(accepted > 3000, "{stderr}");
    assert_eq!(stat(&stderr, "direct_accepts"), accepted, "{stderr}");
    assert_eq!(stat(&stderr, "closed"), accepted, "{stderr}");
    assert_eq!(stat(&stderr, "fixed_files"), 0, "{stderr}");
    assert_eq!(stat(&stderr, "allocations_after_startup"), 0, "{stderr}");
}

/// The cap with direct descriptors: a slot comes back only when the
/// kernel has closed its table entry, and accepting pauses and resumes.
#[test]
fn direct_accept_holds_the_cap_and_reuses_slots() {
    let Some(server) = start(&["--max-conns", "8", "--direct-accept", "on"]) else {
        return;
    };
    for round in 0..3 {
        let mut clients: Vec<_> = (0..8)
            .map(|_| client::connect(server.addr(), LIMIT).unwrap())
            .collect();
        for (i, c) in clients.iter_mut().enumerate() {
            client::echo_once(c, round * 8 + i as u64, 0, 100)
                .unwrap_or_else(|e| panic!("round {round}: {e}\n{}", server.stderr()));
        }
    }
    let stderr = stop(server, "06 direct cap");
    if !has(&stderr, "direct-accept") {
        return;
    }
    assert_eq!(stat(&stderr, "refused"), 0, "{stderr}");
    assert_eq!(stat(&stderr, "accepted"), 24, "{stderr}");
    assert_eq!(stat(&stderr, "direct_accepts"), 24, "{stderr}");
}

/// `--direct-accept` without the file table runs with plain descriptors,
/// and says why in one line.
#[test]
fn direct_accept_without_the_table_says_so_and_runs() {
    let Some(server) = start(&["--direct-accept", "on", "--fixed-files", "off"]) else {
        return;
    };
    let mut c = client::connect(server.addr(), LIMIT).unwrap();
    client::echo_once(&mut c, 1, 0, 100).unwrap();
    drop(c);
    let stderr = stop(server, "06 direct without table");
    assert!(
        stderr.contains("--direct-accept: needs the registered file table"),
        "{stderr}"
    );
    assert!(stderr.contains("direct-accept off"), "{stderr}");
    assert_eq!(stat(&stderr, "direct_accepts"), 0, "{stderr}");
}

/// The options of the chapter's incremental run: larger buffers, fewer.
const INC: [&str; 6] = [
    "--buf-inc",
    "on",
    "--buffer-size",
    "65536",
    "--buffers",
    "512",
];

/// `--buf-inc on`: every check passes; receives leave their buffer with
/// the kernel (`buf_more`), so pieces of one buffer go out in order to
/// whoever they belong to; no piece is ever missing.
#[test]
fn incremental_buffers_pass_every_check() {
    let Some(server) = start(&INC) else { return };
    let stderr = grade_and_stop(server, "06 --buf-inc on", &[]);
    if !has(&stderr, "buf-inc") {
        return;
    }
    assert!(stat(&stderr, "buf_more") > 0, "{stderr}");
    assert!(
        stat(&stderr, "inc_pieces") > stat(&stderr, "recv_completions"),
        "{stderr}"
    );
    assert_eq!(stat(&stderr, "piece_overflows"), 0, "{stderr}");
    assert_eq!(stat(&stderr, "allocations_after_startup"), 0, "{stderr}");
}

/// Incremental consumption with bundles, small buffers of an odd size (so
/// pieces start at odd offsets) and a pool so small that buffers are
/// shared by connections and run out: no byte lost or reordered.
#[test]
fn incremental_small_buffers_with_bundles_lose_no_byte() {
    let Some(server) = start(&[
        "--buf-inc",
        "on",
        "--buffers",
        "16",
        "--buffer-size",
        "1000",
        "--recv",
        "multishot",
    ]) else {
        return;
    };
    let stderr = grade_and_stop(
        server,
        "06 --buf-inc, small buffers",
        &["stalled_many", "idle", "churn"],
    );
    if !has(&stderr, "buf-inc") {
        return;
    }
    assert!(stat(&stderr, "buf_more") > 0, "{stderr}");
    assert!(stat(&stderr, "bundles") > 0, "{stderr}");
    assert_eq!(stat(&stderr, "piece_overflows"), 0, "{stderr}");
}

/// A 4 MiB echo through 64 KiB incremental buffers: bundles of pieces,
/// every byte checked.
#[test]
fn a_large_echo_through_incremental_buffers() {
    let Some(server) = start(&INC) else { return };
    echo_four_mib(&server, 253);
    let stderr = stop(server, "06 --buf-inc large echo");
    if !has(&stderr, "buf-inc") {
        return;
    }
    assert!(stat(&stderr, "inc_pieces") > 0, "{stderr}");
    assert_eq!(stat(&stderr, "piece_overflows"), 0, "{stderr}");
}

/// Lesson 05's fault with incremental buffers: a buffer shared by several
/// connections is pinned by the slowest of them, so 64 peers that never
/// read can pin the whole open pool; the reserve (whole buffers) still
/// serves a newcomer.
#[test]
fn incremental_buffers_and_sixty_four_peers_that_never_read() {
    let Some(server) = start(&INC) else { return };
    let served = grader::checks::stalled_many_with(server.addr(), 64, 8 << 20)
        .unwrap_or_else(|e| panic!("64 peers that never read: {e}\n{}", server.stderr()));
    eprintln!("{served}");
    let stderr = stop(server, "06 --buf-inc 64 stalled");
    if !has(&stderr, "buf-inc") {
        return;
    }
    assert_eq!(stat(&stderr, "conn_errors"), 0, "{stderr}");
    assert_eq!(stat(&stderr, "piece_overflows"), 0, "{stderr}");
    assert_eq!(stat(&stderr, "allocations_after_startup"), 0, "{stderr}");
}

/// `--register-ring on`: every check passes with each enter naming the
/// ring by its registered index (`strace -e io_uring_enter` shows
/// `IORING_ENTER_REGISTERED_RING`; the counter says every enter of the
/// loop went through the submitter that registered it).
#[test]
fn registered_ring_passes_every_check() {
    let Some(server) = start(&["--register-ring", "on"]) else {
        return;
    };
    let stderr = grade_and_stop(server, "06 --register-ring on", &[]);
    if !has(&stderr, "register-ring") {
        return;
    }
    let enters = stat(&stderr, "enters");
    assert!(enters > 0, "{stderr}");
    assert_eq!(stat(&stderr, "registered_enters"), enters, "{stderr}");
    assert_eq!(stat(&stderr, "allocations_after_startup"), 0, "{stderr}");
}
