//! The figures, and how they are printed: a table for people, one JSON object for programs.
//!
//! Each run measures four subjects: two baselines, tarpc straight from the caller to the host
//! over plain TCP (`tcp`) and over TLS 1.3 on TCP (`tls`), and the relay's two transports
//! (`quic`, `wss`). A relayed call crosses two encrypted hops, so `x tls` (the relay's figure
//! over the TLS baseline's) is the honest answer to "what does the relay cost"; `x tcp` is
//! printed beside it, and the `tls` column's own `x tcp` says what TLS alone costs.
//!
//! With `--runs N`, every absolute figure is the median of the N runs' figures, and every ratio
//! the median of the N runs' ratios, each run's subject over the same run's baseline (so a ratio
//! need not be the quotient of the two medians printed beside it); a second table gives each
//! ratio's range over the runs. The median of an even count is the upper of the middle two.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The figures of one transport.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TransportFigures {
    /// Median latency of sequential 64-byte echo calls, µs.
    pub p50_us: f64,
    /// 90th percentile, µs.
    pub p90_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// 99.9th percentile, µs.
    pub p999_us: f64,
    /// 64-byte echo calls per second, many in flight on one channel.
    pub calls_per_s: f64,
    /// MB/s (10^6 bytes) of 64 KiB echoes, one in flight, payload counted one way.
    pub mbps_64k: f64,
    /// MB/s of 1 MiB echoes, likewise.
    pub mbps_1m: f64,
    /// MB/s of 1 MiB echoes as `Vec<u8>` (serde's element-by-element path), likewise.
    pub mbps_1m_vec: f64,
    /// Median time in a fresh process from the start of connecting to the first answer, ms.
    pub connect_ms: f64,
    /// The relay process's CPU time (user + system) per call over the calls/s run, µs; none for
    /// the baselines.
    pub cpu_us_per_call: Option<f64>,
    /// With `--forward`: the forwarding tools' CPU time per call over the same run, µs (none
    /// where no tool is on the path, and in the main figures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_cpu_us_per_call: Option<f64>,
    /// The caller's process's CPU time per call over the calls/s run, µs: tarpc's client and
    /// the transport's end (the bench's own counting included, alike for every subject).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_cpu_us_per_call: Option<f64>,
    /// The host's process's CPU time per call over the same run, µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_cpu_us_per_call: Option<f64>,
}

impl TransportFigures {
    pub fn rounded(&self) -> Self {
        Self {
            p50_us: round(self.p50_us, 1),
            p90_us: round(self.p90_us, 1),
            p99_us: round(self.p99_us, 1),
            p999_us: round(self.p999_us, 1),
            calls_per_s: round(self.calls_per_s, 0),
            mbps_64k: round(self.mbps_64k, 1),
            mbps_1m: round(self.mbps_1m, 1),
            mbps_1m_vec: round(self.mbps_1m_vec, 1),
            connect_ms: round(self.connect_ms, 2),
            cpu_us_per_call: self.cpu_us_per_call.map(|c| round(c, 2)),
            tool_cpu_us_per_call: self.tool_cpu_us_per_call.map(|c| round(c, 2)),
            caller_cpu_us_per_call: self.caller_cpu_us_per_call.map(|c| round(c, 2)),
            host_cpu_us_per_call: self.host_cpu_us_per_call.map(|c| round(c, 2)),
        }
    }
}

