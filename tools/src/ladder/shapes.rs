//! The load shapes: what each run asks of a server.
//!
//! A server that is cheap in one shape can be dear in another: with one
//! client every echo waits for a wake-up, with a thousand the loop is never
//! idle, a pipeline lets one read carry many messages, a 64 KiB message is
//! all copying, and a fixed offered rate leaves every server the same work
//! to do, so its CPU per echo compares designs at equal load. So the runner
//! measures every server in several shapes, and the shapes are data: a
//! [`KINDS`] table of what each kind of load sends, and a default list
//! [`DEFAULT_SHAPES`] of names, which `--shapes` replaces.
//!
//! A shape's name is `KIND-CLIENTS`, with `@RATE` for a rate shape given its
//! rate: `pingpong-50`, `pipelined-50`, `streaming-8`, `rate-50`,
//! `rate-50@20000`. A rate shape without a rate offers [`DEFAULT_RATE_SHARE`]
//! of the slowest server's ping-pong rate at the same client count in the
//! first round, so its ping-pong shape must come before it in the list.

use serde::{Deserialize, Serialize};

use super::Run;
use super::tables::count;

/// What kind of load a shape is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShapeKind {
    /// Send a message, wait for its echo, send the next.
    Pingpong,
    /// Keep several messages in flight on each connection.
    Pipelined,
    /// Large messages: the cost is in copying, not in waking up.
    Streaming,
    /// An open loop at a fixed offered rate over all connections.
    Rate,
}

/// One row of the [`KINDS`] table.
#[derive(Debug, Clone, Copy)]
pub struct KindRow {
    pub kind: ShapeKind,
    /// The word in a shape's name.
    pub word: &'static str,
    /// Bytes per message.
    pub length: usize,
    /// Messages in flight per connection (for a rate shape, the most that
    /// may wait on one connection).
    pub pipeline: usize,
    /// What it shows, for tables and `--help`.
    pub what: &'static str,
}

/// What each kind of load sends.
pub const KINDS: &[KindRow] = &[
    KindRow {
        kind: ShapeKind::Pingpong,
        word: "pingpong",
        length: 512,
        pipeline: 1,
        what: "ping-pong, 512 B",
    },
    KindRow {
        kind: ShapeKind::Pipelined,
        word: "pipelined",
        length: 512,
        pipeline: 16,
        what: "pipelined 16 deep, 512 B",
    },
    KindRow {
        kind: ShapeKind::Streaming,
        word: "streaming",
        length: 64 * 1024,
        pipeline: 1,
        what: "streaming 64 KiB messages",
    },
    KindRow {
        kind: ShapeKind::Rate,
        word: "rate",
        length: 512,
        pipeline: 1,
        what: "a fixed offered rate (open loop), 512 B",
    },
];

/// The shapes every round runs by default, in order: the ping-pong at 50
/// clients comes before the rate shape that takes its rate from it.
pub const DEFAULT_SHAPES: &[&str] = &[
    "pingpong-1",
    "pingpong-8",
    "pingpong-50",
    "pingpong-1000",
    "pipelined-50",
    "streaming-8",
    "rate-50",
];

/// A rate shape without a rate offers this share of the slowest server's
/// ping-pong rate at its client count: low enough that every server carries
/// it, high enough that the CPU figures are not all idle time.
pub const DEFAULT_RATE_SHARE: f64 = 0.6;

/// One load, as run and as recorded in the data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shape {
    /// `KIND-CLIENTS`, as on the command line (without `@RATE`).
    pub name: String,
    pub kind: ShapeKind,
    pub clients: usize,
    pub length: usize,
    pub pipeline: usize,
    /// For a rate shape: the requests/s offered, once known.
    pub rate_per_sec: Option<f64>,
    /// For a rate shape: how the rate was chosen, in words.
    pub rate_from: Option<String>,
}

impl Shape {
    /// The row of [`KINDS`] for this shape's kind.
    pub fn kind_row(&self) -> &'static KindRow {
        kind_row(self.kind)
    }

    /// The shape as a heading says it: "ping-pong, 512 B, 50 clients".
    pub fn title(&self) -> String {
        let clients = if self.clients == 1 {
            "1 client".to_string()
        } else {
            format!("{} clients", self.clients)
        };
        let what = self.kind_row().what;
        match self.rate_per_sec {
            Some(rate) => format!("{what}, {clients}, {} requests/s offered", count(rate)),
            None => format!("{what}, {clients}"),
        }
    }

    /// The ping-pong shape a rate shape takes its rate from.
    pub fn rate_source(&self) -> String {
        format!("pingpong-{}", self.clients)
    }
}

/// The row of [`KINDS`] for `kind`.
pub fn kind_row(kind: ShapeKind) -> &'static KindRow {
    KINDS
        .iter()
        .find(|row| row.kind == kind)
        .expect("every kind has a row")
}

