//! The committed ladder data, `chapters/data/ladder.json`, is what the
//! results chapter quotes, and its tables are made from it. These checks
//! keep both honest as the code moves on: the data must parse with the
//! runner's own types (a renamed field breaks here, not in a reader's
//! chart), carry the current schema version, have every load shape, say
//! something about every lesson and every peer (measured, or skipped with a
//! reason), count system calls untraced and kernel memory per connection
//! (or say why not); and the Markdown tables under `chapters/data/tables/`
//! must be exactly what the data renders to. A lesson or peer added without
//! a new run fails here, which is the reminder to run `cargo run --release
//! --bin echo-ladder -- --out chapters/data` again; a table edited by hand,
//! or a renderer changed without `--redraw`, fails too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use uring_echo_tools::ladder::shapes::{DEFAULT_SHAPES, ShapeKind};
use uring_echo_tools::ladder::{LadderData, SCHEMA_VERSION, tables};
use uring_echo_tools::{LESSONS, PEERS, Protocol};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("chapters/data")
}

fn committed() -> LadderData {
    let path = data_dir().join("ladder.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} does not parse as ladder data: {e}", path.display()))
}

/// The names of the servers that were measured.
fn measured(data: &LadderData) -> Vec<&str> {
    data.servers
        .iter()
        .filter(|s| s.skipped.is_none())
        .map(|s| s.name.as_str())
        .collect()
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
    // The echo lessons: a lesson that speaks another protocol (07, RESP)
    // has its own benchmark, `resp-ladder`, and its own data
    // (`chapters/data/07/`); the echo ladder records it as skipped, with
    // that reason, from its next run on.
    let names = LESSONS
        .iter()
        .filter(|l| l.protocol == Protocol::Echo)
        .map(|l| l.name)
        .chain(PEERS.iter().map(|p| p.name));
    for name in names {
        let entry = data
            .servers
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("{name} is missing from ladder.json: run echo-ladder again"));
        assert!(!entry.command.is_empty(), "{name}: the command it ran with");
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
                    "{name} has no strace row (a row saying unavailable is fine)"
                );
                assert!(
                    data.memory.iter().any(|m| m.server == name),
                    "{name} has no memory row"
                );
            }
        }
    }
}

#[test]
fn every_shape_is_run_by_every_measured_server() {
    let data = committed();
    for &name in DEFAULT_SHAPES {
        let shape = data
            .settings
            .shapes
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("the shape {name} is missing from the data"));
        if shape.kind == ShapeKind::Rate {
            assert!(
                shape.rate_per_sec.is_some() && shape.rate_from.is_some(),
                "{name}: the rate chosen, and how, are recorded"
            );
        }
        for server in measured(&data) {
            assert!(
                data.runs
                    .iter()
                    .any(|r| r.server == server && r.shape == name && r.error.is_none()),
                "{server} has no successful {name} run"
            );
        }
    }
}

#[test]
fn every_run_has_cpu_per_echo_and_untraced_system_calls_or_the_reason() {
    let data = committed();
    for run in data.runs.iter().filter(|r| r.error.is_none()) {
        let at = format!("{} in {}, round {}", run.server, run.shape, run.round);
        assert!(
            run.user_us_per_echo.is_some() && run.system_us_per_echo.is_some(),
            "{at}: no server CPU per echo, the headline figure"
        );
        match (&run.syscalls_per_echo, &run.syscalls_unavailable) {
            (Some(per), _) => assert!(*per >= 0.0, "{at}: {per} system calls per echo"),
            (None, Some(why)) => assert!(
                why.starts_with("not measured, because "),
                "{at}: say why system calls were not counted: {why}"
            ),
            (None, None) => panic!("{at}: no untraced system calls, and no reason"),
        }
    }
    assert!(!data.settings.untraced_syscalls.is_empty());
}

#[test]
fn kernel_memory_per_connection_is_measured_or_the_reason_given() {
    let data = committed();
    for m in data.memory.iter().filter(|m| m.error.is_none()) {
        let k = &m.kernel;
        match (&k.per_connection_kib, &k.unavailable) {
            (Some(_), _) => assert!(
                k.method.contains("both ends"),
                "{}: the method must say it counts both ends of each connection: {}",
                m.server,
                k.method
            ),
            (None, Some(why)) => assert!(why.starts_with("not measured, because "), "{why}"),
            (None, None) => panic!("{}: no kernel memory, and no reason", m.server),
        }
    }
}

/// Every `ladder-*.md` under `dir`, by name.
fn fragments(dir: &Path) -> BTreeMap<String, String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    entries
        .filter_map(|e| {
            let path = e.ok()?.path();
            let name = path.file_name()?.to_str()?.to_string();
            (name.starts_with("ladder-") && name.ends_with(".md"))
                .then(|| Some((name, std::fs::read_to_string(&path).ok()?)))?
        })
        .collect()
}

