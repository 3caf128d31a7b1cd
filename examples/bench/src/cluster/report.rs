//! The cluster figures, and how they are printed: a table for people, one JSON object for
//! programs.
//!
//! Two targets of issue #13 are checked. A cross-node open may cost at most one NATS round trip
//! and one listener round trip more than a same-node open: the cross-node open's median minus
//! the same-node open's, over the NATS request-reply median plus the listener round trip, must
//! be at most 1. And a call on a cross-node channel runs host to caller's node only, as a
//! same-node call does: its median over the same-node median must be at most 1.1.
//!
//! The listener round trip is the part of a same-node open that is the listener's: the relay
//! node handing the host a new stream and the host's answer, with what each side does for it
//! (a control-path round trip, dearer than a call on an open channel). It is the same-node
//! open's median minus that of an open the node refuses at once (an address where no host
//! listens: the caller's round trip to its node, token check and routing included).
//!
//! With `--runs N`, every figure is the median of the N runs' figures and every ratio the median
//! of the runs' ratios (each within its run), with each ratio's range over the runs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::report::{Heading, Spread, cell, heading, median_each, ratio, round};

/// The most a cross-node open may cost over a same-node open, in NATS round trips plus
/// listener round trips.
pub const OPEN_TARGET: f64 = 1.0;
/// The most a cross-node call's median may be, in same-node call medians.
pub const CALL_TARGET: f64 = 1.1;

/// Median and 99th percentile of something timed, µs.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Timed {
    /// Median, µs.
    pub p50_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
}

impl Timed {
    fn rounded(self) -> Self {
        Self { p50_us: round(self.p50_us, 1), p99_us: round(self.p99_us, 1) }
    }
}

/// Everything one cluster run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterFigures {
    /// Channels opened per side.
    pub opens: usize,
    /// Calls timed per side (and straight to the host).
    pub calls: usize,
    /// NATS round trips timed.
    pub nats_round_trips: usize,
    /// Channel opens by a caller on the host's node, on an existing connection.
    pub same_node_open: Timed,
    /// Channel opens by a caller on the other node, on an existing connection.
    pub cross_node_open: Timed,
    /// Sequential 64-byte echo calls on a same-node channel.
    pub same_node_call: Timed,
    /// Sequential 64-byte echo calls on a cross-node channel.
    pub cross_node_call: Timed,
    /// NATS request-reply round trips, tiny payloads, through the cluster's server.
    pub nats_rtt: Timed,
    /// Channel opens refused by node A itself (no listener anywhere): the caller's round trip
    /// to its node in an open.
    pub refused_open: Timed,
    /// The listener round trip: same-node open median − refused open median, µs.
    pub listener_rtt_us: f64,
    /// Cross-node open median − same-node open median, µs.
    pub open_extra_us: f64,
    /// NATS round trip median + listener round trip median, µs: what `open_extra_us` may be.
    pub open_budget_us: f64,
    /// `open_extra_us / open_budget_us`; the target is at most [`OPEN_TARGET`].
    pub open_extra_per_budget: f64,
    /// Cross-node call median / same-node call median; the target is at most [`CALL_TARGET`].
    pub call_p50_ratio: f64,
}

impl ClusterFigures {
    /// The figures of one run, from what it timed (each list in any order).
    pub fn new(timed: Samples) -> Self {
        let Samples { same_opens, cross_opens, refused_opens, same_calls, cross_calls, nats } = timed;
        let (opens, calls, nats_round_trips) = (same_opens.len(), same_calls.len(), nats.len());
        let [same_node_open, cross_node_open, refused_open, same_node_call, cross_node_call, nats_rtt] =
            [same_opens, cross_opens, refused_opens, same_calls, cross_calls, nats].map(Timed::of);
        let listener_rtt_us = same_node_open.p50_us - refused_open.p50_us;
        let open_extra_us = cross_node_open.p50_us - same_node_open.p50_us;
        let open_budget_us = nats_rtt.p50_us + listener_rtt_us;
        Self {
            opens,
            calls,
            nats_round_trips,
            same_node_open,
            cross_node_open,
            same_node_call,
            cross_node_call,
            nats_rtt,
            refused_open,
            listener_rtt_us,
            open_extra_us,
            open_budget_us,
            open_extra_per_budget: ratio(open_extra_us, open_budget_us),
            call_p50_ratio: ratio(cross_node_call.p50_us, same_node_call.p50_us),
        }
    }

