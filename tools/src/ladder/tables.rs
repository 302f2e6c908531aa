//! The book's tables, rendered from the data alone.
//!
//! A chapter never types a measured number into a table: it includes a
//! Markdown fragment (`{{#include data/tables/ladder-pingpong-50.md}}`) that
//! this module renders from `ladder.json`. `echo-ladder` writes the
//! fragments with the data, and `echo-ladder --redraw` writes them again
//! from the JSON without measuring, so a table and its data cannot drift
//! apart; a test renders them into a temporary folder and fails on any
//! difference from the committed ones.
//!
//! Why in `echo-ladder` and not a binary of its own: the runner already
//! reads and writes the data and draws the charts from it, and one command
//! that refreshes everything derived from `ladder.json` leaves nothing to
//! forget. Each fragment ends with a line naming that command and the data
//! file.
//!
//! The fragments, in `tables/` beside the data:
//!
//! - `ladder-shapes.md`: the shapes and the run's settings;
//! - `ladder-servers.md`: every server, its command, and why one was skipped;
//! - `ladder-cpu.md`: server CPU µs per echo, user + system, every server in
//!   every shape, on one page;
//! - `ladder-SHAPE.md`, one per shape: CPU per echo, requests/s, latency,
//!   untraced system calls and client busy share, median and range of the
//!   rounds;
//! - `ladder-syscalls.md`: system calls per echo under strace beside the
//!   untraced count;
//! - `ladder-memory.md`: memory per idle connection, the server's and the
//!   kernel's;
//! - `ladder-ratios-BASE.md`: every server's CPU per echo and requests/s
//!   divided by BASE's in the same round, the median of those ratios and
//!   their range, in every shape. BASE is lesson 03 (the reference the book
//!   divides by) and each variant (a variant is measured to be compared).
//!   A ratio taken within a round cancels what a slow spell did to both.
//! - `ladder-figures.md`: every figure a chapter quotes in running prose,
//!   one per anchor (`{{#include data/tables/ladder-figures.md:cpu-03_epoll-pingpong-50}}`
//!   puts `3.42` in a sentence), so that no figure in the text is typed by
//!   hand; the anchor names are listed in [`figures`].
//! - `ladder-row-SERVER.md`, one per measured server: that server alone, one
//!   line per shape (CPU per echo, its ratio to each lesson measured in the
//!   run, requests/s, untraced system calls per echo), so a chapter can
//!   quote one server's row where it discusses that server or variant.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use super::summary::{self, Cell, Spread};
use super::{LadderData, Run, Shape, ShapeKind};

/// The folder, inside the data's, that holds the fragments.
pub const DIR: &str = "tables";

/// One Markdown file.
#[derive(Debug, Clone, PartialEq)]
pub struct Fragment {
    /// The file's name, such as `ladder-pingpong-50.md`.
    pub file: String,
    pub text: String,
}

/// Every fragment for `data`. `out` is the data's folder as the command
/// line names it (`chapters/data`), for the line that says how to make the
/// fragment again.
pub fn render(data: &LadderData, out: &str) -> Vec<Fragment> {
    let mut fragments = vec![
        fragment("ladder-shapes.md", shapes_table(data)),
        fragment("ladder-servers.md", servers_table(data)),
        fragment("ladder-cpu.md", cpu_overview(data)),
    ];
    for shape in &data.settings.shapes {
        fragments.push(fragment(
            &format!("ladder-{}.md", shape.name),
            shape_table(data, shape),
        ));
    }
    fragments.push(fragment("ladder-syscalls.md", syscalls_table(data)));
    fragments.push(fragment("ladder-memory.md", memory_table(data)));
    for base in baselines(data) {
        fragments.push(fragment(
            &format!("ladder-ratios-{base}.md"),
            ratios_table(data, base),
        ));
    }
    fragments.push(fragment("ladder-figures.md", figures(data)));
    for server in summary::measured(data) {
        fragments.push(fragment(
            &format!("ladder-row-{}.md", server.name),
            row_table(data, &server.name),
        ));
    }
    for f in &mut fragments {
        let _ = write!(
            f.text,
            "\n*Generated from `{out}/ladder.json` by `cargo run --release --bin echo-ladder -- \
             --redraw --out {out}`; do not edit by hand.*\n"
        );
    }
    fragments
}

