//! The committed ladder data, `chapters/data/ladder.json`, is what the
//! results chapter quotes. These checks keep it honest as the code moves on:
//! it must parse with the runner's own types (a renamed field breaks here,
//! not in a reader's chart), carry the current schema version, and say
//! something about every lesson and every peer, measured or skipped with a
//! reason. A lesson added to `LESSONS` without a new run fails here, which
//! is the reminder to run `cargo run --release --bin echo-ladder -- --out
//! chapters/data` again.

use std::path::Path;

use uring_echo_tools::ladder::{LadderData, SCHEMA_VERSION};
use uring_echo_tools::{LESSONS, PEERS};

fn committed() -> LadderData {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("chapters/data/ladder.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} does not parse as ladder data: {e}", path.display()))
}

#[test]
fn the_committed_data_has_the_current_schema() {
    let data = committed();
    assert_eq!(data.schema, "echo-ladder");
    assert_eq!(
        data.schema_version, SCHEMA_VERSION,
        "the data was written by an older runner: run echo-ladder again"
    );
    assert!(data.machine.cpus >= 1);
    assert!(!data.command.is_empty(), "the command that made the data");
}

#[test]
fn every_lesson_and_peer_is_measured_or_skipped_with_a_reason() {
    let data = committed();
    let names = LESSONS
        .iter()
        .map(|l| l.name)
        .chain(PEERS.iter().map(|p| p.name));
    for name in names {
        let entry = data
            .servers
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("{name} is missing from ladder.json: run echo-ladder again"));
        match &entry.skipped {
            Some(why) => assert!(!why.trim().is_empty(), "{name} is skipped without a reason"),
            None => {
                let good = data
                    .runs
                    .iter()
                    .filter(|r| r.server == name && r.error.is_none())
                    .count();
                assert!(good > 0, "{name} is measured but has no successful run");
                assert!(
                    data.syscalls.iter().any(|s| s.server == name),
                    "{name} has no syscalls row (a row saying unavailable is fine)"
                );
                assert!(
                    data.memory.iter().any(|m| m.server == name),
                    "{name} has no memory row"
                );
            }
        }
    }
}