/// The relay's memory (`VmRSS`) at scale.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScaleFigures {
    /// Idle QUIC channels opened.
    pub channels: usize,
    /// The relay's limit of channels per connection and per listener for the channel figures
    /// (its default, 10,000, unless more channels were needed).
    pub max_channels_per_connection: usize,
    /// RSS with one host registered over QUIC, a caller connected and no channel, KiB.
    pub rss_idle_start_kib: u64,
    /// RSS with the idle QUIC channels open, KiB.
    pub rss_with_channels_kib: u64,
    /// (RSS with channels − idle RSS) / channels, KiB.
    pub rss_per_channel_kib: f64,
    /// How many of the idle QUIC channels answered a call afterwards.
    pub channels_answered: usize,
    /// RSS once the QUIC channels are closed, KiB.
    pub rss_after_close_kib: u64,
    /// RSS once as many QUIC channels again have been opened, called and closed, KiB: no more
    /// than `rss_after_close_kib` means what closing left was kept for reuse, not lost.
    pub rss_after_second_close_kib: u64,
    /// Idle WebSocket channels opened.
    pub wss_channels: usize,
    /// RSS before them, with one host registered over WebSocket (after the QUIC channels), KiB.
    pub rss_before_wss_kib: u64,
    /// RSS with the idle WebSocket channels open, KiB.
    pub rss_with_wss_kib: u64,
    /// RSS per idle WebSocket channel, KiB.
    pub rss_per_channel_kib_wss: f64,
    /// How many of the idle WebSocket channels answered a call afterwards.
    pub channels_answered_wss: usize,
    /// RSS once the WebSocket channels are closed, KiB.
    pub rss_after_close_wss_kib: u64,
    /// RSS after a second batch of WebSocket channels, KiB.
    pub rss_after_second_close_wss_kib: u64,
    /// Idle listeners registered, each by a host connection of its own (QUIC).
    pub listeners: usize,
    /// RSS of a fresh relay with the default configuration, before them, KiB.
    pub rss_before_listeners_kib: u64,
    /// RSS with them, KiB.
    pub rss_with_listeners_kib: u64,
    /// RSS per idle listener (and its host connection), KiB.
    pub rss_per_listener_kib: f64,
    /// On the other side: the hosts' process's RSS per host connection (one listener each), KiB.
    pub host_rss_per_connection_kib: f64,
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Figures {
    /// tarpc directly over plain TCP: the `tcp` baseline.
    pub tcp: TransportFigures,
    /// tarpc directly over TLS 1.3 over TCP: the `tls` baseline.
    pub tls: TransportFigures,
    /// Through the relay over QUIC.
    pub quic: TransportFigures,
    /// Through the relay over WebSocket (TLS).
    pub wss: TransportFigures,
    /// The relay's memory at scale.
    pub scale: ScaleFigures,
}

impl Figures {
    /// The figures rounded to what is worth printing.
    fn rounded(&self) -> Self {
        Self {
            tcp: self.tcp.rounded(),
            tls: self.tls.rounded(),
            quic: self.quic.rounded(),
            wss: self.wss.rounded(),
            scale: self.scale.clone(),
        }
    }

    /// The subject called `name`.
    fn subject(&self, name: &str) -> &TransportFigures {
        match name {
            "tcp" => &self.tcp,
            "tls" => &self.tls,
            "quic" => &self.quic,
            _ => &self.wss,
        }
    }
}

/// The baselines, and the subjects compared with each.
const COMPARED: [(&str, [&str; 3]); 2] = [("tcp", ["tls", "quic", "wss"]), ("tls", ["tcp", "quic", "wss"])];

/// A transport's figure: its key in the JSON, its label in the table, how to read it, and the
/// digits printed after the point.
pub struct Metric {
    /// Its key in the JSON.
    pub key: &'static str,
    /// Its label in the table.
    pub label: &'static str,
    /// How to read it from a subject's figures.
    pub get: fn(&TransportFigures) -> Option<f64>,
    /// Digits printed after the point.
    pub digits: usize,
}

const METRICS: [Metric; 12] = [
    Metric { key: "p50_us", label: "latency p50 (us)", get: |t| Some(t.p50_us), digits: 1 },
    Metric { key: "p90_us", label: "latency p90 (us)", get: |t| Some(t.p90_us), digits: 1 },
    Metric { key: "p99_us", label: "latency p99 (us)", get: |t| Some(t.p99_us), digits: 1 },
    Metric { key: "p999_us", label: "latency p99.9 (us)", get: |t| Some(t.p999_us), digits: 1 },
    Metric {
        key: "calls_per_s",
        label: "calls/s (64 in flight, one channel)",
        get: |t| Some(t.calls_per_s),
        digits: 0,
    },
    Metric { key: "mbps_64k", label: "MB/s 64 KiB echo (payload one way)", get: |t| Some(t.mbps_64k), digits: 1 },
    Metric { key: "mbps_1m", label: "MB/s 1 MiB echo (payload one way)", get: |t| Some(t.mbps_1m), digits: 1 },
    Metric { key: "mbps_1m_vec", label: "MB/s 1 MiB echo as Vec<u8>", get: |t| Some(t.mbps_1m_vec), digits: 1 },
    Metric { key: "connect_ms", label: "connect to first answer (ms)", get: |t| Some(t.connect_ms), digits: 2 },
    Metric { key: "cpu_us_per_call", label: "relay CPU per call (us)", get: |t| t.cpu_us_per_call, digits: 2 },
    Metric {
        key: "caller_cpu_us_per_call",
        label: "caller CPU per call (us)",
        get: |t| t.caller_cpu_us_per_call,
        digits: 2,
    },
    Metric { key: "host_cpu_us_per_call", label: "host CPU per call (us)", get: |t| t.host_cpu_us_per_call, digits: 2 },
];

