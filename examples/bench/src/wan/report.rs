//! The WAN figures, and how they are printed: a table for people, one JSON object for programs.
//!
//! Four columns: QUIC with no loss, QUIC with `--loss` on both legs, WSS and direct TCP (TCP
//! cannot be made to lose segments in userspace: those two run without loss, and the table says
//! so). Times are also given in round trips of the path: two legs, each a round trip of twice
//! the one-way delay, so the path RTT is 4 × the delay.
//!
//! Three goals of issue #16 are checked on both QUIC columns:
//! - a channel open on an existing connection takes at most 1.2 × the fewest round trips the
//!   path allows. That minimum is one path RTT: the open travels with the stream's first data
//!   (no handshake of its own), but the relay cannot answer it alone, it must ask the host over
//!   the host's connection and wait for its acceptance: caller → relay → host → relay → caller,
//!   one round trip of each leg. The median open over the path RTT must be at most 1.2;
//! - the p99 of 64-byte calls on one channel while 1 MiB echoes run on another channel of the
//!   same connection and host is at most 1.5 × the p99 of the same calls with nothing else
//!   running.
//!
//! - a caller that connects again (its first connection closed, the process alive) has its
//!   first answer within [`AGAIN_GOAL`] path RTTs as the proxies made them (the way crosses them
//!   eight times, each a little late). The fewest are two: it resumes its TLS session and sends
//!   its channel's hello as 0-RTT data with the handshake, so the open costs one path RTT as on
//!   an existing connection, and the call one more. Without 0-RTT it is two and a half: the
//!   handshake's round trip on the caller's leg comes first, as for a fresh process.
//!
//! A missed goal is reported, not an error. With `--runs N`, every figure is the median of the N
//! runs' figures and every checked ratio the median of the runs' ratios, with its range.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::report::{Heading, Spread, cell, heading, median_each, ratio, round};

/// The most a QUIC channel open's median may be, in path RTTs.
pub const OPEN_GOAL: f64 = 1.2;
/// The most a QUIC caller connecting again may take to its first answer, in path RTTs.
pub const AGAIN_GOAL: f64 = 2.2;
/// The most the calls' p99 beside a bulk transfer may be, in idle p99s.
pub const BUSY_GOAL: f64 = 1.5;

/// Median and 99th percentile of something timed, ms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Timed {
    /// Median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
}

impl Timed {
    /// The median and p99 of `samples` (in any order).
    pub fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        Self {
            p50_ms: crate::measure::percentile_us(&samples, 0.50) / 1000.0,
            p99_ms: crate::measure::percentile_us(&samples, 0.99) / 1000.0,
        }
    }

    fn rounded(self) -> Self {
        Self { p50_ms: round(self.p50_ms, 2), p99_ms: round(self.p99_ms, 2) }
    }
}

/// The figures of one subject at one loss.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Column {
    /// The loss probability on each UDP leg, each way (0 for the TCP subjects: none can be made).
    pub loss: f64,
    /// Channel opens on an existing connection (none for direct TCP, which has no channels).
    pub open: Option<Timed>,
    /// A fresh process, from the start of connecting to its first answer: the median, ms.
    pub fresh_ms: f64,
    /// The same for a process connecting a second time, after its first connection closed: the
    /// median, ms. Over QUIC it resumes its TLS session and sends its first hello as 0-RTT data.
    #[serde(default)]
    pub again_ms: f64,
    /// Sequential 64-byte calls on one channel, nothing else running.
    pub idle: Timed,
    /// The same while 1 MiB echoes run on another channel.
    pub busy: Timed,
    /// How many calls were timed beside the echoes.
    pub busy_calls: usize,
    /// The 1 MiB echoes' rate, MB/s (10^6 bytes of payload, counted one way).
    pub bulk_mbps: f64,
    /// How many 1 MiB echoes were in flight at once.
    pub bulk_in_flight: usize,
    /// The share of datagrams the UDP proxies dropped over the column, both legs, both ways
    /// (loss and full queues); none for the TCP subjects.
    pub datagrams_dropped: Option<f64>,
    /// UDP datagrams the kernel dropped over the column, its sockets' receive buffers full
    /// (system-wide: every process's); none for the TCP subjects.
    pub kernel_udp_drops: Option<u64>,
    /// How late the proxies on the path delivered, on average, past the delay (timer granularity
    /// and wake-ups), over the opens, fresh processes and idle calls, ms.
    pub late_ms: f64,
    /// The same beside the bulk echoes (which keep the proxies, in the bench process, busy), ms.
    pub busy_late_ms: f64,
    /// The latest single delivery over the opens, fresh processes and idle calls, ms past due.
    pub late_max_ms: f64,
    /// The latest single delivery beside the bulk echoes, ms past due.
    pub busy_late_max_ms: f64,
    /// The path's round trip as the proxies made it: the nominal one plus each crossing's
    /// lateness, ms.
    pub realised_rtt_ms: f64,
}