/// Parses `KIND-CLIENTS` or `rate-CLIENTS@RATE`.
pub fn parse(text: &str) -> Result<Shape, String> {
    let (name, rate) = match text.split_once('@') {
        Some((name, rate)) => (name, Some(rate)),
        None => (text, None),
    };
    let words: Vec<&str> = KINDS.iter().map(|k| k.word).collect();
    let bad = || {
        format!(
            "`{text}` is not a shape: KIND-CLIENTS, KIND one of {}, with @RATE after a rate \
             shape to give its rate (e.g. pingpong-50, rate-50@20000)",
            words.join(", ")
        )
    };
    let (word, clients) = name.rsplit_once('-').ok_or_else(bad)?;
    let row = KINDS.iter().find(|k| k.word == word).ok_or_else(bad)?;
    let clients: usize = clients.parse().ok().filter(|&c| c > 0).ok_or_else(bad)?;
    let rate = match rate {
        None => None,
        Some(_) if row.kind != ShapeKind::Rate => return Err(bad()),
        Some(r) => Some(
            r.parse::<f64>()
                .ok()
                .filter(|r| r.is_finite() && *r > 0.0)
                .ok_or_else(bad)?,
        ),
    };
    Ok(Shape {
        name: name.to_string(),
        kind: row.kind,
        clients,
        length: row.length,
        pipeline: row.pipeline,
        rate_per_sec: rate,
        rate_from: rate.map(|_| "given on the command line".to_string()),
    })
}

/// Checks a list of shapes: no name twice, and every rate shape that must
/// choose its rate in the run comes after the ping-pong shape it takes it
/// from.
pub fn check_order(shapes: &[Shape]) -> Result<(), String> {
    for (i, shape) in shapes.iter().enumerate() {
        if shapes[..i].iter().any(|s| s.name == shape.name) {
            return Err(format!("the shape {} is listed twice", shape.name));
        }
        if shape.kind == ShapeKind::Rate && shape.rate_per_sec.is_none() {
            let source = shape.rate_source();
            if !shapes[..i].iter().any(|s| s.name == source) {
                return Err(format!(
                    "{} takes its rate from {source}, which must come before it in --shapes \
                     (or give the rate: {}@REQUESTS_PER_SEC)",
                    shape.name, shape.name
                ));
            }
        }
    }
    Ok(())
}

/// The rate for a rate shape without one: `share` of the slowest server's
/// requests/s in its ping-pong shape in round 1, with how it was chosen.
pub fn choose_rate(shape: &Shape, runs: &[Run], share: f64) -> Result<(f64, String), String> {
    let source = shape.rate_source();
    let slowest = runs
        .iter()
        .filter(|r| r.round == 1 && r.shape == source && r.error.is_none())
        .min_by(|a, b| a.requests_per_sec.total_cmp(&b.requests_per_sec))
        .ok_or_else(|| format!("no successful {source} run in round 1 to choose a rate from"))?;
    let rate = (share * slowest.requests_per_sec).round().max(1.0);
    let how = format!(
        "{:.0}% of the slowest server's {source} rate in round 1 ({}, {} requests/s)",
        share * 100.0,
        slowest.server,
        count(slowest.requests_per_sec)
    );
    Ok((rate, how))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_give_the_kind_and_the_clients() {
        let s = parse("pipelined-50").unwrap();
        assert_eq!(
            (s.kind, s.clients, s.length, s.pipeline),
            (ShapeKind::Pipelined, 50, 512, 16)
        );
        assert_eq!(parse("streaming-8").unwrap().length, 65536);
        let r = parse("rate-50@20000").unwrap();
        assert_eq!(
            (r.name.as_str(), r.rate_per_sec),
            ("rate-50", Some(20000.0))
        );
        for bad in [
            "pingpong",
            "pingpong-0",
            "ping-50",
            "pingpong-50@100",
            "rate-50@-1",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_defaults_parse_and_are_in_a_runnable_order() {
        let shapes: Vec<Shape> = DEFAULT_SHAPES.iter().map(|s| parse(s).unwrap()).collect();
        assert_eq!(check_order(&shapes), Ok(()));
        let names: Vec<&str> = shapes.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, DEFAULT_SHAPES);
    }

    #[test]
    fn a_rate_shape_needs_its_ping_pong_first_unless_given_a_rate() {
        let rate = parse("rate-50").unwrap();
        let pp = parse("pingpong-50").unwrap();
        assert!(check_order(&[rate.clone(), pp.clone()]).is_err());
        assert!(check_order(&[pp.clone(), rate.clone()]).is_ok());
        assert!(check_order(&[parse("rate-50@100").unwrap()]).is_ok());
        assert!(check_order(&[pp.clone(), pp]).is_err(), "twice");
    }

    #[test]
    fn the_rate_is_a_share_of_the_slowest_first_round() {
        let run = |server: &str, round, rate| Run {
            server: server.into(),
            shape: "pingpong-50".into(),
            round,
            requests_per_sec: rate,
            ..Run::default()
        };
        let runs = [
            run("fast", 1, 100_000.0),
            run("slow", 1, 50_000.0),
            run("slower-later", 2, 10_000.0),
        ];
        let (rate, how) = choose_rate(&parse("rate-50").unwrap(), &runs, 0.6).unwrap();
        assert_eq!(rate, 30_000.0);
        assert!(how.contains("60%") && how.contains("slow,"), "{how}");
        assert!(choose_rate(&parse("rate-8").unwrap(), &runs, 0.6).is_err());
    }
}