#[test]
fn the_committed_tables_are_what_the_data_renders() {
    // The results chapter's run, and every other run committed anywhere
    // below it (`chapters/data/05/`, `chapters/data/06/with-trials/`, ...): the
    // same renderer, the same rule.
    let folders = data_folders(&data_dir(), "chapters/data");
    assert!(
        folders.len() > 1,
        "the chapters' own runs are found: {folders:?}"
    );
    for folder in folders {
        tables_match_the_data(&folder);
    }
}

/// `folder` (under the repository root, as `dir` is on disk) and every
/// folder below it that holds a `ladder.json`, at any depth.
fn data_folders(dir: &Path, folder: &str) -> Vec<String> {
    let mut found = Vec::new();
    if dir.join("ladder.json").is_file() {
        found.push(folder.to_string());
    }
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries.iter().filter(|e| e.path().is_dir()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        found.extend(data_folders(&entry.path(), &format!("{folder}/{name}")));
    }
    found
}

/// The Markdown tables under `FOLDER/tables/` are exactly what
/// `FOLDER/ladder.json` renders to.
fn tables_match_the_data(folder: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(folder);
    let text = std::fs::read_to_string(dir.join("ladder.json")).unwrap();
    let data: LadderData = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{folder}/ladder.json does not parse: {e}"));
    let scratch = std::env::temp_dir().join(format!(
        "ladder-tables-{}-{}",
        std::process::id(),
        folder.replace('/', "-")
    ));
    tables::write(&scratch, &data, folder).expect("the tables render");
    let fresh = fragments(&scratch.join(tables::DIR));
    let _ = std::fs::remove_dir_all(&scratch);
    let committed = fragments(&dir.join(tables::DIR));
    let redraw = format!("run `cargo run --release --bin echo-ladder -- --redraw --out {folder}`");
    for (name, text) in &fresh {
        match committed.get(name) {
            None => panic!("{folder}/tables/{name} is missing: {redraw}"),
            Some(old) => assert!(
                old == text,
                "{folder}/tables/{name} differs from what the data renders: {redraw}\n\
                 --- committed\n{old}\n--- rendered\n{text}"
            ),
        }
    }
    for name in committed.keys() {
        assert!(
            fresh.contains_key(name),
            "{folder}/tables/{name} is no longer made from the data: remove it, or {redraw}"
        );
    }
}

/// The ratio tables divide within a round: worked out here from the runs
/// themselves for one cell (05 against 03, CPU per echo, ping-pong with 50
/// clients), the median of the per-round ratios must be what the committed
/// table shows in 05's row.
#[test]
fn a_ratio_is_the_median_of_the_ratios_within_each_round() {
    let data = committed();
    let cpu = |server: &str, round: usize| {
        data.runs
            .iter()
            .find(|r| {
                r.server == server
                    && r.shape == "pingpong-50"
                    && r.round == round
                    && r.error.is_none()
            })
            .and_then(|r| Some(r.user_us_per_echo? + r.system_us_per_echo?))
    };
    let ratios: Vec<f64> = (1..=data.settings.rounds)
        .filter_map(|round| Some(cpu("05_uring_multishot", round)? / cpu("03_epoll", round)?))
        .collect();
    let median = uring_echo_tools::ladder::median(&ratios)
        .expect("05 and 03 ran pingpong-50 in the same rounds");
    let table = std::fs::read_to_string(data_dir().join("tables/ladder-ratios-03_epoll.md"))
        .expect("the ratio table against 03 is committed");
    // The first table in the fragment is CPU; its 05 row, third shape column.
    let row = table
        .lines()
        .find(|l| l.starts_with("| 05_uring_multishot |"))
        .expect("05 has a row");
    let column = data
        .settings
        .shapes
        .iter()
        .position(|s| s.name == "pingpong-50")
        .expect("the data has pingpong-50");
    let cell = row.split('|').nth(column + 2).unwrap().trim();
    assert!(
        cell.starts_with(&format!("{median:.2}")),
        "05 × 03 at pingpong-50 is {median:.2} by the runs, the table says {cell}"
    );
}

/// README's table of CPU per echo against lesson 03 is a copy of the
/// generated one: a new run that is not copied fails here.
#[test]
fn the_readme_quotes_the_committed_ratios_table() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let (begin, end) = (
        "<!-- ladder-ratios: begin -->\n",
        "\n<!-- ladder-ratios: end -->",
    );
    let start = readme
        .find(begin)
        .expect("README has no ladder-ratios block")
        + begin.len();
    let stop = start + readme[start..].find(end).expect("the block is not closed");
    let quoted = &readme[start..stop];
    let generated =
        std::fs::read_to_string(data_dir().join("tables/ladder-ratios-03_epoll.md")).unwrap();
    let from = generated.find("| server |").unwrap();
    let to = from + generated[from..].find("\n\n").unwrap();
    assert_eq!(
        quoted.trim(),
        generated[from..to].trim(),
        "copy the CPU table of chapters/data/tables/ladder-ratios-03_epoll.md into README.md"
    );
}