/// One ratio over the runs: the median of the runs' ratios, and their range.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    /// The median.
    pub median: f64,
    /// The lowest.
    pub min: f64,
    /// The highest.
    pub max: f64,
}

impl Spread {
    /// The spread of `values`; none for none.
    pub fn of(mut values: Vec<f64>) -> Option<Self> {
        values.sort_by(f64::total_cmp);
        Some(Self { median: *values.get(values.len() / 2)?, min: *values.first()?, max: *values.last()? })
    }

    pub fn rounded(self) -> Self {
        Self { median: round(self.median, 3), min: round(self.min, 3), max: round(self.max, 3) }
    }
}

/// Ratios to each baseline: baseline → subject → metric key → spread over the runs.
type Ratios = BTreeMap<String, BTreeMap<&'static str, BTreeMap<&'static str, Spread>>>;

/// What the runs measured, and what is reported of them.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// How many full runs.
    pub runs: usize,
    /// Every figure's median over the runs.
    #[serde(flatten)]
    pub median: Figures,
    /// Each subject's figures over each baseline's, per run, as `vs_tcp`/`vs_tls` → subject →
    /// figure → `{median, min, max}` over the runs.
    pub ratios: Ratios,
    /// The system's load averages (1, 5, 15 minutes) when each run started.
    pub load_averages: Vec<Option<String>>,
    /// Each run's figures.
    pub each_run: Vec<Figures>,
}

impl Summary {
    /// The summary of `runs`, with the load averages when each started.
    pub fn new(runs: Vec<Figures>, load_averages: Vec<Option<String>>) -> anyhow::Result<Self> {
        let median = median_each(&runs).context("taking the medians of the runs")?;
        let mut ratios = Ratios::new();
        for (base, subjects) in COMPARED {
            let of_base = ratios.entry(format!("vs_{base}")).or_default();
            for subject in subjects {
                let of_subject = of_base.entry(subject).or_default();
                for metric in &METRICS {
                    let per_run = runs.iter().filter_map(|run| {
                        match ((metric.get)(run.subject(subject)), (metric.get)(run.subject(base))) {
                            (Some(v), Some(b)) if b > 0.0 => Some(v / b),
                            _ => None,
                        }
                    });
                    if let Some(spread) = Spread::of(per_run.collect()) {
                        of_subject.insert(metric.key, spread);
                    }
                }
            }
        }
        Ok(Self { runs: runs.len(), median, ratios, load_averages, each_run: runs })
    }

    /// The median over the runs of `subject`'s ratio to `base` in the figure `key`.
    pub fn ratio(&self, subject: &str, base: &str, key: &str) -> Option<Spread> {
        self.ratios.get(&format!("vs_{base}"))?.get(subject)?.get(key).copied()
    }

    /// The figures rounded to what is worth printing.
    pub fn rounded(&self) -> Self {
        let mut ratios = self.ratios.clone();
        ratios.values_mut().flat_map(|s| s.values_mut()).flat_map(|m| m.values_mut()).for_each(|r| *r = r.rounded());
        Self {
            runs: self.runs,
            median: self.median.rounded(),
            ratios,
            load_averages: self.load_averages.clone(),
            each_run: self.each_run.iter().map(Figures::rounded).collect(),
        }
    }

