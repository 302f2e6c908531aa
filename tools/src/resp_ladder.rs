//! The data of `resp-ladder` (lesson 07 against `redis-server`, both driven
//! by the real `redis-benchmark`), and the Markdown tables made from it.
//!
//! `resp.json` holds every run: one `redis-benchmark -t TEST -c CLIENTS
//! -P PIPELINE -n REQUESTS --csv` against one server, with the requests/s
//! it printed and the server's CPU time over the run, from `/proc/PID/stat`
//! before and after, and the benchmark's own (from `getrusage` of the
//! children). Rounds alternate the servers, so each pair of runs shares the
//! machine's state; a ratio is taken within each round, and the table gives
//! the median ratio with the range over the rounds. The tables under
//! `tables/` are a function of the JSON: `--redraw` writes them again, and
//! `tests/resp_data.rs` checks the committed ones are what the data renders.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ladder::{Machine, median};

pub const SCHEMA: &str = "resp-ladder";
pub const SCHEMA_VERSION: u32 = 1;
/// The folder under the output directory that holds the tables.
pub const DIR: &str = "tables";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RespData {
    pub schema: String,
    pub schema_version: u32,
    pub machine: Machine,
    /// The command line that made the data.
    pub command: Vec<String>,
    pub clients: u32,
    pub pipelines: Vec<u32>,
    pub tests: Vec<String>,
    pub rounds: u32,
    /// Whether servers ran on CPU 0 and the benchmark on CPU 1.
    pub pinned: bool,
    pub servers: Vec<ServerEntry>,
    pub runs: Vec<RespRun>,
    /// Memory per idle connection, one entry per server (absent in data
    /// made before it was measured).
    #[serde(default)]
    pub memory: Vec<RespMemory>,
    /// The command that measured `memory`, when it was not the rounds' own
    /// (`resp-ladder --memory-only`).
    #[serde(default)]
    pub memory_command: Option<Vec<String>>,
}