/// Writes the fragments into `dir/tables/`, first removing any `ladder-*.md`
/// there that this data no longer makes (a shape dropped since).
pub fn write(dir: &Path, data: &LadderData, out: &str) -> io::Result<Vec<PathBuf>> {
    let folder = dir.join(DIR);
    std::fs::create_dir_all(&folder)?;
    for entry in std::fs::read_dir(&folder)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("ladder-") && name.ends_with(".md") {
            std::fs::remove_file(&path)?;
        }
    }
    let mut written = Vec::new();
    for f in render(data, out) {
        let path = folder.join(&f.file);
        std::fs::write(&path, &f.text)?;
        written.push(path);
    }
    Ok(written)
}

fn fragment(file: &str, text: String) -> Fragment {
    Fragment {
        file: file.to_string(),
        text,
    }
}

/// The shapes, and how long and how often each ran.
fn shapes_table(data: &LadderData) -> String {
    let s = &data.settings;
    let mut out = format!(
        "{}; in each, every server once per shape, in turn, on a fresh process: {:.1} s of \
         warm-up, then {:.1} s measured. Server {}, load generator {}.\n\n",
        rounds(s.rounds),
        s.warmup_seconds,
        s.seconds,
        data.pinning.server,
        data.pinning.client
    );
    out.push_str("| shape | load | clients | bytes per message | in flight per connection | offered rate |\n");
    out.push_str("|---|---|---:|---:|---:|---|\n");
    for shape in &s.shapes {
        let rate = match (&shape.rate_per_sec, &shape.rate_from) {
            (Some(r), Some(from)) => format!("{} requests/s: {from}", count(*r)),
            (Some(r), None) => format!("{} requests/s", count(*r)),
            (None, _) if shape.kind == ShapeKind::Rate => "not chosen (no run)".to_string(),
            (None, _) => "as fast as it answers".to_string(),
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} | {rate} |",
            shape.name,
            shape.kind_row().what,
            count(shape.clients as f64),
            count(shape.length as f64),
            shape.pipeline,
        );
    }
    out
}

/// Every server: what it is, how it was started, whether it was measured.
fn servers_table(data: &LadderData) -> String {
    let mut out = String::from("| server | kind | design | command | measured |\n");
    out.push_str("|---|---|---|---|---|\n");
    for server in &data.servers {
        let measured = match &server.skipped {
            None => "yes".to_string(),
            Some(why) => format!("no: {}", cell_text(why)),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | `{}` | {measured} |",
            server.name,
            server.kind,
            cell_text(&server.model),
            server.command.join(" ")
        );
    }
    out
}

/// CPU µs per echo, user + system, for every server in every shape.
fn cpu_overview(data: &LadderData) -> String {
    let shapes = &data.settings.shapes;
    let mut out = String::from(
        "Server CPU time per echo in microseconds, user + system (median of the rounds); the \
         cheapest in each shape in bold.\n\n| server |",
    );
    for shape in shapes {
        let _ = write!(out, " `{}` |", shape.name);
    }
    out.push_str("\n|---|");
    out.push_str(&"---:|".repeat(shapes.len()));
    out.push('\n');
    let columns: Vec<Vec<Cell>> = shapes.iter().map(|s| summary::cells(data, s)).collect();
    let cheapest: Vec<Option<f64>> = columns
        .iter()
        .map(|cells| {
            cells
                .iter()
                .filter_map(|c| c.of(summary::cpu_us))
                .map(|s| s.median)
                .min_by(f64::total_cmp)
        })
        .collect();
    for (row, server) in summary::measured(data).iter().enumerate() {
        let _ = write!(out, "| {} |", server.name);
        for (cells, best) in columns.iter().zip(&cheapest) {
            let cell = &cells[row];
            let text = match (cell.of(summary::user_us), cell.of(summary::system_us)) {
                (Some(u), Some(s)) => {
                    let text = format!("{} + {}", us(u.median), us(s.median));
                    let total = cell.of(summary::cpu_us).map(|t| t.median);
                    if total.is_some() && total == *best {
                        format!("**{text}**")
                    } else {
                        text
                    }
                }
                _ if !cell.failed.is_empty() => "failed".to_string(),
                _ => "–".to_string(),
            };
            let _ = write!(out, " {text} |");
        }
        out.push('\n');
    }
    out
}

