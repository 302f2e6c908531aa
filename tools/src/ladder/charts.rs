//! The charts, drawn from the data alone as SVG (plotters' SVG backend, so
//! no font or image library is built).
//!
//! Every chart is bars, one per server, with a whisker from the lowest to
//! the highest round: the bar is the median, and the whisker says whether a
//! difference between two bars is bigger than the noise. (Lines drawn
//! through two client counts would suggest a curve nobody measured.) Each
//! file has one panel per shape, each panel on its own scale:
//!
//! - `cpu.svg`: server CPU µs per echo, user (dark) under system (light),
//!   the whisker on the total;
//! - `requests.svg`: requests/s;
//! - `latency.svg`: p50, p99 and p99.9 side by side, in milliseconds;
//! - `syscalls.svg`: system calls per echo counted untraced, and a last
//!   panel with the strace run's count;
//! - `memory.svg`: memory per idle connection, the server's (VmRSS) and the
//!   kernel's (slab);
//! - `cost-LESSON.svg`, one per lesson measured: a small chart for that
//!   lesson's "What it costs", the CPU per echo of every server in ping-pong
//!   with 50 clients (or the first shape run), the lesson's bar in orange.

use std::path::{Path, PathBuf};

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::LadderData;
use super::summary::{self, Spread};

/// One set of bars: a value (with its spread) per server, in one colour.
struct Series {
    label: &'static str,
    color: RGBColor,
    values: Vec<Option<Spread>>,
}

/// One panel: a title, and the series drawn side by side, or stacked.
struct Panel {
    caption: String,
    y_desc: &'static str,
    series: Vec<Series>,
    /// Stacked: the series sit on top of each other, and `totals` holds the
    /// spread of their sum, for the whisker.
    stacked: Option<Vec<Option<Spread>>>,
    /// The server whose bars are drawn in orange, if any.
    highlight: Option<usize>,
}

/// The colour of a highlighted bar: orange, dark for the first series of a
/// stack and light for the second, as the blues are.
fn highlighted(k: usize) -> RGBColor {
    if k == 0 {
        RGBColor(196, 92, 18)
    } else {
        RGBColor(242, 176, 112)
    }
}

const PANEL_HEIGHT: u32 = 270;
const WIDTH: u32 = 860;

/// Draws every chart into `dir`; returns the files written.
pub fn draw_charts(dir: &Path, data: &LadderData) -> Result<Vec<PathBuf>, String> {
    let names: Vec<String> = summary::measured(data)
        .iter()
        .map(|s| s.name.clone())
        .collect();
    let mut written = Vec::new();
    for (file, panels) in [
        ("cpu.svg", cpu_panels(data)),
        ("requests.svg", request_panels(data)),
        ("latency.svg", latency_panels(data)),
        ("syscalls.svg", syscall_panels(data)),
        ("memory.svg", memory_panels(data)),
    ] {
        let panels: Vec<Panel> = panels
            .into_iter()
            .filter(|p| {
                p.series
                    .iter()
                    .any(|s| s.values.iter().any(Option::is_some))
            })
            .collect();
        if panels.is_empty() || names.is_empty() {
            continue;
        }
        let path = dir.join(file);
        draw_file(&path, &names, &panels).map_err(|e| format!("cannot draw {file}: {e}"))?;
        written.push(path);
    }
    written.extend(draw_lesson_charts(dir, data, &names)?);
    Ok(written)
}

/// `cost-LESSON.svg` for every lesson measured: one panel, CPU per echo in
/// the chapters' usual shape, the lesson's bar picked out.
fn draw_lesson_charts(
    dir: &Path,
    data: &LadderData,
    names: &[String],
) -> Result<Vec<PathBuf>, String> {
    let shapes = &data.settings.shapes;
    let Some(shape) = shapes
        .iter()
        .find(|s| s.name == "pingpong-50")
        .or(shapes.first())
    else {
        return Ok(Vec::new());
    };
    let cells = summary::cells(data, shape);
    let mut written = Vec::new();
    for (i, server) in summary::measured(data).iter().enumerate() {
        if server.kind != "lesson" {
            continue;
        }
        let mut panel = cpu_panel(&shape.title(), &cells);
        panel.caption = format!("server CPU per echo, µs: {}", shape.title());
        panel.highlight = Some(i);
        let file = format!("cost-{}.svg", server.name);
        let path = dir.join(&file);
        draw_file(&path, names, &[panel]).map_err(|e| format!("cannot draw {file}: {e}"))?;
        written.push(path);
    }
    Ok(written)
}

/// The spread of one figure for every measured server in every shape, one
/// panel per shape.
fn per_shape(data: &LadderData, panel: impl Fn(&str, &[summary::Cell]) -> Panel) -> Vec<Panel> {
    data.settings
        .shapes
        .iter()
        .map(|shape| panel(&shape.title(), &summary::cells(data, shape)))
        .collect()
}