    /// One JSON object: `{"runs", "tcp", "tls", "quic", "wss", "scale", "ratios",
    /// "load_averages", "each_run"}`, the subjects' and the scale figures being the medians.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(&self.rounded()).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// The table for people. `took` is how long all the runs took.
    pub fn table(&self, quick: bool, took: Duration) -> String {
        let rounded = self.rounded();
        let f = &rounded.median;
        let mut out = heading(
            "relay-bench",
            "relay, host and caller in separate processes",
            Heading { quick, runs: self.runs, took, load_averages: &self.load_averages },
        );
        let _ = writeln!(
            out,
            "{:<36} {:>9} {:>9} {:>6} {:>9} {:>6} {:>6} {:>9} {:>6} {:>6}",
            "", "tcp", "tls", "x tcp", "quic", "x tcp", "x tls", "wss", "x tcp", "x tls"
        );
        for metric in &METRICS {
            let (get, digits) = (metric.get, metric.digits);
            let ratio = |subject: &str, base: &str| cell(self.ratio(subject, base, metric.key).map(|r| r.median), 2);
            let _ = writeln!(
                out,
                "{:<36} {:>9} {:>9} {:>6} {:>9} {:>6} {:>6} {:>9} {:>6} {:>6}",
                metric.label,
                cell(get(&f.tcp), digits),
                cell(get(&f.tls), digits),
                ratio("tls", "tcp"),
                cell(get(&f.quic), digits),
                ratio("quic", "tcp"),
                ratio("quic", "tls"),
                cell(get(&f.wss), digits),
                ratio("wss", "tcp"),
                ratio("wss", "tls"),
            );
        }
        if self.runs > 1 {
            let _ = writeln!(out, "\nratios, lowest-highest of the {} runs:", self.runs);
            let _ = writeln!(
                out,
                "{:<36} {:>11} {:>11} {:>11} {:>11} {:>11}",
                "", "tls x tcp", "quic x tcp", "quic x tls", "wss x tcp", "wss x tls"
            );
            for metric in METRICS.iter().filter(|m| self.ratio("quic", "tls", m.key).is_some()) {
                let range = |subject: &str, base: &str| match self.ratio(subject, base, metric.key) {
                    Some(r) => format!("{:.2}-{:.2}", r.min, r.max),
                    None => "-".to_owned(),
                };
                let _ = writeln!(
                    out,
                    "{:<36} {:>11} {:>11} {:>11} {:>11} {:>11}",
                    metric.label,
                    range("tls", "tcp"),
                    range("quic", "tcp"),
                    range("quic", "tls"),
                    range("wss", "tcp"),
                    range("wss", "tls"),
                );
            }
        }
        let s = &f.scale;
        let _ = writeln!(out, "\nrelay memory (VmRSS, KiB):");
        let mut line = |label: String, kib: u64, note: String| {
            let _ = writeln!(out, "{}", format!("  {label:<52} {kib:>9}  {note}").trim_end());
        };
        line("one host registered over QUIC, a caller connected".into(), s.rss_idle_start_kib, String::new());
        line(
            format!("+ {} idle QUIC channels", s.channels),
            s.rss_with_channels_kib,
            format!(
                "{:.1} KiB per channel; {} of {} answered a call",
                s.rss_per_channel_kib, s.channels_answered, s.channels
            ),
        );
        line("after closing them".into(), s.rss_after_close_kib, String::new());
        line("after opening, calling, closing as many again".into(), s.rss_after_second_close_kib, String::new());
        line("one host registered over WebSocket".into(), s.rss_before_wss_kib, String::new());
        line(
            format!("+ {} idle WebSocket channels", s.wss_channels),
            s.rss_with_wss_kib,
            format!(
                "{:.1} KiB per channel; {} of {} answered a call",
                s.rss_per_channel_kib_wss, s.channels_answered_wss, s.wss_channels
            ),
        );
        line("after closing them".into(), s.rss_after_close_wss_kib, String::new());
        line("after opening, calling, closing as many again".into(), s.rss_after_second_close_wss_kib, String::new());
        line("fresh relay, default configuration".into(), s.rss_before_listeners_kib, String::new());
        line(
            format!("+ {} idle listeners, one QUIC host connection each", s.listeners),
            s.rss_with_listeners_kib,
            format!(
                "{:.1} KiB per listener (the hosts' process: {:.1} KiB per host connection)",
                s.rss_per_listener_kib, s.host_rss_per_connection_kib
            ),
        );
        let _ = writeln!(
            out,
            "  (channel figures with max_channels_per_connection = max_channels_per_listener = {})",
            s.max_channels_per_connection
        );
        let medians = if self.runs > 1 {
            "\nFigures and ratios: medians of the runs, each ratio taken within its run (so it need not be the \
             quotient of the medians beside it)."
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "\n\"x tcp\", \"x tls\" = the figure / the same figure of that baseline (latency, time: higher is \
             slower; throughput: lower is slower).\nBaselines: tarpc over one TCP connection (TCP_NODELAY) with the \
             same contract, framing and bincode codec as a relay channel;\n  tcp: in the clear; tls: inside TLS 1.3 \
             (rustls, ring, a self-signed certificate), as each of the relay's two hops is.\nMB = 10^6 bytes. \
             Relay CPU: utime+stime of the relay process over the calls/s run, in 10 ms ticks.{medians}"
        );
        out
    }
}