/// One shape: every server's figures, median and range of the rounds.
fn shape_table(data: &LadderData, shape: &Shape) -> String {
    let cells = summary::cells(data, shape);
    let with_enters = cells.iter().any(|c| c.of(summary::enters).is_some());
    let is_rate = shape.kind == ShapeKind::Rate;
    let how = match data.settings.rounds {
        1 => format!("one round of {:.1} s", data.settings.seconds),
        n => format!(
            "the median of {n} rounds of {:.1} s, the lowest and highest round in brackets",
            data.settings.seconds
        ),
    };
    let mut out = format!(
        "**{}**: {how}. CPU is the server's, per verified echo; × is its ratio to the cheapest \
         median; system calls are counted untraced.\n\n",
        shape.title(),
    );
    let mut header = vec![
        "server",
        "CPU µs/echo",
        "×",
        "user µs",
        "system µs",
        "requests/s",
    ];
    if is_rate {
        header.push("kept up");
    }
    header.extend(["p50 µs", "p99 µs", "p99.9 µs", "syscalls/echo"]);
    if with_enters {
        header.push("enters/echo");
    }
    header.push("client busy");
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(out, "|---|{}", "---:|".repeat(header.len() - 1));
    let cheapest = cells
        .iter()
        .filter_map(|c| c.of(summary::cpu_us))
        .map(|s| s.median)
        .min_by(f64::total_cmp);
    let mut notes = Vec::new();
    // Why system calls were not counted, with the servers each reason
    // applies to: usually one reason (no perf) for every server.
    let mut uncounted: Vec<(String, Vec<&str>)> = Vec::new();
    for cell in &cells {
        for run in &cell.failed {
            notes.push(format!(
                "- {}, round {}: no numbers: {}",
                cell.server,
                run.round,
                cell_text(run.error.as_deref().unwrap_or("failed"))
            ));
        }
        if cell.runs.is_empty() {
            continue;
        }
        let cpu = cell.of(summary::cpu_us);
        let mut row = vec![
            cell.server.to_string(),
            cpu.map_or("–".into(), |s| ranged(s, us)),
            match (cpu, cheapest) {
                (Some(c), Some(best)) if best > 0.0 => format!("{:.2}", c.median / best),
                _ => "–".into(),
            },
            median_or_dash(cell.of(summary::user_us), us),
            median_or_dash(cell.of(summary::system_us), us),
            cell.of(summary::rate)
                .map_or("–".into(), |s| ranged(s, count)),
        ];
        if is_rate {
            let kept = cell.runs.iter().filter(|r| r.kept_up == Some(true)).count();
            row.push(format!("{kept} of {}", cell.runs.len()));
        }
        row.push(median_or_dash(cell.of(summary::p50), us));
        row.push(median_or_dash(cell.of(summary::p99), us));
        row.push(median_or_dash(cell.of(summary::p999), us));
        row.push(match cell.of(summary::syscalls) {
            Some(s) => ranged(s, ratio),
            None => {
                if let Some(why) = summary::syscalls_unavailable(cell) {
                    match uncounted.iter_mut().find(|(w, _)| *w == why) {
                        Some((_, servers)) => servers.push(cell.server),
                        None => uncounted.push((why, vec![cell.server])),
                    }
                }
                "–".into()
            }
        });
        if with_enters {
            row.push(median_or_dash(cell.of(summary::enters), ratio));
        }
        row.push(median_or_dash(cell.of(summary::client_busy), |v| {
            format!("{v:.2}")
        }));
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    for (why, servers) in uncounted {
        notes.push(format!(
            "- system calls of {}: {}",
            servers.join(", "),
            cell_text(&why)
        ));
    }
    if !notes.is_empty() {
        out.push('\n');
        for note in notes {
            let _ = writeln!(out, "{note}");
        }
    }
    out
}

/// System calls per echo under strace, beside the untraced count.
fn syscalls_table(data: &LadderData) -> String {
    let s = &data.settings;
    let untraced_shape = s
        .shapes
        .iter()
        .find(|sh| sh.kind == ShapeKind::Pingpong && sh.clients == s.strace_clients);
    let mut out = format!(
        "Under `strace -c -f`: ping-pong, {} clients, {:.1} s, the count including start-up and \
         connecting. Untraced: {}.\n\n",
        s.strace_clients, s.strace_seconds, s.untraced_syscalls
    );
    let untraced_head = match untraced_shape {
        Some(sh) => format!("untraced, `{}`", sh.name),
        None => "untraced".to_string(),
    };
    let _ = writeln!(
        out,
        "| server | strace: calls/echo | most frequent under strace | {untraced_head}: calls/echo | own count: enters/echo |"
    );
    out.push_str("|---|---:|---|---:|---:|\n");
    let cells = untraced_shape.map(|sh| summary::cells(data, sh));
    for (i, server) in summary::measured(data).iter().enumerate() {
        let row = data.syscalls.iter().find(|r| r.server == server.name);
        let traced = match row.and_then(|r| r.per_request) {
            Some(per) => ratio(per),
            None => "–".to_string(),
        };
        let top = match row {
            Some(r) if r.per_request.is_some() => r
                .top
                .iter()
                .take(3)
                .map(|(name, calls)| format!("`{name}` {}", count(*calls as f64)))
                .collect::<Vec<_>>()
                .join(", "),
            Some(r) => cell_text(r.unavailable.as_deref().unwrap_or("")),
            None => String::new(),
        };
        let cell = cells.as_ref().map(|c| &c[i]);
        let untraced = cell
            .and_then(|c| c.of(summary::syscalls))
            .map_or("–".into(), |s| ranged(s, ratio));
        let enters = cell
            .and_then(|c| c.of(summary::enters))
            .map_or("–".into(), |s| ratio(s.median));
        let _ = writeln!(
            out,
            "| {} | {traced} | {top} | {untraced} | {enters} |",
            server.name
        );
    }
    out
}

/// Memory per idle connection: the server's resident memory, and the
/// kernel's slab memory.
fn memory_table(data: &LadderData) -> String {
    let n = data.settings.memory_connections;
    let mut out = format!(
        "{} idle connections, each echoed once, above a baseline taken after a warm-up load. \
         VmRSS is the server's own memory; kernel memory is {}.\n\n",
        count(n as f64),
        kernel_method(data)
    );
    let _ = writeln!(
        out,
        "| server | VmRSS after warm-up | with {} connections | VmRSS per connection | kernel per connection | kernel caches that grew most |",
        count(n as f64)
    );
    out.push_str("|---|---:|---:|---:|---:|---|\n");
    for server in summary::measured(data) {
        let Some(m) = data.memory.iter().find(|m| m.server == server.name) else {
            continue;
        };
        if let Some(e) = &m.error {
            let _ = writeln!(out, "| {} | failed: {} | | | | |", m.server, cell_text(e));
            continue;
        }
        let kib = |v: Option<u64>| v.map_or("–".into(), |v| format!("{} KiB", count(v as f64)));
        let per = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.2} KiB"));
        let k = &m.kernel;
        let kernel = match (&k.per_connection_kib, &k.unavailable) {
            (Some(v), _) => format!("{v:.2} KiB"),
            (None, Some(_)) => "not measured".into(),
            (None, None) => "–".into(),
        };
        let top = k
            .top
            .iter()
            .take(3)
            .map(|(name, kib)| format!("`{name}` {} KiB", count(*kib as f64)))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {kernel} | {top} |",
            m.server,
            kib(m.baseline_kib),
            kib(m.loaded_kib),
            per(m.per_connection_kib),
        );
    }
    out
}