fn cpu_panels(data: &LadderData) -> Vec<Panel> {
    per_shape(data, cpu_panel)
}

fn cpu_panel(title: &str, cells: &[summary::Cell]) -> Panel {
    Panel {
        caption: format!("server CPU per echo, µs: {title}"),
        y_desc: "µs per echo",
        series: vec![
            Series {
                label: "user",
                color: RGBColor(31, 78, 140),
                values: cells.iter().map(|c| c.of(summary::user_us)).collect(),
            },
            Series {
                label: "system",
                color: RGBColor(140, 180, 220),
                values: cells.iter().map(|c| c.of(summary::system_us)).collect(),
            },
        ],
        stacked: Some(cells.iter().map(|c| c.of(summary::cpu_us)).collect()),
        highlight: None,
    }
}

fn request_panels(data: &LadderData) -> Vec<Panel> {
    per_shape(data, |title, cells| Panel {
        caption: format!("requests/s: {title}"),
        y_desc: "requests/s",
        series: vec![Series {
            label: "requests/s",
            color: RGBColor(60, 120, 60),
            values: cells.iter().map(|c| c.of(summary::rate)).collect(),
        }],
        stacked: None,
        highlight: None,
    })
}

fn latency_panels(data: &LadderData) -> Vec<Panel> {
    let ms = |f: fn(&super::Run) -> Option<f64>| move |r: &super::Run| f(r).map(|us| us / 1000.0);
    per_shape(data, |title, cells| Panel {
        caption: format!("latency, ms: {title}"),
        y_desc: "ms",
        series: vec![
            Series {
                label: "p50",
                color: RGBColor(60, 150, 60),
                values: cells.iter().map(|c| c.of(ms(summary::p50))).collect(),
            },
            Series {
                label: "p99",
                color: RGBColor(50, 90, 200),
                values: cells.iter().map(|c| c.of(ms(summary::p99))).collect(),
            },
            Series {
                label: "p99.9",
                color: RGBColor(200, 50, 50),
                values: cells.iter().map(|c| c.of(ms(summary::p999))).collect(),
            },
        ],
        stacked: None,
        highlight: None,
    })
}

fn syscall_panels(data: &LadderData) -> Vec<Panel> {
    let mut panels = per_shape(data, |title, cells| Panel {
        caption: format!("system calls per echo, untraced: {title}"),
        y_desc: "calls per echo",
        series: vec![Series {
            label: "perf",
            color: RGBColor(120, 60, 140),
            values: cells.iter().map(|c| c.of(summary::syscalls)).collect(),
        }],
        stacked: None,
        highlight: None,
    });
    let traced = summary::measured(data)
        .iter()
        .map(|server| {
            let row = data.syscalls.iter().find(|s| s.server == server.name)?;
            summary::spread(&[row.per_request?])
        })
        .collect();
    panels.push(Panel {
        caption: format!(
            "system calls per echo under strace -c -f (one traced run, {} clients)",
            data.settings.strace_clients
        ),
        y_desc: "calls per echo",
        series: vec![Series {
            label: "strace",
            color: RGBColor(150, 150, 150),
            values: traced,
        }],
        stacked: None,
        highlight: None,
    });
    panels
}

fn memory_panels(data: &LadderData) -> Vec<Panel> {
    let per = |kernel: bool| -> Vec<Option<Spread>> {
        summary::measured(data)
            .iter()
            .map(|server| {
                let m = data.memory.iter().find(|m| m.server == server.name)?;
                let kib = if kernel {
                    m.kernel.per_connection_kib
                } else {
                    m.per_connection_kib
                };
                summary::spread(&[kib?.max(0.0)])
            })
            .collect()
    };
    let connections = data.settings.memory_connections;
    vec![
        Panel {
            caption: format!("server memory per idle connection, KiB (VmRSS, {connections})"),
            y_desc: "KiB",
            series: vec![Series {
                label: "VmRSS",
                color: RGBColor(200, 120, 40),
                values: per(false),
            }],
            stacked: None,
            highlight: None,
        },
        Panel {
            caption: "kernel memory per idle connection, KiB (slab growth, both ends of \
                      each loopback connection)"
                .to_string(),
            y_desc: "KiB",
            series: vec![Series {
                label: "slab",
                color: RGBColor(120, 90, 40),
                values: per(true),
            }],
            stacked: None,
            highlight: None,
        },
    ]
}

/// One SVG file, its panels one under the other.
fn draw_file(path: &Path, names: &[String], panels: &[Panel]) -> Result<(), String> {
    let height = PANEL_HEIGHT * panels.len() as u32;
    let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    for (area, panel) in root.split_evenly((panels.len(), 1)).iter().zip(panels) {
        draw_panel(area, names, panel)?;
    }
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}