/// One server's memory with `connections` idle connections open, against
/// its memory after a warm-up load with none: `VmRSS` from
/// `/proc/PID/status`, the server's own pages only.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RespMemory {
    pub server: String,
    pub connections: u32,
    pub baseline_kib: Option<u64>,
    pub loaded_kib: Option<u64>,
    pub per_connection_kib: Option<f64>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerEntry {
    pub name: String,
    pub command: Vec<String>,
    /// What `--version` said (redis-server), or the binary's name.
    pub version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RespRun {
    pub round: u32,
    pub server: String,
    /// redis-benchmark's test name: `PING_INLINE`, `SET`, `GET`.
    pub test: String,
    pub pipeline: u32,
    pub requests: u64,
    /// Wall-clock seconds of the benchmark process.
    pub seconds: f64,
    /// Requests per second, as redis-benchmark printed it.
    pub rps: f64,
    pub server_user_s: f64,
    pub server_system_s: f64,
    pub client_cpu_s: f64,
    pub error: Option<String>,
}

impl RespRun {
    /// Server CPU µs per request, user and system together.
    pub fn us_per_request(&self) -> f64 {
        (self.server_user_s + self.server_system_s) * 1e6 / self.requests as f64
    }
    pub fn server_busy(&self) -> f64 {
        (self.server_user_s + self.server_system_s) / self.seconds
    }
    pub fn client_busy(&self) -> f64 {
        self.client_cpu_s / self.seconds
    }
    /// The most requests/s this benchmark could make at what it spent per
    /// request in this run, had it been on the CPU all the time: one CPU
    /// second over its CPU time per request.
    pub fn client_ceiling(&self) -> f64 {
        self.requests as f64 / self.client_cpu_s.max(1e-9)
    }
}

/// The figures of one test at one pipeline depth: for each server the
/// medians over rounds, and the per-round ratios (lesson / redis).
pub struct Row {
    pub test: String,
    pub pipeline: u32,
    pub redis_rps: f64,
    pub lesson_rps: f64,
    pub rps_ratio: (f64, f64, f64),
    pub redis_us: f64,
    pub lesson_us: f64,
    pub us_ratio: (f64, f64, f64),
    pub redis_busy: f64,
    pub lesson_busy: f64,
    pub client_busy: f64,
    /// The benchmark's ceiling against the lesson (median), over Redis's
    /// requests/s (median): the most the lesson could show as a ratio.
    pub ceiling_ratio: f64,
}

/// Median, smallest and largest.
fn spread(values: &[f64]) -> (f64, f64, f64) {
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (median(values).unwrap_or(f64::NAN), lo, hi)
}

/// The rows, `lesson` compared with `redis`, in the data's order of tests
/// and pipelines. A test with no good pair of runs has no row.
pub fn rows(data: &RespData, redis: &str, lesson: &str) -> Vec<Row> {
    let mut out = Vec::new();
    for &pipeline in &data.pipelines {
        for test in &data.tests {
            let good = |server: &str| -> Vec<&RespRun> {
                data.runs
                    .iter()
                    .filter(|r| r.server == server && &r.test == test && r.pipeline == pipeline)
                    .filter(|r| r.error.is_none())
                    .collect()
            };
            let (r, l) = (good(redis), good(lesson));
            let pairs: Vec<(&RespRun, &RespRun)> = r
                .iter()
                .filter_map(|a| l.iter().find(|b| b.round == a.round).map(|b| (*a, *b)))
                .collect();
            if pairs.is_empty() {
                continue;
            }
            let med = |runs: &[&RespRun], f: fn(&RespRun) -> f64| {
                median(&runs.iter().map(|r| f(r)).collect::<Vec<_>>()).unwrap_or(f64::NAN)
            };
            let clients: Vec<&RespRun> = r.iter().chain(l.iter()).copied().collect();
            out.push(Row {
                test: test.clone(),
                pipeline,
                redis_rps: med(&r, |x| x.rps),
                lesson_rps: med(&l, |x| x.rps),
                rps_ratio: spread(&pairs.iter().map(|(a, b)| b.rps / a.rps).collect::<Vec<_>>()),
                redis_us: med(&r, RespRun::us_per_request),
                lesson_us: med(&l, RespRun::us_per_request),
                us_ratio: spread(
                    &pairs
                        .iter()
                        .map(|(a, b)| b.us_per_request() / a.us_per_request())
                        .collect::<Vec<_>>(),
                ),
                redis_busy: med(&r, RespRun::server_busy),
                lesson_busy: med(&l, RespRun::server_busy),
                client_busy: med(&clients, RespRun::client_busy),
                ceiling_ratio: med(&l, RespRun::client_ceiling) / med(&r, |x| x.rps),
            });
        }
    }
    out
}

fn thousands(rps: f64) -> String {
    if rps >= 1e6 {
        format!("{:.2}M", rps / 1e6)
    } else {
        format!("{:.0}k", rps / 1e3)
    }
}

fn ratio((median, lo, hi): (f64, f64, f64)) -> String {
    format!("{median:.2}× ({lo:.2}–{hi:.2})")
}

/// The comparison table: requests/s and server CPU µs per request, the
/// lesson's over Redis's as a ratio (median of the rounds, with their
/// range), and how busy each side was.
pub fn comparison(data: &RespData, redis: &str, lesson: &str) -> String {
    let mut out = String::from(
        "| test | -P | redis req/s | 07 req/s | 07 / redis req/s | redis CPU µs/req | \
         07 CPU µs/req | 07 / redis CPU | redis busy | 07 busy | client busy |\n",
    );
    if lesson != "07_uring_resp" {
        out = out.replace("07 ", &format!("{lesson} "));
    }
    out.push_str("|---|---|---|---|---|---|---|---|---|---|---|\n");
    for row in rows(data, redis, lesson) {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {:.3} | {:.3} | {} | {:.0}% | {:.0}% | {:.0}% |",
            row.test,
            row.pipeline,
            thousands(row.redis_rps),
            thousands(row.lesson_rps),
            ratio(row.rps_ratio),
            row.redis_us,
            row.lesson_us,
            ratio(row.us_ratio),
            row.redis_busy * 100.0,
            row.lesson_busy * 100.0,
            row.client_busy * 100.0,
        );
    }
    out
}