    fn rounded(&self) -> Self {
        Self {
            same_node_open: self.same_node_open.rounded(),
            cross_node_open: self.cross_node_open.rounded(),
            same_node_call: self.same_node_call.rounded(),
            cross_node_call: self.cross_node_call.rounded(),
            nats_rtt: self.nats_rtt.rounded(),
            refused_open: self.refused_open.rounded(),
            listener_rtt_us: round(self.listener_rtt_us, 1),
            open_extra_us: round(self.open_extra_us, 1),
            open_budget_us: round(self.open_budget_us, 1),
            open_extra_per_budget: round(self.open_extra_per_budget, 3),
            call_p50_ratio: round(self.call_p50_ratio, 3),
            ..self.clone()
        }
    }
}

/// What one run timed.
#[derive(Debug, Default)]
pub struct Samples {
    /// Same-node channel opens.
    pub same_opens: Vec<Duration>,
    /// Cross-node channel opens.
    pub cross_opens: Vec<Duration>,
    /// Channel opens node A refuses itself.
    pub refused_opens: Vec<Duration>,
    /// Calls on the same-node channel.
    pub same_calls: Vec<Duration>,
    /// Calls on the cross-node channel.
    pub cross_calls: Vec<Duration>,
    /// NATS request-reply round trips.
    pub nats: Vec<Duration>,
}

impl Timed {
    fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        Self {
            p50_us: crate::measure::percentile_us(&samples, 0.50),
            p99_us: crate::measure::percentile_us(&samples, 0.99),
        }
    }
}

/// A checked ratio: its key in the JSON, its label in the table, how to read it from a run, and
/// the most it may be.
struct Target {
    key: &'static str,
    label: &'static str,
    get: fn(&ClusterFigures) -> f64,
    max: f64,
}

const TARGETS: [Target; 2] = [
    Target {
        key: "open_extra_per_budget",
        label: "(cross open - same open) / (NATS RTT + listener RTT)",
        get: |f| f.open_extra_per_budget,
        max: OPEN_TARGET,
    },
    Target {
        key: "call_p50_ratio",
        label: "cross-node call p50 / same-node call p50",
        get: |f| f.call_p50_ratio,
        max: CALL_TARGET,
    },
];

/// What the cluster runs measured, and what is reported of them.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterSummary {
    /// How many runs.
    pub runs: usize,
    /// Every figure's median over the runs.
    pub cluster: ClusterFigures,
    /// The checked ratios' spreads over the runs, by key.
    pub ratios: BTreeMap<&'static str, Spread>,
    /// The targets, by the same keys.
    pub targets: BTreeMap<&'static str, f64>,
    /// The system's load averages (1, 5, 15 minutes) when each run started.
    pub load_averages: Vec<Option<String>>,
    /// Each run's figures.
    pub each_run: Vec<ClusterFigures>,
}

impl ClusterSummary {
    /// The summary of `runs`, with the load averages when each started.
    pub fn new(runs: Vec<ClusterFigures>, load_averages: Vec<Option<String>>) -> anyhow::Result<Self> {
        let median = median_each(&runs).context("taking the medians of the runs")?;
        let mut ratios = BTreeMap::new();
        let mut targets = BTreeMap::new();
        for target in &TARGETS {
            if let Some(spread) = Spread::of(runs.iter().map(target.get).collect()) {
                ratios.insert(target.key, spread);
            }
            targets.insert(target.key, target.max);
        }
        Ok(Self { runs: runs.len(), cluster: median, ratios, targets, load_averages, each_run: runs })
    }

    fn rounded(&self) -> Self {
        Self {
            cluster: self.cluster.rounded(),
            ratios: self.ratios.iter().map(|(k, r)| (*k, r.rounded())).collect(),
            each_run: self.each_run.iter().map(ClusterFigures::rounded).collect(),
            ..self.clone()
        }
    }

    /// Whether every checked ratio's median meets its target.
    pub fn targets_met(&self) -> bool {
        TARGETS.iter().all(|t| self.ratios.get(t.key).is_some_and(|r| r.median <= t.max))
    }