/// How kernel memory was measured (the first server's method, or why not).
fn kernel_method(data: &LadderData) -> String {
    let kernel = data.memory.iter().map(|m| &m.kernel);
    let method = kernel
        .clone()
        .find(|k| k.per_connection_kib.is_some())
        .map(|k| k.method.clone());
    let why_not = kernel.clone().find_map(|k| k.unavailable.clone());
    method
        .or(why_not)
        .unwrap_or_else(|| "not measured".to_string())
}

/// The servers the ratio tables divide by: lesson 03 where it was measured,
/// and every variant.
fn baselines(data: &LadderData) -> Vec<&str> {
    summary::measured(data)
        .into_iter()
        .filter(|s| s.name == REFERENCE || s.kind == "variant")
        .map(|s| s.name.as_str())
        .collect()
}

/// The lesson the book divides by.
const REFERENCE: &str = "03_epoll";

/// Every other server against `base`, round by round, in every shape: CPU
/// per echo, then requests/s.
fn ratios_table(data: &LadderData, base: &str) -> String {
    let shapes = &data.settings.shapes;
    let how = match data.settings.rounds {
        1 => "one round".to_string(),
        n => format!(
            "the median of the {n} rounds' ratios, the lowest and highest round in brackets"
        ),
    };
    let mut out = format!(
        "Each figure divided by `{base}`'s in the same round: {how}. Below 1, less CPU per \
         echo (or fewer requests/s) than `{base}`.\n"
    );
    for (title, figure) in [
        (
            "Server CPU µs per echo",
            summary::cpu_us as fn(&Run) -> Option<f64>,
        ),
        ("Requests/s", summary::rate),
    ] {
        let _ = write!(out, "\n**{title}, × `{base}`**\n\n| server |");
        for shape in shapes {
            let _ = write!(out, " `{}` |", shape.name);
        }
        out.push_str("\n|---|");
        out.push_str(&"---:|".repeat(shapes.len()));
        out.push('\n');
        for server in summary::measured(data) {
            if server.name == base {
                continue;
            }
            let _ = write!(out, "| {} |", server.name);
            for shape in shapes {
                let text = round_ratios(data, shape, &server.name, base, figure)
                    .map_or("–".to_string(), |s| ranged(s, |v| format!("{v:.2}")));
                let _ = write!(out, " {text} |");
            }
            out.push('\n');
        }
    }
    out
}