/// Each server on its own: requests/s and server CPU µs per request, the
/// median over the rounds with the smallest and largest, and the
/// benchmark's own CPU µs per request against it. A wide range of
/// requests/s beside a narrow one of CPU per request says the pace was set
/// outside the server (the client, or how fast an idle CPU wakes up).
pub fn spreads(data: &RespData) -> String {
    let mut out = String::from(
        "| server | test | -P | req/s: median (min–max) | server CPU µs/req: median (min–max) \
         | client CPU µs/req: median |\n",
    );
    out.push_str("|---|---|---|---|---|---|\n");
    for &pipeline in &data.pipelines {
        for test in &data.tests {
            for server in &data.servers {
                let runs: Vec<&RespRun> = data
                    .runs
                    .iter()
                    .filter(|r| r.server == server.name && &r.test == test)
                    .filter(|r| r.pipeline == pipeline && r.error.is_none())
                    .collect();
                if runs.is_empty() {
                    continue;
                }
                let rps = spread(&runs.iter().map(|r| r.rps).collect::<Vec<_>>());
                let us = spread(&runs.iter().map(|r| r.us_per_request()).collect::<Vec<_>>());
                let client = spread(
                    &runs
                        .iter()
                        .map(|r| r.client_cpu_s * 1e6 / r.requests as f64)
                        .collect::<Vec<_>>(),
                );
                let _ = writeln!(
                    out,
                    "| {} | {test} | {pipeline} | {} ({}–{}) | {:.3} ({:.3}–{:.3}) | {:.3} |",
                    server.name,
                    thousands(rps.0),
                    thousands(rps.1),
                    thousands(rps.2),
                    us.0,
                    us.1,
                    us.2,
                    client.0
                );
            }
        }
    }
    out
}

/// The setup: machine, command, servers.
pub fn setup(data: &RespData) -> String {
    let mut out = String::new();
    let m = &data.machine;
    let _ = writeln!(
        out,
        "{} rounds, `redis-benchmark -c {} -P {}`, tests {}; {} CPUs ({}), Linux {}, {}, \
         load average {} before the first run; {}.\n",
        data.rounds,
        data.clients,
        data.pipelines
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("/"),
        data.tests.join(", "),
        m.cpus,
        m.model,
        m.kernel,
        m.date,
        m.load_average
            .map_or("unknown".into(), |l| format!("{l:.2}")),
        if data.pinned {
            "servers pinned to CPU 0, the benchmark to CPU 1"
        } else {
            "not pinned"
        }
    );
    out.push_str("| server | version | command |\n|---|---|---|\n");
    for s in &data.servers {
        let _ = writeln!(
            out,
            "| {} | {} | `{}` |",
            s.name,
            s.version,
            s.command.join(" ")
        );
    }
    let _ = writeln!(out, "\nMade by `{}`.", data.command.join(" "));
    out
}

/// The targets lesson 07 was written against (issue 18): its server CPU
/// per request at most 0.67× Redis's for SET and GET at `-P 16` and
/// `-P 64`, its requests/s at least 1.3× Redis's at `-P 16` and at least
/// 0.95× at `-P 1`. Each as (what, test, pipeline, bound, at most?).
const TARGETS: [(&str, &str, u32, f64, bool); 10] = [
    ("server CPU per request", "SET", 16, 0.67, true),
    ("server CPU per request", "GET", 16, 0.67, true),
    ("server CPU per request", "SET", 64, 0.67, true),
    ("server CPU per request", "GET", 64, 0.67, true),
    ("requests/s", "PING_INLINE", 16, 1.3, false),
    ("requests/s", "SET", 16, 1.3, false),
    ("requests/s", "GET", 16, 1.3, false),
    ("requests/s", "PING_INLINE", 1, 0.95, false),
    ("requests/s", "SET", 1, 0.95, false),
    ("requests/s", "GET", 1, 0.95, false),
];