/// What a table's heading says of how its figures were taken.
pub struct Heading<'a> {
    /// Whether the runs were quick ones.
    pub quick: bool,
    /// How many runs the figures are the medians of.
    pub runs: usize,
    /// How long all the runs took.
    pub took: Duration,
    /// The load average when each run started.
    pub load_averages: &'a [Option<String>],
}

/// A table's first lines: `command` and what ran (`setup`), the runs, the machine's CPUs and its
/// load when each run started, then a blank line.
pub fn heading(command: &str, setup: &str, heading: Heading<'_>) -> String {
    let Heading { quick, runs, took, load_averages } = heading;
    let mut out = String::new();
    let run = if quick { "quick run" } else { "full run" };
    let runs = if runs == 1 { run.to_owned() } else { format!("{run} x {runs}, medians") };
    let _ = writeln!(out, "{command} ({runs}, {:.0} s): loopback; {setup}", took.as_secs_f64());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let loads: Vec<&str> = load_averages.iter().map(|l| l.as_deref().unwrap_or("?")).collect();
    let which = if loads.len() == 1 { "when it started" } else { "when each run started" };
    let _ = writeln!(out, "{cpus} CPUs; load average (1, 5, 15 min) {which}: {}", loads.join(" | "));
    let _ = writeln!(out);
    out
}

/// `a / b`, or 0 when `b` is not positive (nothing was timed).
pub fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

pub fn round(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

pub fn cell(value: Option<f64>, digits: usize) -> String {
    match value {
        Some(v) => format!("{v:.digits$}"),
        None => "-".to_owned(),
    }
}

/// Each figure's median over `runs`: numbers are taken as the median run's number (the upper of
/// the middle two of an even count; integers stay integers), objects key by key, and a missing
/// figure (`null`) counts only where every run lacks it.
pub fn median_each<T: Serialize + DeserializeOwned>(runs: &[T]) -> anyhow::Result<T> {
    let values = runs.iter().map(serde_json::to_value).collect::<Result<Vec<_>, _>>()?;
    anyhow::ensure!(!values.is_empty(), "no run");
    Ok(serde_json::from_value(median_value(&values.iter().collect::<Vec<_>>()))?)
}

fn median_value(values: &[&Value]) -> Value {
    match values.first() {
        Some(Value::Object(first)) => Value::Object(
            first
                .keys()
                .map(|key| {
                    let fields: Vec<&Value> = values.iter().map(|v| v.get(key).unwrap_or(&Value::Null)).collect();
                    (key.clone(), median_value(&fields))
                })
                .collect(),
        ),
        _ => {
            let mut numbers: Vec<&Value> = values.iter().copied().filter(|v| v.is_number()).collect();
            numbers.sort_by(|a, b| a.as_f64().unwrap_or(0.0).total_cmp(&b.as_f64().unwrap_or(0.0)));
            match numbers.get(numbers.len() / 2) {
                Some(median) => (*median).clone(),
                None => values.first().map_or(Value::Null, |v| (*v).clone()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn medians_field_by_field() {
        let runs = [
            json!({"a": 3, "b": {"c": 1.5, "d": null}}),
            json!({"a": 1, "b": {"c": 0.5, "d": null}}),
            json!({"a": 2, "b": {"c": 2.5, "d": null}}),
        ];
        assert_eq!(median_each(&runs).unwrap(), json!({"a": 2, "b": {"c": 1.5, "d": null}}));
        assert_eq!(median_each(&runs[..2]).unwrap(), json!({"a": 3, "b": {"c": 1.5, "d": null}}));
        assert!(median_each::<Value>(&[]).is_err());
    }

    #[test]
    fn spreads() {
        assert_eq!(Spread::of(vec![2.0, 3.0, 1.0]), Some(Spread { median: 2.0, min: 1.0, max: 3.0 }));
        assert_eq!(Spread::of(Vec::new()), None);
    }
}