/// A name as an mdBook anchor takes it: letters, digits, `_` and `-`.
pub fn anchor_name(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Every figure of the run as an mdBook anchor of its own, for prose to
/// include inline. For each measured server `S` and shape `SH` (names as
/// [`anchor_name`] writes them):
/// - `cpu-S-SH`, `cpu-range-S-SH`: server CPU µs per echo, its median and
///   its `min–max` over the rounds; `user-S-SH`, `system-S-SH` the split;
/// - `rate-S-SH`, `rate-range-S-SH`: requests/s;
/// - `p50-S-SH`, `p99-S-SH`, `p999-S-SH`: latency percentiles in µs
///   (median of the rounds), written as the shape's table writes them;
/// - `syscalls-S-SH`: untraced system calls per echo (median), and
///   `syscalls-range-S-SH` its `min–max`; `enters-S-SH`: the server's own
///   count of `io_uring_enter` calls per echo, where it keeps one;
/// - `busy-S-SH`: how busy the load generator was (1.00 is one core);
/// - `x03-S-SH` and `rate-x03-S-SH`: CPU per echo and requests/s over
///   lesson 03's in the same round, `median (min–max)`;
/// - `x-B-S-SH` and `rate-x-B-S-SH`: the same over any other measured
///   server `B`'s (a lesson, a variant or a peer), for a ratio to a base
///   other than 03;
/// - `mem-S` and `kmem-S`: our memory and the kernel's per idle connection,
///   KiB; `strace-S`: system calls per echo under strace;
/// - the machine: `machine-cpus`, `machine-kernel` and
///   `machine-load-average` (the 1-minute load as the run started).
pub fn figures(data: &LadderData) -> String {
    let mut out = String::from(
        "Every figure of this run, one per anchor, for the chapters' prose to include \
         inline.\n\n",
    );
    let mut put = |name: String, value: String| {
        let name = anchor_name(&name);
        let _ = write!(out, "ANCHOR: {name}\n{value}\nANCHOR_END: {name}\n");
    };
    let machine = &data.machine;
    put("machine-cpus".into(), machine.cpus.to_string());
    put("machine-kernel".into(), machine.kernel.clone());
    if let Some(load) = machine.load_average {
        put("machine-load-average".into(), format!("{load:.2}"));
    }
    for server in summary::measured(data) {
        let s = &server.name;
        for shape in &data.settings.shapes {
            let sh = &shape.name;
            let runs: Vec<&Run> = data
                .runs
                .iter()
                .filter(|r| &r.server == s && &r.shape == sh && r.error.is_none())
                .collect();
            let of = |figure: fn(&Run) -> Option<f64>| {
                summary::spread(&runs.iter().filter_map(|r| figure(r)).collect::<Vec<_>>())
            };
            if let Some(c) = of(summary::cpu_us) {
                put(format!("cpu-{s}-{sh}"), us(c.median));
                put(
                    format!("cpu-range-{s}-{sh}"),
                    format!("{}–{}", us(c.min), us(c.max)),
                );
            }
            if let Some(u) = of(summary::user_us) {
                put(format!("user-{s}-{sh}"), us(u.median));
            }
            if let Some(v) = of(summary::system_us) {
                put(format!("system-{s}-{sh}"), us(v.median));
            }
            if let Some(r) = of(summary::rate) {
                put(format!("rate-{s}-{sh}"), count(r.median));
                put(
                    format!("rate-range-{s}-{sh}"),
                    format!("{}–{}", count(r.min), count(r.max)),
                );
            }
            for (prefix, figure) in [
                ("p50", summary::p50 as fn(&Run) -> Option<f64>),
                ("p99", summary::p99),
                ("p999", summary::p999),
            ] {
                if let Some(p) = of(figure) {
                    put(format!("{prefix}-{s}-{sh}"), us(p.median));
                }
            }
            if let Some(c) = of(summary::syscalls) {
                put(format!("syscalls-{s}-{sh}"), ratio(c.median));
                put(
                    format!("syscalls-range-{s}-{sh}"),
                    format!("{}–{}", ratio(c.min), ratio(c.max)),
                );
            }
            if let Some(e) = of(summary::enters) {
                put(format!("enters-{s}-{sh}"), ratio(e.median));
            }
            if let Some(b) = of(summary::client_busy) {
                put(format!("busy-{s}-{sh}"), format!("{:.2}", b.median));
            }
            if s != REFERENCE {
                for (prefix, figure) in [
                    ("x03", summary::cpu_us as fn(&Run) -> Option<f64>),
                    ("rate-x03", summary::rate),
                ] {
                    if let Some(x) = round_ratios(data, shape, s, REFERENCE, figure) {
                        put(
                            format!("{prefix}-{s}-{sh}"),
                            ranged(x, |v| format!("{v:.2}")),
                        );
                    }
                }
            }
            for base in summary::measured(data) {
                let b = &base.name;
                if b == s {
                    continue;
                }
                for (prefix, figure) in [
                    ("x", summary::cpu_us as fn(&Run) -> Option<f64>),
                    ("rate-x", summary::rate),
                ] {
                    if let Some(x) = round_ratios(data, shape, s, b, figure) {
                        put(
                            format!("{prefix}-{b}-{s}-{sh}"),
                            ranged(x, |v| format!("{v:.2}")),
                        );
                    }
                }
            }
        }
        if let Some(m) = data.memory.iter().find(|m| &m.server == s) {
            if let Some(v) = m.per_connection_kib {
                put(format!("mem-{s}"), format!("{v:.2}"));
            }
            if let Some(v) = m.kernel.per_connection_kib {
                put(format!("kmem-{s}"), format!("{v:.2}"));
            }
        }
        if let Some(c) = data.syscalls.iter().find(|c| &c.server == s)
            && let Some(v) = c.per_request
        {
            put(format!("strace-{s}"), ratio(v));
        }
    }
    out
}

/// One server in every shape: its CPU per echo, that over each measured
/// lesson's in the same round, its requests/s and its untraced system
/// calls per echo.
fn row_table(data: &LadderData, server: &str) -> String {
    let lessons: Vec<&str> = summary::measured(data)
        .into_iter()
        .filter(|s| s.kind == "lesson" && s.name != server)
        .map(|s| s.name.as_str())
        .collect();
    let how = match data.settings.rounds {
        1 => "one round".to_string(),
        n => format!("the median of {n} rounds, the lowest and highest in brackets"),
    };
    let mut out = format!(
        "`{server}`: {how}; × a lesson is the ratio to that lesson's CPU per echo in the \
         same round.\n\n| shape | CPU µs/echo |"
    );
    for lesson in &lessons {
        let _ = write!(out, " × `{lesson}` |");
    }
    out.push_str(" requests/s | syscalls/echo |\n|---|---:|");
    out.push_str(&"---:|".repeat(lessons.len() + 2));
    out.push('\n');
    for shape in &data.settings.shapes {
        let runs: Vec<&Run> = data
            .runs
            .iter()
            .filter(|r| r.server == server && r.shape == shape.name && r.error.is_none())
            .collect();
        let spread_of = |figure: fn(&Run) -> Option<f64>| {
            summary::spread(&runs.iter().filter_map(|r| figure(r)).collect::<Vec<_>>())
        };
        let _ = write!(
            out,
            "| `{}` | {} |",
            shape.name,
            spread_of(summary::cpu_us).map_or("–".to_string(), |s| ranged(s, us))
        );
        for lesson in &lessons {
            let text = round_ratios(data, shape, server, lesson, summary::cpu_us)
                .map_or("–".to_string(), |s| ranged(s, |v| format!("{v:.2}")));
            let _ = write!(out, " {text} |");
        }
        let _ = writeln!(
            out,
            " {} | {} |",
            spread_of(summary::rate).map_or("–".to_string(), |s| ranged(s, count)),
            spread_of(summary::syscalls).map_or("–".to_string(), |s| format!("{:.3}", s.median)),
        );
    }
    out
}

/// `figure` of `server` over `figure` of `base`, in each round where both
/// ran without error.
fn round_ratios(
    data: &LadderData,
    shape: &Shape,
    server: &str,
    base: &str,
    figure: fn(&Run) -> Option<f64>,
) -> Option<Spread> {
    let of = |name: &str, round: usize| {
        data.runs
            .iter()
            .find(|r| {
                r.server == name && r.shape == shape.name && r.round == round && r.error.is_none()
            })
            .and_then(figure)
    };
    let ratios: Vec<f64> = data
        .runs
        .iter()
        .filter(|r| r.server == server && r.shape == shape.name)
        .filter_map(|r| Some(of(server, r.round)? / of(base, r.round)?))
        .filter(|v| v.is_finite())
        .collect();
    summary::spread(&ratios)
}

/// "1 round", "3 rounds".
fn rounds(n: usize) -> String {
    if n == 1 {
        "1 round".to_string()
    } else {
        format!("{n} rounds")
    }
}

/// `median (min–max)`, or the median alone for a single round.
fn ranged(s: Spread, show: impl Fn(f64) -> String) -> String {
    if s.rounds > 1 {
        format!("{} ({}–{})", show(s.median), show(s.min), show(s.max))
    } else {
        show(s.median)
    }
}

fn median_or_dash(s: Option<Spread>, show: impl Fn(f64) -> String) -> String {
    s.map_or("–".into(), |s| show(s.median))
}

/// A whole number with thousands separators: `143,426`.
pub fn count(v: f64) -> String {
    let digits = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 && digits != "0" {
        out.insert(0, '-');
    }
    out
}

/// Microseconds, to three significant figures or so.
pub fn us(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.2}")
    } else if v < 100.0 {
        format!("{v:.1}")
    } else {
        count(v)
    }
}

