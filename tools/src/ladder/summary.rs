//! From runs to the figures tables and charts show: for each server in each
//! shape, the median of the rounds, with the lowest and highest round.
//!
//! The median, not the mean: one round disturbed by something else on the
//! machine moves a mean of three, not their median. The range beside it
//! says how far apart the rounds were, so a reader can tell a difference
//! between servers from noise.

use super::{LadderData, Run, ServerEntry, Shape, median};

/// One figure over the rounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// How many rounds had the figure.
    pub rounds: usize,
}

/// The spread of `values`, or `None` when there are none.
pub fn spread(values: &[f64]) -> Option<Spread> {
    Some(Spread {
        median: median(values)?,
        min: values.iter().copied().fold(f64::INFINITY, f64::min),
        max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        rounds: values.len(),
    })
}

/// The servers that were measured, in the data's order.
pub fn measured(data: &LadderData) -> Vec<&ServerEntry> {
    data.servers
        .iter()
        .filter(|s| s.skipped.is_none())
        .collect()
}

/// One server in one shape: its successful runs, and the failed ones.
#[derive(Debug)]
pub struct Cell<'a> {
    pub server: &'a str,
    pub shape: &'a Shape,
    pub runs: Vec<&'a Run>,
    pub failed: Vec<&'a Run>,
}

impl Cell<'_> {
    /// The spread over the successful rounds of one figure, where a round
    /// has it.
    pub fn of(&self, figure: impl Fn(&Run) -> Option<f64>) -> Option<Spread> {
        let values: Vec<f64> = self.runs.iter().filter_map(|r| figure(r)).collect();
        spread(&values)
    }
}

/// One cell per measured server for `shape`, in the data's order of servers.
pub fn cells<'a>(data: &'a LadderData, shape: &'a Shape) -> Vec<Cell<'a>> {
    measured(data)
        .into_iter()
        .map(|server| {
            let (runs, failed) = data
                .runs
                .iter()
                .filter(|r| r.server == server.name && r.shape == shape.name)
                .partition(|r| r.error.is_none());
            Cell {
                server: &server.name,
                shape,
                runs,
                failed,
            }
        })
        .collect()
}

/// The headline figure: the server's CPU µs per echo, user and system
/// together.
pub fn cpu_us(run: &Run) -> Option<f64> {
    Some(run.user_us_per_echo? + run.system_us_per_echo?)
}

pub fn user_us(run: &Run) -> Option<f64> {
    run.user_us_per_echo
}

pub fn system_us(run: &Run) -> Option<f64> {
    run.system_us_per_echo
}

pub fn rate(run: &Run) -> Option<f64> {
    Some(run.requests_per_sec)
}

pub fn p50(run: &Run) -> Option<f64> {
    Some(run.p50_us)
}

pub fn p99(run: &Run) -> Option<f64> {
    Some(run.p99_us)
}

pub fn p999(run: &Run) -> Option<f64> {
    Some(run.p999_us)
}

pub fn syscalls(run: &Run) -> Option<f64> {
    run.syscalls_per_echo
}

pub fn enters(run: &Run) -> Option<f64> {
    run.enters_per_echo
}

pub fn client_busy(run: &Run) -> Option<f64> {
    run.client_busy
}

/// Why a server has no untraced system-call count in a shape, if every
/// round says the same (the reasons of the rounds, each once).
pub fn syscalls_unavailable(cell: &Cell) -> Option<String> {
    let mut reasons: Vec<&str> = cell
        .runs
        .iter()
        .filter_map(|r| r.syscalls_unavailable.as_deref())
        .collect();
    reasons.dedup();
    (!reasons.is_empty()).then(|| reasons.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spread_is_the_median_and_the_extremes() {
        let s = spread(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.rounds), (2.0, 1.0, 3.0, 3));
        assert_eq!(spread(&[]), None);
    }

    #[test]
    fn cpu_per_echo_needs_both_halves() {
        let run = Run {
            user_us_per_echo: Some(1.0),
            system_us_per_echo: Some(4.0),
            ..Run::default()
        };
        assert_eq!(cpu_us(&run), Some(5.0));
        assert_eq!(
            cpu_us(&Run {
                system_us_per_echo: None,
                ..run
            }),
            None
        );
    }
}