/// The targets table: each target, the ratio measured (the median of the
/// per-round ratios, with their range), whether the median meets it, and
/// for requests/s the benchmark's own ceiling as a ratio (one CPU second
/// over what it spent per request against the lesson, over Redis's
/// requests/s): a target above the ceiling is out of this client's reach.
/// Targets whose test or depth the run did not measure are left out.
pub fn targets(data: &RespData, redis: &str, lesson: &str) -> String {
    let rows = rows(data, redis, lesson);
    let mut out = String::from(
        "| target | test | -P | bound | measured (median of rounds, range) | met | \
         client's ceiling |\n|---|---|---|---|---|---|---|\n",
    );
    for (what, test, pipeline, bound, at_most) in TARGETS {
        let Some(row) = rows
            .iter()
            .find(|r| r.test == test && r.pipeline == pipeline)
        else {
            continue;
        };
        let measured = if at_most { row.us_ratio } else { row.rps_ratio };
        let met = if at_most {
            measured.0 <= bound
        } else {
            measured.0 >= bound
        };
        let _ = writeln!(
            out,
            "| {what} | {test} | {pipeline} | {} {bound:.2}× Redis's | {} | {} | {} |",
            if at_most { "at most" } else { "at least" },
            ratio(measured),
            if met { "yes" } else { "**no**" },
            if at_most {
                "".to_string()
            } else {
                format!("{:.2}×", row.ceiling_ratio)
            },
        );
    }
    out
}

