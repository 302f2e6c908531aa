//! Criterion benchmarks: every lesson on the list and every peer, side by side,
//! on the same work.
//!
//! This first group measures one round trip of a small message over loopback,
//! one client, one server at a time. The servers are the release builds Cargo
//! makes for `cargo bench`; each is started once, and stopped when its guard
//! drops. Throughput and many-client groups come with the measurement chapter.
//!
//! `ECHO_BENCH_QUICK=1 cargo bench` takes a quick, rough pass.

use std::env;
use std::io::{Read, Write};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use uring_echo_book::client;
use uring_echo_book::process::{ServerProcess, binary_path};

fn quick() -> bool {
    env::var_os("ECHO_BENCH_QUICK").is_some_and(|v| v != "0")
}

fn round_trip(c: &mut Criterion) {
    let mut group = c.benchmark_group("round_trip_64B");
    if quick() {
        group.warm_up_time(Duration::from_millis(200));
        group.measurement_time(Duration::from_millis(500));
        group.sample_size(10);
    }
    // Every lesson that runs here, then the peers they are compared with.
    let lessons = uring_echo_book::lessons::runnable()
        .into_iter()
        .map(|l| l.name);
    let peers = uring_echo_book::PEERS.iter().map(|p| p.name);
    for name in lessons.chain(peers) {
        let server = ServerProcess::start(binary_path(name), &["--addr", "127.0.0.1:0"])
            .unwrap_or_else(|e| panic!("{name} did not start: {e}"));
        let mut stream = client::connect(server.addr(), Duration::from_secs(10)).unwrap();
        let message = [0x5au8; 64];
        let mut reply = [0u8; 64];
        group.bench_function(name, |b| {
            b.iter(|| {
                stream.write_all(&message).unwrap();
                stream.read_exact(&mut reply).unwrap();
                // A benchmark that times a wrong answer measures nothing.
                assert_eq!(reply, message);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, round_trip);
criterion_main!(benches);
