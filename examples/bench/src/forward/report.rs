//! The `--forward` figures and how they are printed, with issue #17's targets.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::report::{Heading, Metric, Spread, TransportFigures, cell, heading, median_each, round};

/// Each path's memory per idle connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ForwardMemory {
    /// Idle connections opened through each path.
    pub connections: usize,
    /// The plain forwarder's RSS per idle connection, KiB.
    pub one_hop_kib: f64,
    /// Through the relay over QUIC.
    pub quic: ToolsMemory,
    /// Through the relay over wss.
    pub wss: ToolsMemory,
}

/// The RSS per idle connection of each process on a relayed path, KiB.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ToolsMemory {
    /// The relay's.
    pub relay_kib: f64,
    /// `relay forward`'s.
    pub forward_kib: f64,
    /// `relay connect`'s.
    pub connect_kib: f64,
}

impl ToolsMemory {
    fn rounded(&self) -> Self {
        Self {
            relay_kib: round(self.relay_kib, 1),
            forward_kib: round(self.forward_kib, 1),
            connect_kib: round(self.connect_kib, 1),
        }
    }
}

/// Everything one forwarding run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ForwardFigures {
    /// tarpc over one direct TCP connection: the baseline.
    pub tcp: TransportFigures,
    /// The same through the plain one-hop forwarder.
    pub one_hop: TransportFigures,
    /// The same through `relay connect` → relay over QUIC → `relay forward`.
    pub quic: TransportFigures,
    /// The same over wss.
    pub wss: TransportFigures,
    /// Memory per idle connection.
    pub memory: ForwardMemory,
}

impl ForwardFigures {
    fn rounded(&self) -> Self {
        Self {
            tcp: self.tcp.rounded(),
            one_hop: self.one_hop.rounded(),
            quic: self.quic.rounded(),
            wss: self.wss.rounded(),
            memory: ForwardMemory {
                one_hop_kib: round(self.memory.one_hop_kib, 1),
                quic: self.memory.quic.rounded(),
                wss: self.memory.wss.rounded(),
                ..self.memory.clone()
            },
        }
    }

    fn subject(&self, name: &str) -> &TransportFigures {
        match name {
            "tcp" => &self.tcp,
            "one-hop" => &self.one_hop,
            "quic" => &self.quic,
            _ => &self.wss,
        }
    }
}

/// The paths compared with direct TCP.
const PATHS: [&str; 3] = ["one-hop", "quic", "wss"];

/// The figures of the table (see `crate::report::Metric`).
const METRICS: [Metric; 9] = [
    Metric { key: "p50_us", label: "latency p50 (us)", get: |t| Some(t.p50_us), digits: 1 },
    Metric { key: "p99_us", label: "latency p99 (us)", get: |t| Some(t.p99_us), digits: 1 },
    Metric { key: "calls_per_s", label: "calls/s (64 in flight, one conn.)", get: |t| Some(t.calls_per_s), digits: 0 },
    Metric { key: "mbps_64k", label: "MB/s 64 KiB echo", get: |t| Some(t.mbps_64k), digits: 1 },
    Metric { key: "mbps_1m", label: "MB/s 1 MiB echo", get: |t| Some(t.mbps_1m), digits: 1 },
    Metric { key: "connect_ms", label: "connect to first answer (ms)", get: |t| Some(t.connect_ms), digits: 2 },
    Metric {
        key: "cpu_us_per_call",
        label: "CPU per call, all on the path (us)",
        get: |t| match (t.cpu_us_per_call, t.tool_cpu_us_per_call) {
            (None, None) => None,
            (relay, tools) => Some(relay.unwrap_or(0.0) + tools.unwrap_or(0.0)),
        },
        digits: 2,
    },
    Metric { key: "tool_cpu_us_per_call", label: "  of it the tools'", get: |t| t.tool_cpu_us_per_call, digits: 2 },
    Metric { key: "relay_cpu_us_per_call", label: "  of it the relay's", get: |t| t.cpu_us_per_call, digits: 2 },
];

/// Issue #17's targets for both relayed paths: a ratio to direct TCP, and whether it is a
/// ceiling (latency) or a floor (calls/s).
const RATIO_TARGETS: [(&str, &str, f64, bool); 2] =
    [("p50_us", "p50 x tcp", 2.6, true), ("calls_per_s", "calls/s x tcp", 0.65, false)];
/// Issue #17's ceiling on each tool's memory per idle connection, KiB.
const TOOL_KIB_TARGET: f64 = 16.0;

/// Ratios to direct TCP: path → metric key → spread over the runs.
type Ratios = BTreeMap<&'static str, BTreeMap<&'static str, Spread>>;

/// What the forwarding runs measured, and what is reported of them.
#[derive(Debug, Clone, Serialize)]
pub struct ForwardSummary {
    /// How many runs.
    pub runs: usize,
    /// Every figure's median over the runs.
    pub forward: ForwardFigures,
    /// Each path's figures over direct TCP's, per run: path → figure → `{median, min, max}`.
    pub ratios: Ratios,
    /// The system's load averages (1, 5, 15 minutes) when each run started.
    pub load_averages: Vec<Option<String>>,
    /// Each run's figures.
    pub each_run: Vec<ForwardFigures>,
}