impl Column {
    fn rounded(&self) -> Self {
        Self {
            open: self.open.map(Timed::rounded),
            fresh_ms: round(self.fresh_ms, 2),
            again_ms: round(self.again_ms, 2),
            idle: self.idle.rounded(),
            busy: self.busy.rounded(),
            bulk_mbps: round(self.bulk_mbps, 2),
            datagrams_dropped: self.datagrams_dropped.map(|d| round(d, 5)),
            late_ms: round(self.late_ms, 3),
            busy_late_ms: round(self.busy_late_ms, 3),
            late_max_ms: round(self.late_max_ms, 2),
            busy_late_max_ms: round(self.busy_late_max_ms, 2),
            realised_rtt_ms: round(self.realised_rtt_ms, 2),
            ..self.clone()
        }
    }

    /// The open's median over `rtt_ms`, if there are opens.
    fn open_rtts(&self, rtt_ms: f64) -> Option<f64> {
        Some(ratio(self.open?.p50_ms, rtt_ms))
    }

    /// The calls' p99 beside the bulk echoes over their idle p99.
    fn busy_p99_ratio(&self) -> f64 {
        ratio(self.busy.p99_ms, self.idle.p99_ms)
    }
}

/// Everything one WAN run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WanFigures {
    /// The one-way delay of each leg, ms.
    pub delay_ms: f64,
    /// The loss of the `quic_lossy` column.
    pub loss: f64,
    /// The path's round trip, two legs: 4 × the delay, ms.
    pub path_rtt_ms: f64,
    /// QUIC with no loss.
    pub quic: Column,
    /// QUIC with the loss on both legs.
    pub quic_lossy: Column,
    /// WSS (no loss: TCP).
    pub wss: Column,
    /// Direct tarpc over TCP through one proxy with twice the delay (no loss).
    pub tcp: Column,
    /// `quic`'s open median in path RTTs; the goal is at most [`OPEN_GOAL`].
    pub quic_open_rtts: f64,
    /// `quic_lossy`'s open median in path RTTs.
    pub quic_lossy_open_rtts: f64,
    /// `quic`'s connecting again to first answer in path RTTs as made; the goal is at most
    /// [`AGAIN_GOAL`].
    #[serde(default)]
    pub quic_again_rtts: f64,
    /// `quic_lossy`'s connecting again to first answer in path RTTs as made.
    #[serde(default)]
    pub quic_lossy_again_rtts: f64,
    /// `quic`'s busy p99 over idle p99; the goal is at most [`BUSY_GOAL`].
    pub quic_busy_p99_ratio: f64,
    /// `quic_lossy`'s busy p99 over idle p99.
    pub quic_lossy_busy_p99_ratio: f64,
}

impl WanFigures {
    /// The figures of one run, the checked ratios worked out.
    pub fn new(delay: Duration, loss: f64, quic: Column, quic_lossy: Column, wss: Column, tcp: Column) -> Self {
        let delay_ms = delay.as_secs_f64() * 1000.0;
        let path_rtt_ms = 4.0 * delay_ms;
        Self {
            quic_open_rtts: quic.open_rtts(path_rtt_ms).unwrap_or(0.0),
            quic_lossy_open_rtts: quic_lossy.open_rtts(path_rtt_ms).unwrap_or(0.0),
            quic_again_rtts: ratio(quic.again_ms, quic.realised_rtt_ms),
            quic_lossy_again_rtts: ratio(quic_lossy.again_ms, quic_lossy.realised_rtt_ms),
            quic_busy_p99_ratio: quic.busy_p99_ratio(),
            quic_lossy_busy_p99_ratio: quic_lossy.busy_p99_ratio(),
            delay_ms,
            loss,
            path_rtt_ms,
            quic,
            quic_lossy,
            wss,
            tcp,
        }
    }