/// The highest point a panel must show: a whisker's top, or a stack's.
fn panel_top(panel: &Panel) -> f64 {
    let highest = match &panel.stacked {
        Some(totals) => totals.iter().flatten().map(|s| s.max).fold(0.0, f64::max),
        None => panel
            .series
            .iter()
            .flat_map(|s| s.values.iter().flatten())
            .map(|s| s.max)
            .fold(0.0, f64::max),
    };
    // Room above the highest bar for its label, and for the legend where
    // there is one (it sits in the upper right, over the last server).
    let headroom = if panel.series.len() > 1 { 1.45 } else { 1.18 };
    if highest > 0.0 {
        highest * headroom
    } else {
        1.0
    }
}

/// A value as a bar's label, and on the axis.
fn short(v: f64, top: f64) -> String {
    if top >= 1000.0 {
        super::tables::count(v)
    } else if top >= 10.0 {
        format!("{v:.1}")
    } else if top >= 0.5 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    names: &[String],
    panel: &Panel,
) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let slots = names.len();
    let top = panel_top(panel);
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.caption, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(26)
        .y_label_area_size(64)
        .build_cartesian_2d(-0.5..slots as f64 - 0.5, 0.0..top)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(slots)
        // Only the whole numbers are servers; the rest stay blank.
        .x_label_formatter(&|v| {
            let i = v.round();
            if (v - i).abs() < 1e-6 && i >= 0.0 {
                names.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc(panel.y_desc)
        .y_label_formatter(&|v| short(*v, top))
        .draw()
        .map_err(|e| err(&e))?;

    let stacked = panel.stacked.is_some();
    let groups = if stacked { 1 } else { panel.series.len() };
    let width = 0.7 / groups as f64;
    let mut base = vec![0.0; slots];
    for (k, series) in panel.series.iter().enumerate() {
        let offset = if stacked {
            0.0
        } else {
            (k as f64 - (groups as f64 - 1.0) / 2.0) * width
        };
        let color = series.color;
        let bars: Vec<(f64, f64, f64)> = series
            .values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                let v = (*v)?;
                let from = if stacked { base[i] } else { 0.0 };
                Some((i as f64 + offset, from, from + v.median))
            })
            .collect();
        let highlight = panel.highlight;
        chart
            .draw_series(bars.iter().map(|&(x, from, to)| {
                // The bar's server: its slot, without the series' offset.
                let mine = highlight == Some((x - offset).round() as usize);
                let fill = if mine { highlighted(k) } else { color };
                Rectangle::new(
                    [(x - width * 0.45, from), (x + width * 0.45, to)],
                    fill.filled(),
                )
            }))
            .map_err(|e| err(&e))?
            .label(series.label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
        if stacked {
            for (i, v) in series.values.iter().enumerate() {
                base[i] += v.map_or(0.0, |v| v.median);
            }
        } else {
            let spreads: Vec<(f64, Spread)> = series
                .values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| Some((i as f64 + offset, (*v)?)))
                .collect();
            draw_whiskers(&mut chart, &spreads, width, top)?;
        }
    }
    if let Some(totals) = &panel.stacked {
        let spreads: Vec<(f64, Spread)> = totals
            .iter()
            .enumerate()
            .filter_map(|(i, v)| Some((i as f64, (*v)?)))
            .collect();
        draw_whiskers(&mut chart, &spreads, width, top)?;
    }
    if panel.series.len() > 1 {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(&e))?;
    }
    Ok(())
}

type Chart<'a, DB> = ChartContext<
    'a,
    DB,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// A whisker from the lowest to the highest round at each `(x, spread)`,
/// with the median written above it.
fn draw_whiskers<DB: DrawingBackend>(
    chart: &mut Chart<'_, DB>,
    spreads: &[(f64, Spread)],
    width: f64,
    top: f64,
) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let cap = width * 0.2;
    chart
        .draw_series(
            spreads
                .iter()
                .filter(|(_, s)| s.rounds > 1)
                .flat_map(|&(x, s)| {
                    [
                        PathElement::new(vec![(x, s.min), (x, s.max)], BLACK.stroke_width(1)),
                        PathElement::new(vec![(x - cap, s.min), (x + cap, s.min)], BLACK),
                        PathElement::new(vec![(x - cap, s.max), (x + cap, s.max)], BLACK),
                    ]
                }),
        )
        .map_err(|e| err(&e))?;
    chart
        .draw_series(spreads.iter().map(|&(x, s)| {
            Text::new(
                short(s.median, top),
                (x, s.max + top * 0.01),
                ("sans-serif", 10)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Center, VPos::Bottom)),
            )
        }))
        .map_err(|e| err(&e))?;
    Ok(())
}