    /// One JSON object: `{"runs", "cluster", "ratios", "targets", "load_averages", "each_run"}`,
    /// `cluster` being the medians.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(&self.rounded()).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// The table for people. `took` is how long all the runs took.
    pub fn table(&self, quick: bool, took: Duration) -> String {
        let rounded = self.rounded();
        let f = &rounded.cluster;
        let mut out = heading(
            "relay-bench --cluster",
            "nats-server, two relay nodes, the host (on node A) and the caller in separate processes",
            Heading { quick, runs: self.runs, took, load_averages: &self.load_averages },
        );
        let _ =
            writeln!(out, "{:<44} {:>9} {:>9} {:>9} {:>9}", "(us)", "same p50", "same p99", "cross p50", "cross p99");
        let pair = |label: &str, same: Timed, cross: Timed| {
            format!("{label:<44} {:>9.1} {:>9.1} {:>9.1} {:>9.1}", same.p50_us, same.p99_us, cross.p50_us, cross.p99_us)
        };
        let opens = format!("channel open, existing connection (x{})", f.opens);
        let _ = writeln!(out, "{}", pair(&opens, f.same_node_open, f.cross_node_open));
        let calls = format!("call, 64-byte echo, open channel (x{})", f.calls);
        let _ = writeln!(out, "{}", pair(&calls, f.same_node_call, f.cross_node_call));
        let _ = writeln!(out);
        let _ = writeln!(out, "{:<44} {:>9} {:>9}", "(us)", "p50", "p99");
        let one = |label: String, t: Timed| format!("{label:<44} {:>9.1} {:>9.1}", t.p50_us, t.p99_us);
        let _ = writeln!(out, "{}", one(format!("NATS request-reply (x{})", f.nats_round_trips), f.nats_rtt));
        let refused = format!("open refused by node A, no listener (x{})", f.opens);
        let _ = writeln!(out, "{}", one(refused, f.refused_open));
        let _ = writeln!(out);
        let _ = writeln!(out, "listener RTT = same open - refused open = {:.1} us (p50s)", f.listener_rtt_us);
        let _ = writeln!(
            out,
            "cross open - same open = {:.1} us; NATS RTT + listener RTT = {:.1} us (p50s)",
            f.open_extra_us, f.open_budget_us
        );
        let _ = writeln!(out, "{:<56} {:>8} {:>8} {:>5}", "target", "measured", "target", "met");
        for target in &TARGETS {
            let measured = rounded.ratios.get(target.key).map(|r| r.median);
            let met = match measured {
                Some(m) if m <= target.max => "yes",
                Some(_) => "NO",
                None => "-",
            };
            let max = format!("<= {:.1}", target.max);
            let _ = writeln!(out, "{:<56} {:>8} {max:>8} {met:>5}", target.label, cell(measured, 2));
        }
        if self.runs > 1 {
            let _ = writeln!(out, "\nratios, lowest-highest of the {} runs:", self.runs);
            for target in &TARGETS {
                if let Some(r) = self.ratios.get(target.key) {
                    let _ = writeln!(out, "{:<56} {:>8}", target.label, format!("{:.2}-{:.2}", r.min, r.max));
                }
            }
        }
        let medians = if self.runs > 1 {
            "\nFigures and ratios: medians of the runs, each ratio taken within its run."
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "\nsame: a caller on node A, the host's node; cross: a caller on node B, whose node asks A over NATS to \
             have the host dial a\none-time rendezvous on B, after which the channel runs host-B only. Opens: \
             from asking to the host's acceptance, one\nchannel at a time on one connection. Refused open: the caller's round trip to \
             its node in an open.{medians}"
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(values: &[u64]) -> Vec<Duration> {
        values.iter().copied().map(Duration::from_micros).collect()
    }

    #[test]
    fn the_targets_are_worked_out_from_the_medians() {
        let figures = ClusterFigures::new(Samples {
            same_opens: micros(&[300, 100, 200]),
            cross_opens: micros(&[500, 400, 600]),
            refused_opens: micros(&[150, 150, 150]),
            same_calls: micros(&[100, 100, 100]),
            cross_calls: micros(&[105, 105, 105]),
            nats: micros(&[150, 150, 150]),
        });
        assert_eq!((figures.opens, figures.calls, figures.nats_round_trips), (3, 3, 3));
        assert_eq!(figures.listener_rtt_us, 50.0);
        assert_eq!(figures.open_extra_us, 300.0);
        assert_eq!(figures.open_budget_us, 200.0);
        assert_eq!(figures.open_extra_per_budget, 1.5);
        assert!((figures.call_p50_ratio - 1.05).abs() < 1e-9);
        let summary = ClusterSummary::new(vec![figures], vec![None]).unwrap();
        assert!(!summary.targets_met(), "the open misses its target");
        assert!(summary.table(true, Duration::ZERO).contains("NO"));
    }

    #[test]
    fn nothing_timed_is_no_ratio() {
        let figures = ClusterFigures::new(Samples::default());
        assert_eq!((figures.open_extra_per_budget, figures.call_p50_ratio), (0.0, 0.0));
    }
}