    /// The columns, with their names in the table and the chart.
    pub fn columns(&self) -> [(String, &Column); 4] {
        [
            ("quic 0%".to_owned(), &self.quic),
            (format!("quic {}%", percent(self.loss)), &self.quic_lossy),
            ("wss".to_owned(), &self.wss),
            ("tcp".to_owned(), &self.tcp),
        ]
    }

    fn rounded(&self) -> Self {
        Self {
            path_rtt_ms: round(self.path_rtt_ms, 2),
            quic: self.quic.rounded(),
            quic_lossy: self.quic_lossy.rounded(),
            wss: self.wss.rounded(),
            tcp: self.tcp.rounded(),
            quic_open_rtts: round(self.quic_open_rtts, 3),
            quic_lossy_open_rtts: round(self.quic_lossy_open_rtts, 3),
            quic_again_rtts: round(self.quic_again_rtts, 3),
            quic_lossy_again_rtts: round(self.quic_lossy_again_rtts, 3),
            quic_busy_p99_ratio: round(self.quic_busy_p99_ratio, 3),
            quic_lossy_busy_p99_ratio: round(self.quic_lossy_busy_p99_ratio, 3),
            ..self.clone()
        }
    }
}

/// `loss` as a percentage, without needless digits: `1`, `0.5`.
fn percent(loss: f64) -> String {
    format!("{}", round(loss * 100.0, 3))
}

/// A checked ratio: its key in the JSON, its label in the table, how to read it from a run, and
/// the most it may be.
struct Goal {
    key: &'static str,
    label: &'static str,
    get: fn(&WanFigures) -> f64,
    max: f64,
}

const GOALS: [Goal; 6] = [
    Goal {
        key: "quic_open_rtts",
        label: "quic 0%: channel open p50 / path RTT",
        get: |f| f.quic_open_rtts,
        max: OPEN_GOAL,
    },
    Goal {
        key: "quic_lossy_open_rtts",
        label: "quic loss: channel open p50 / path RTT",
        get: |f| f.quic_lossy_open_rtts,
        max: OPEN_GOAL,
    },
    Goal {
        key: "quic_again_rtts",
        label: "quic 0%: answer on reconnect / RTT as made",
        get: |f| f.quic_again_rtts,
        max: AGAIN_GOAL,
    },
    Goal {
        key: "quic_lossy_again_rtts",
        label: "quic loss: answer on reconnect / RTT as made",
        get: |f| f.quic_lossy_again_rtts,
        max: AGAIN_GOAL,
    },
    Goal {
        key: "quic_busy_p99_ratio",
        label: "quic 0%: call p99 beside bulk / idle p99",
        get: |f| f.quic_busy_p99_ratio,
        max: BUSY_GOAL,
    },
    Goal {
        key: "quic_lossy_busy_p99_ratio",
        label: "quic loss: call p99 beside bulk / idle p99",
        get: |f| f.quic_lossy_busy_p99_ratio,
        max: BUSY_GOAL,
    },
];

/// What the WAN runs measured, and what is reported of them.
#[derive(Debug, Clone, Serialize)]
pub struct WanSummary {
    /// How many runs.
    pub runs: usize,
    /// Every figure's median over the runs.
    pub wan: WanFigures,
    /// The checked ratios' spreads over the runs, by key.
    pub ratios: BTreeMap<&'static str, Spread>,
    /// The goals, by the same keys.
    pub goals: BTreeMap<&'static str, f64>,
    /// The system's load averages (1, 5, 15 minutes) when each run started.
    pub load_averages: Vec<Option<String>>,
    /// Each run's figures.
    pub each_run: Vec<WanFigures>,
}

impl WanSummary {
    /// The summary of `runs`, with the load averages when each started.
    pub fn new(runs: Vec<WanFigures>, load_averages: Vec<Option<String>>) -> anyhow::Result<Self> {
        let median = median_each(&runs).context("taking the medians of the runs")?;
        let mut ratios = BTreeMap::new();
        let mut goals = BTreeMap::new();
        for goal in &GOALS {
            if let Some(spread) = Spread::of(runs.iter().map(goal.get).collect()) {
                ratios.insert(goal.key, spread);
            }
            goals.insert(goal.key, goal.max);
        }
        Ok(Self { runs: runs.len(), wan: median, ratios, goals, load_averages, each_run: runs })
    }

    /// The summary with every figure rounded for printing.
    pub fn rounded(&self) -> Self {
        Self {
            wan: self.wan.rounded(),
            ratios: self.ratios.iter().map(|(k, r)| (*k, r.rounded())).collect(),
            each_run: self.each_run.iter().map(WanFigures::rounded).collect(),
            ..self.clone()
        }
    }

