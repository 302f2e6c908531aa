//! Chapter 07's measurements, `chapters/data/07/resp.json` (made by
//! `resp-ladder`), and the tables made from it: the data must parse with
//! the runner's own types and carry both servers, every test and pipeline
//! depth, with no failed run; and the Markdown tables under
//! `chapters/data/07/tables/` must be exactly what the data renders (a
//! table edited by hand, or a renderer changed without `resp-ladder
//! --redraw --out chapters/data/07`, fails here).

use std::path::Path;

use uring_echo_tools::resp_ladder::{self, DIR, SCHEMA, SCHEMA_VERSION};

fn folder() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("chapters/data/07")
}

#[test]
fn the_committed_resp_data_is_whole() {
    let data = resp_ladder::read(&folder()).unwrap();
    assert_eq!(
        (data.schema.as_str(), data.schema_version),
        (SCHEMA, SCHEMA_VERSION)
    );
    for server in ["redis-server", "07_uring_resp"] {
        assert!(data.servers.iter().any(|s| s.name == server), "{server}");
        for &pipeline in &data.pipelines {
            for test in &data.tests {
                let good = data
                    .runs
                    .iter()
                    .filter(|r| r.server == server && &r.test == test && r.pipeline == pipeline)
                    .filter(|r| r.error.is_none())
                    .count();
                assert!(good > 0, "{server} {test} -P {pipeline}: no good run");
            }
        }
    }
    assert!(data.runs.iter().all(|r| r.error.is_none()), "a failed run");
}

#[test]
fn the_committed_resp_tables_are_what_the_data_renders() {
    let data = resp_ladder::read(&folder()).unwrap();
    for (name, text) in resp_ladder::render(&data) {
        let path = folder().join(DIR).join(&name);
        let committed =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            committed, text,
            "{name} differs from what the data renders: run `cargo run --release --bin \
             resp-ladder -- --redraw --out chapters/data/07`"
        );
    }
}