impl ForwardSummary {
    /// The summary of `runs`, with the load averages when each started.
    pub fn new(runs: Vec<ForwardFigures>, load_averages: Vec<Option<String>>) -> anyhow::Result<Self> {
        let median = median_each(&runs).context("taking the medians of the runs")?;
        let mut ratios = Ratios::new();
        for path in PATHS {
            let of_path = ratios.entry(path).or_default();
            for metric in &METRICS {
                let per_run =
                    runs.iter().filter_map(|run| match ((metric.get)(run.subject(path)), (metric.get)(&run.tcp)) {
                        (Some(v), Some(b)) if b > 0.0 => Some(v / b),
                        _ => None,
                    });
                if let Some(spread) = Spread::of(per_run.collect()) {
                    of_path.insert(metric.key, spread);
                }
            }
        }
        Ok(Self { runs: runs.len(), forward: median, ratios, load_averages, each_run: runs })
    }

    fn ratio(&self, path: &str, key: &str) -> Option<Spread> {
        self.ratios.get(path)?.get(key).copied()
    }

    fn rounded(&self) -> Self {
        let mut ratios = self.ratios.clone();
        ratios.values_mut().flat_map(|m| m.values_mut()).for_each(|r| *r = r.rounded());
        Self {
            forward: self.forward.rounded(),
            ratios,
            each_run: self.each_run.iter().map(ForwardFigures::rounded).collect(),
            ..self.clone()
        }
    }

    /// Whether both relayed paths meet every target.
    pub fn targets_met(&self) -> bool {
        self.target_rows().iter().all(|(_, _, _, met)| *met)
    }

    /// Each target: its label, the measured value, the target, and whether it is met.
    fn target_rows(&self) -> Vec<(String, Option<f64>, String, bool)> {
        let mut rows = Vec::new();
        for path in ["quic", "wss"] {
            for (key, label, target, ceiling) in RATIO_TARGETS {
                let measured = self.ratio(path, key).map(|r| r.median);
                let met = measured.is_some_and(|m| if ceiling { m <= target } else { m >= target });
                let bound = if ceiling { format!("<= {target}") } else { format!(">= {target}") };
                rows.push((format!("{path} {label}"), measured, bound, met));
            }
            let memory = if path == "quic" { &self.forward.memory.quic } else { &self.forward.memory.wss };
            for (tool, kib) in [("relay forward", memory.forward_kib), ("relay connect", memory.connect_kib)] {
                let met = kib <= TOOL_KIB_TARGET;
                rows.push((
                    format!("{path} {tool} KiB per idle connection"),
                    Some(kib),
                    format!("<= {TOOL_KIB_TARGET}"),
                    met,
                ));
            }
        }
        rows
    }