/// A small ratio, such as system calls per echo: `2.03`, `0.065`.
pub fn ratio(v: f64) -> String {
    if v < 0.1 {
        format!("{v:.3}")
    } else {
        format!("{v:.2}")
    }
}

/// Prose inside a table cell: no line breaks, no column bars.
fn cell_text(text: &str) -> String {
    text.replace('\n', " ").replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_for_people() {
        assert_eq!(count(143_426.4), "143,426");
        assert_eq!(count(999.0), "999");
        assert_eq!(count(1000.0), "1,000");
        assert_eq!(count(-1234.0), "-1,234");
        assert_eq!(us(4.567), "4.57");
        assert_eq!(us(45.67), "45.7");
        assert_eq!(us(4567.0), "4,567");
        assert_eq!(ratio(0.0654), "0.065");
        assert_eq!(ratio(2.031), "2.03");
        assert_eq!(cell_text("a|b\nc"), "a\\|b c");
    }

    #[test]
    fn a_range_is_shown_only_for_several_rounds() {
        let s = Spread {
            median: 2.0,
            min: 1.0,
            max: 3.0,
            rounds: 3,
        };
        assert_eq!(ranged(s, ratio), "2.00 (1.00–3.00)");
        assert_eq!(ranged(Spread { rounds: 1, ..s }, ratio), "2.00");
    }
}