    /// Whether every checked ratio's median meets its goal.
    pub fn goals_met(&self) -> bool {
        GOALS.iter().all(|g| self.ratios.get(g.key).is_some_and(|r| r.median <= g.max))
    }

    /// One JSON object: `{"runs", "wan", "ratios", "goals", "load_averages", "each_run"}`, `wan`
    /// being the medians.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(&self.rounded()).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// The table for people. `took` is how long all the runs took.
    pub fn table(&self, quick: bool, took: Duration) -> String {
        let rounded = self.rounded();
        let f = &rounded.wan;
        let mut out = heading(
            "relay-bench --wan",
            "relay, host and caller in separate processes, impairment proxies in the bench process",
            Heading { quick, runs: self.runs, took, load_averages: &self.load_averages },
        );
        let loss = percent(f.loss);
        let _ = writeln!(
            out,
            "one-way delay {} ms per leg (caller-relay, relay-host): path RTT {} ms; UDP loss {loss}% each way on \
             each leg in the quic {loss}% column",
            f.delay_ms, f.path_rtt_ms
        );
        let columns = f.columns();
        let _ = write!(out, "{:<46}", "");
        for (name, _) in &columns {
            let _ = write!(out, " {name:>10}");
        }
        let _ = writeln!(out);
        let rtt = f.path_rtt_ms;
        let rows: [(&str, Row); 24] = [
            ("path RTT as the proxies made it (ms)", |c, _| Some(c.realised_rtt_ms)),
            ("  proxy lateness per crossing (ms)", |c, _| Some(c.late_ms)),
            ("  latest single crossing (ms)", |c, _| Some(c.late_max_ms)),
            ("channel open, existing connection, p50 (ms)", |c, _| c.open.map(|o| o.p50_ms)),
            ("  in path RTTs", |c, rtt| c.open_rtts(rtt)),
            ("  in path RTTs as made", |c, _| c.open_rtts(c.realised_rtt_ms)),
            ("channel open, existing connection, p99 (ms)", |c, _| c.open.map(|o| o.p99_ms)),
            ("fresh process to first answer, median (ms)", |c, _| Some(c.fresh_ms)),
            ("  in path RTTs", |c, rtt| Some(ratio(c.fresh_ms, rtt))),
            ("connecting again to first answer, median (ms)", |c, _| Some(c.again_ms)),
            ("  in path RTTs", |c, rtt| Some(ratio(c.again_ms, rtt))),
            ("  in path RTTs as made", |c, _| Some(ratio(c.again_ms, c.realised_rtt_ms))),
            ("64-byte call, idle, p50 (ms)", |c, _| Some(c.idle.p50_ms)),
            ("64-byte call, idle, p99 (ms)", |c, _| Some(c.idle.p99_ms)),
            ("64-byte call beside bulk, p50 (ms)", |c, _| Some(c.busy.p50_ms)),
            ("64-byte call beside bulk, p99 (ms)", |c, _| Some(c.busy.p99_ms)),
            ("  p99 beside bulk / idle p99", |c, _| Some(c.busy_p99_ratio())),
            ("  proxy lateness per crossing, beside (ms)", |c, _| Some(c.busy_late_ms)),
            ("  latest single crossing, beside (ms)", |c, _| Some(c.busy_late_max_ms)),
            ("  calls timed beside bulk", |c, _| Some(c.busy_calls as f64)),
            ("bulk, 1 MiB echoes, MB/s", |c, _| Some(c.bulk_mbps)),
            ("  echoes in flight", |c, _| Some(c.bulk_in_flight as f64)),
            ("datagrams dropped by the proxies (%)", |c, _| c.datagrams_dropped.map(|d| 100.0 * d)),
            ("  and by full socket buffers (all processes)", |c, _| c.kernel_udp_drops.map(|d| d as f64)),
        ];
        for (label, get) in rows {
            let _ = write!(out, "{label:<46}");
            for (_, column) in &columns {
                let value = get(column, rtt);
                let whole = ["timed", "buffers", "in flight"].iter().any(|w| label.contains(w));
                let digits = if whole { 0 } else { 2 };
                let _ = write!(out, " {:>10}", cell(value, digits));
            }
            let _ = writeln!(out);
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "{:<46} {:>8} {:>8} {:>5}", "goal", "measured", "goal", "met");
        for goal in &GOALS {
            let measured = rounded.ratios.get(goal.key).map(|r| r.median);
            let met = match measured {
                Some(m) if m <= goal.max => "yes",
                Some(_) => "NO",
                None => "-",
            };
            let max = format!("<= {:.1}", goal.max);
            let _ = writeln!(out, "{:<46} {:>8} {max:>8} {met:>5}", goal.label, cell(measured, 2));
        }
        if self.runs > 1 {
            let _ = writeln!(out, "\nratios, lowest-highest of the {} runs:", self.runs);
            for goal in &GOALS {
                if let Some(r) = self.ratios.get(goal.key) {
                    let _ = writeln!(out, "{:<46} {:>8}", goal.label, format!("{:.2}-{:.2}", r.min, r.max));
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
            "\nquic: UDP proxies on both legs, passing datagrams of up to {mtu} bytes (an Ethernet path's MTU);\nwss: \
             TCP proxies on both legs, no loss (TCP retransmits below the socket API: no loss\ncan be made in \
             userspace); tcp: tarpc straight to the host through one TCP proxy \
             with twice the delay, no loss.\nMinimum for an open: one path RTT (the relay asks the host). Lateness: \
             how far past the delay the proxies' timers\ndelivered (tokio's granularity: 1 ms); \"as made\" counts \
             it into the RTT. Bulk: 1 MiB echoes, several in flight on a\nsecond channel of the same caller \
             connection (a second connection for tcp), the calls beside it on the first.\nMB = 10^6 bytes of \
             payload, counted one way.{medians}",
            mtu = super::proxy::PATH_MTU_PAYLOAD,
        );
        out
    }
}

/// A table row's figure of one column, given the path RTT in ms.
type Row = fn(&Column, f64) -> Option<f64>;

#[cfg(test)]
mod tests {
    use super::*;

    fn column(open_ms: Option<f64>, idle_p99: f64, busy_p99: f64) -> Column {
        Column {
            open: open_ms.map(|p50_ms| Timed { p50_ms, p99_ms: p50_ms * 2.0 }),
            fresh_ms: 110.0,
            again_ms: 90.0,
            realised_rtt_ms: 45.0,
            idle: Timed { p50_ms: 40.0, p99_ms: idle_p99 },
            busy: Timed { p50_ms: 41.0, p99_ms: busy_p99 },
            ..Column::default()
        }
    }

    #[test]
    fn the_goals_are_worked_out_in_path_round_trips_and_idle_p99s() {
        let delay = Duration::from_millis(10);
        let figures = WanFigures::new(
            delay,
            0.01,
            column(Some(44.0), 50.0, 60.0),
            column(Some(52.0), 50.0, 100.0),
            column(Some(120.0), 50.0, 50.0),
            column(None, 45.0, 45.0),
        );
        assert_eq!(figures.path_rtt_ms, 40.0);
        assert!((figures.quic_open_rtts - 1.1).abs() < 1e-9);
        assert!((figures.quic_lossy_open_rtts - 1.3).abs() < 1e-9);
        assert!((figures.quic_busy_p99_ratio - 1.2).abs() < 1e-9);
        assert!((figures.quic_lossy_busy_p99_ratio - 2.0).abs() < 1e-9);
        assert!((figures.quic_again_rtts - 2.0).abs() < 1e-9, "in the RTT as made");
        let summary = WanSummary::new(vec![figures], vec![None]).unwrap();
        assert!(!summary.goals_met(), "the lossy column misses both goals");
        let table = summary.table(true, Duration::ZERO);
        assert!(table.contains("quic 1%"), "{table}");
        assert!(table.contains("NO"), "{table}");
        assert!(summary.json().contains("\"quic_lossy_open_rtts\": 1.3"));
    }

    #[test]
    fn medians_of_runs_keep_a_missing_open_missing() {
        let delay = Duration::from_millis(10);
        let run = |open| {
            WanFigures::new(delay, 0.0, column(open, 1.0, 1.0), column(open, 1.0, 1.0), column(open, 1.0, 1.0), {
                column(None, 1.0, 1.0)
            })
        };
        let summary = WanSummary::new(vec![run(Some(40.0)), run(Some(48.0)), run(Some(44.0))], vec![None; 3]).unwrap();
        assert_eq!(summary.wan.quic.open.unwrap().p50_ms, 44.0);
        assert!(summary.wan.tcp.open.is_none());
        assert!(summary.goals_met());
    }
}