    /// One JSON object: `{"runs", "forward", "ratios", "load_averages", "each_run"}`, `forward`
    /// being the medians.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(&self.rounded()).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// The table for people. `took` is how long all the runs took.
    pub fn table(&self, quick: bool, took: Duration) -> String {
        let rounded = self.rounded();
        let f = &rounded.forward;
        let mut out = heading(
            "relay-bench --forward",
            "relay, host, tools and caller in separate processes",
            Heading { quick, runs: self.runs, took, load_averages: &self.load_averages },
        );
        let _ = writeln!(
            out,
            "{:<36} {:>9} {:>9} {:>6} {:>9} {:>6} {:>9} {:>6}",
            "", "tcp", "one-hop", "x tcp", "quic", "x tcp", "wss", "x tcp"
        );
        for metric in &METRICS {
            let (get, digits) = (metric.get, metric.digits);
            let ratio = |path: &str| cell(self.ratio(path, metric.key).map(|r| r.median), 2);
            let _ = writeln!(
                out,
                "{:<36} {:>9} {:>9} {:>6} {:>9} {:>6} {:>9} {:>6}",
                metric.label,
                cell(get(&f.tcp), digits),
                cell(get(&f.one_hop), digits),
                ratio("one-hop"),
                cell(get(&f.quic), digits),
                ratio("quic"),
                cell(get(&f.wss), digits),
                ratio("wss"),
            );
        }
        let m = &f.memory;
        let _ = writeln!(out, "\nmemory per idle connection (VmRSS, KiB; {} connections each):", m.connections);
        let _ = writeln!(out, "  {:<10} {:>9} {:>9} {:>9}", "", "connect", "relay", "forward");
        let _ = writeln!(out, "  {:<10} {:>9} {:>9} {:>9}", "one-hop", "-", "-", format!("{:.1}", m.one_hop_kib));
        for (path, t) in [("quic", &m.quic), ("wss", &m.wss)] {
            let _ = writeln!(out, "  {path:<10} {:>9.1} {:>9.1} {:>9.1}", t.connect_kib, t.relay_kib, t.forward_kib);
        }
        let _ = writeln!(out, "\n{:<52} {:>8} {:>8} {:>5}", "target (issue #17)", "measured", "target", "met");
        for (label, measured, bound, met) in self.target_rows() {
            let _ =
                writeln!(out, "{label:<52} {:>8} {bound:>8} {:>5}", cell(measured, 2), if met { "yes" } else { "NO" });
        }
        if self.runs > 1 {
            let _ = writeln!(out, "\nratios to tcp, lowest-highest of the {} runs:", self.runs);
            for metric in METRICS.iter().take(6) {
                let range = |path: &str| match self.ratio(path, metric.key) {
                    Some(r) => format!("{:.2}-{:.2}", r.min, r.max),
                    None => "-".to_owned(),
                };
                let _ = writeln!(
                    out,
                    "{:<36} {:>11} {:>11} {:>11}",
                    metric.label,
                    range("one-hop"),
                    range("quic"),
                    range("wss")
                );
            }
        }
        let _ = writeln!(
            out,
            "\ntcp: tarpc over one direct TCP connection (TCP_NODELAY); one-hop: through a plain forwarder \
             (copy_bidirectional, TCP_NODELAY);\nquic, wss: through relay connect -> relay -> relay forward, one \
             stream channel per connection. CPU: utime+stime of each\nprocess over the calls/s run, in 10 ms \
             ticks. MB = 10^6 bytes, payload counted one way.{}",
            if self.runs > 1 {
                "\nFigures and ratios: medians of the runs, each ratio taken within its run."
            } else {
                ""
            }
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(p50_us: f64, calls_per_s: f64) -> TransportFigures {
        TransportFigures {
            p50_us,
            p90_us: p50_us,
            p99_us: p50_us,
            p999_us: p50_us,
            calls_per_s,
            mbps_64k: 1.0,
            mbps_1m: 1.0,
            mbps_1m_vec: 1.0,
            connect_ms: 1.0,
            cpu_us_per_call: None,
            tool_cpu_us_per_call: None,
            caller_cpu_us_per_call: None,
            host_cpu_us_per_call: None,
        }
    }

    fn run(quic: (f64, f64), wss: (f64, f64), tool_kib: f64) -> ForwardFigures {
        let tools = ToolsMemory { relay_kib: 30.0, forward_kib: tool_kib, connect_kib: tool_kib };
        ForwardFigures {
            tcp: figures(100.0, 1000.0),
            one_hop: figures(150.0, 800.0),
            quic: figures(quic.0, quic.1),
            wss: figures(wss.0, wss.1),
            memory: ForwardMemory { connections: 10, one_hop_kib: 17.0, quic: tools.clone(), wss: tools },
        }
    }

    #[test]
    fn targets_are_checked_on_the_median_ratio_of_each_path() {
        // quic: p50 2.5x, 2.7x, 2.0x (median 2.5: met); calls 0.7, 0.6, 0.8 (median 0.7: met).
        // wss: p50 3.0x everywhere (missed); calls 0.9 (met).
        let runs = vec![
            run((250.0, 700.0), (300.0, 900.0), 8.0),
            run((270.0, 600.0), (300.0, 900.0), 8.0),
            run((200.0, 800.0), (300.0, 900.0), 8.0),
        ];
        let summary = ForwardSummary::new(runs, vec![None; 3]).unwrap();
        let rows = summary.target_rows();
        let met = |label: &str| rows.iter().find(|row| row.0 == label).map(|row| (row.1, row.3));
        assert_eq!(met("quic p50 x tcp"), Some((Some(2.5), true)));
        assert_eq!(met("quic calls/s x tcp"), Some((Some(0.7), true)));
        assert_eq!(met("wss p50 x tcp"), Some((Some(3.0), false)));
        assert_eq!(met("wss calls/s x tcp"), Some((Some(0.9), true)));
        assert_eq!(met("quic relay forward KiB per idle connection"), Some((Some(8.0), true)));
        assert!(!summary.targets_met(), "wss misses its p50");
        assert!(summary.table(true, Duration::from_secs(1)).contains("wss p50 x tcp"));
    }

    #[test]
    fn a_tool_over_its_memory_misses_and_cpu_adds_up_over_relay_and_tools() {
        let mut one = run((200.0, 800.0), (200.0, 800.0), 16.5);
        one.quic.cpu_us_per_call = Some(3.0);
        one.quic.tool_cpu_us_per_call = Some(5.0);
        let summary = ForwardSummary::new(vec![one], vec![None]).unwrap();
        assert!(!summary.targets_met());
        let all = METRICS.iter().find(|m| m.key == "cpu_us_per_call").unwrap();
        assert_eq!((all.get)(&summary.forward.quic), Some(8.0));
        assert_eq!((all.get)(&summary.forward.tcp), None, "no process on the path");
    }
}
