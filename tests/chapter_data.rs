//! The chapter experiments of lessons 01 to 05,
//! `chapters/data/chapters/chapters.json` (made by `chapter-data`), and the
//! tables made from it: the data must parse with the tool's own types, hold
//! every experiment with a good run of every case and every count its
//! table shows; and the Markdown files under `chapters/data/chapters/tables/`
//! (a table per experiment, figures files beside some, and lesson 05's
//! single figures) must be exactly what the data renders (a table edited by
//! hand, or a renderer changed without `chapter-data --redraw`, fails here).

use std::path::Path;

use uring_echo_tools::chapter_data::{self, DIR, EXPERIMENTS, FIGURES, SCHEMA, SCHEMA_VERSION};

fn folder() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(chapter_data::DEFAULT_OUT)
}

#[test]
fn the_committed_chapter_data_is_whole() {
    let data = chapter_data::read(&folder()).unwrap();
    assert_eq!(
        (data.schema.as_str(), data.schema_version),
        (SCHEMA, SCHEMA_VERSION)
    );
    for exp in EXPERIMENTS {
        let record = data
            .experiments
            .iter()
            .find(|r| r.name == exp.name)
            .unwrap_or_else(|| panic!("no runs of {}", exp.name));
        assert!(!record.command.is_empty(), "{}: no command", exp.name);
        for case in exp.cases {
            let runs: Vec<_> = record
                .runs
                .iter()
                .filter(|r| r.case == case.label && r.server == case.server)
                .collect();
            assert!(!runs.is_empty(), "{} {}: no run", exp.name, case.label);
            for run in runs {
                assert!(
                    run.error.is_none(),
                    "{} {}: {:?}",
                    exp.name,
                    case.label,
                    run.error
                );
                assert!(run.client_command.iter().any(|a| a.ends_with("echo-bench")));
                assert!(run.count("voluntary_ctxt_switches").is_some());
                if case.strace && record.strace_skipped.is_none() {
                    assert!(run.strace_command.is_some(), "{}: no strace", case.label);
                    assert!(run.count("strace.total").is_some(), "{}", case.label);
                }
                if case.client.contains(&"--hold") {
                    for key in [
                        "rss_before_kib",
                        "rss_held_kib",
                        "rss_closed_kib",
                        "maps_held",
                    ] {
                        assert!(run.count(key).is_some(), "{}: no {key}", case.label);
                    }
                }
                if let Some(then) = case.then {
                    assert!(run.then_command.is_some(), "{}", case.label);
                    assert_eq!(
                        run.count("then.exit_code") == Some(0),
                        !then.fails,
                        "{}",
                        case.label
                    );
                    assert!(run.count("listen.recv_q_max").is_some(), "{}", case.label);
                }
                if case.server != "01_blocking" && case.server != "02_threads" {
                    assert!(run.counts.keys().any(|k| k.starts_with("stats.")));
                }
                if !case.holder.is_empty() {
                    assert!(run.holder_command.is_some(), "{}: no holder", case.label);
                }
                if case.server == "05_uring_multishot" {
                    // The burst table subtracts the share the server
                    // announced; without it there is no overshoot.
                    assert!(run.count("startup.share").is_some(), "{}", case.label);
                    assert!(run.count("stats.max_held").is_some(), "{}", case.label);
                }
            }
        }
    }
}

#[test]
fn the_committed_chapter_tables_are_what_the_data_renders() {
    let data = chapter_data::read(&folder()).unwrap();
    let tables = chapter_data::render(&data);
    // A table per experiment, and the hardening page's figures.
    for exp in EXPERIMENTS {
        let table = format!("{}.md", exp.name);
        assert!(tables.iter().any(|(name, _)| *name == table), "no {table}");
    }
    assert!(tables.iter().any(|(name, _)| name == FIGURES));
    for (name, text) in tables {
        let path = folder().join(DIR).join(&name);
        let committed =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            committed, text,
            "{name} differs from what the data renders: run `cargo run --release --bin \
             chapter-data -- --redraw`"
        );
        assert!(text.contains("do not edit by hand"), "{name}");
    }
}