/// Memory per idle connection: each server's resident memory after a
/// warm-up, with the idle connections open, and the growth per connection.
pub fn memory_table(data: &RespData) -> String {
    let n = data.memory.first().map_or(0, |m| m.connections);
    let mut out = format!(
        "Each server fresh, after a warm-up of 20,000 SET and GET requests; then {n} idle \
         connections held open by `redis-benchmark -c {n} -I`. VmRSS is the server's own \
         memory (the kernel's socket buffers are not in it).{}\n\n\
         | server | VmRSS after warm-up | with {n} idle connections | per connection |\n\
         |---|---:|---:|---:|\n",
        data.memory_command
            .as_ref()
            .map(|c| format!(" Measured by `{}`.", c.join(" ")))
            .unwrap_or_default()
    );
    for m in &data.memory {
        let kib = |v: Option<u64>| v.map_or("–".to_string(), |v| format!("{v} KiB"));
        let per = match (&m.per_connection_kib, &m.error) {
            (Some(v), _) => format!("{v:.2} KiB"),
            (None, Some(e)) => format!("not measured: {e}"),
            (None, None) => "–".into(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {per} |",
            m.server,
            kib(m.baseline_kib),
            kib(m.loaded_kib)
        );
    }
    out
}

/// Every table, by file name: one comparison with redis-server for lesson
/// 07 (`resp-comparison.md`) and one for each variant of it
/// (`resp-comparison-LABEL.md`, the label after `07 `).
pub fn render(data: &RespData) -> Vec<(String, String)> {
    let redis = "redis-server";
    let mut out = Vec::new();
    for server in data.servers.iter().filter(|s| s.name != redis) {
        let file = match server.name.strip_prefix("07 ") {
            Some(label) => format!("resp-comparison-{label}.md"),
            None => "resp-comparison.md".into(),
        };
        out.push((file, comparison(data, redis, &server.name)));
    }
    out.extend([
        (
            "resp-targets.md".into(),
            targets(data, redis, "07_uring_resp"),
        ),
        ("resp-spreads.md".into(), spreads(data)),
        ("resp-memory.md".into(), memory_table(data)),
        ("resp-setup.md".into(), setup(data)),
    ]);
    out
}

/// Writes `resp.json`'s tables under `dir/tables/`.
pub fn write_tables(dir: &Path, data: &RespData) -> std::io::Result<Vec<PathBuf>> {
    let tables = dir.join(DIR);
    std::fs::create_dir_all(&tables)?;
    let mut written = Vec::new();
    for (name, text) in render(data) {
        let path = tables.join(name);
        std::fs::write(&path, text)?;
        written.push(path);
    }
    Ok(written)
}

pub fn read(dir: &Path) -> Result<RespData, String> {
    let path = dir.join("resp.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The requests/s redis-benchmark printed for `test` in its `--csv` output
/// (`"SET","51020.41",...`).
pub fn parse_csv_rps(csv: &str, test: &str) -> Option<f64> {
    csv.lines().find_map(|line| {
        let mut cells = line.split(',').map(|c| c.trim_matches('"'));
        (cells.next()? == test).then(|| cells.next()?.parse().ok())?
    })
}

/// `resp-cpu.svg`: for each test and pipeline depth, the lesson's server
/// CPU per request over Redis's (the median of the rounds' ratios as the
/// bar, the lowest and highest round as the whisker), with a line at 1:
/// below it, the lesson spent less CPU per request than Redis.
pub fn draw_cpu_chart(dir: &Path, data: &RespData) -> Result<PathBuf, String> {
    use plotters::prelude::*;
    let rows = rows(data, "redis-server", "07_uring_resp");
    if rows.is_empty() {
        return Err("no pair of runs to chart".into());
    }
    let path = dir.join("resp-cpu.svg");
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let labels: Vec<String> = rows
        .iter()
        .map(|r| format!("{} -P {}", r.test.replace("_INLINE", ""), r.pipeline))
        .collect();
    let top = rows.iter().map(|r| r.us_ratio.2).fold(1.0_f64, f64::max) * 1.15;
    let root = SVGBackend::new(&path, (860, 300)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let n = rows.len();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "07's server CPU per request, × redis-server's (below 1: cheaper)",
            ("sans-serif", 16),
        )
        .margin(10)
        .x_label_area_size(26)
        .y_label_area_size(50)
        .build_cartesian_2d(-0.5..n as f64 - 0.5, 0.0..top)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&|v| {
            let i = v.round();
            if (v - i).abs() < 1e-6 && i >= 0.0 {
                labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc("× Redis's CPU per request")
        .y_label_formatter(&|v| format!("{v:.1}"))
        .draw()
        .map_err(|e| err(&e))?;
    let color = RGBColor(196, 92, 18);
    chart
        .draw_series(rows.iter().enumerate().map(|(i, r)| {
            let x = i as f64;
            Rectangle::new([(x - 0.3, 0.0), (x + 0.3, r.us_ratio.0)], color.filled())
        }))
        .map_err(|e| err(&e))?;
    chart
        .draw_series(rows.iter().enumerate().flat_map(|(i, r)| {
            let (x, (_, lo, hi)) = (i as f64, r.us_ratio);
            [
                PathElement::new(vec![(x, lo), (x, hi)], BLACK),
                PathElement::new(vec![(x - 0.06, lo), (x + 0.06, lo)], BLACK),
                PathElement::new(vec![(x - 0.06, hi), (x + 0.06, hi)], BLACK),
            ]
        }))
        .map_err(|e| err(&e))?;
    chart
        .draw_series(rows.iter().enumerate().map(|(i, r)| {
            use plotters::style::text_anchor::{HPos, Pos, VPos};
            Text::new(
                format!("{:.2}", r.us_ratio.0),
                (i as f64, r.us_ratio.2 + top * 0.02),
                ("sans-serif", 11)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Center, VPos::Bottom)),
            )
        }))
        .map_err(|e| err(&e))?;
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(-0.5, 1.0), (n as f64 - 0.5, 1.0)],
            BLACK.stroke_width(1),
        )))
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    drop(chart);
    drop(root);
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_redis_benchmarks_csv() {
        let csv = "\"test\",\"rps\",\"avg_latency_ms\"\n\"SET\",\"51020.41\",\"0.5\"\n\"GET\",\"59000.00\",\"0.4\"\n";
        assert_eq!(parse_csv_rps(csv, "SET"), Some(51020.41));
        assert_eq!(parse_csv_rps(csv, "GET"), Some(59000.0));
        assert_eq!(parse_csv_rps(csv, "PING_INLINE"), None);
    }
}
