//! The figures, and how they are printed: a table for people, one JSON object for programs.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

/// The figures of one transport.
#[derive(Debug, Clone, Serialize)]
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
    /// the baseline.
    pub cpu_us_per_call: Option<f64>,
}

impl TransportFigures {
    fn rounded(&self) -> Self {
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
        }
    }
}

/// The relay's memory (`VmRSS`) at scale.
#[derive(Debug, Clone, Serialize)]
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
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    /// tarpc directly over TCP.
    pub baseline: TransportFigures,
    /// Through the relay over QUIC.
    pub quic: TransportFigures,
    /// Through the relay over WebSocket (TLS).
    pub wss: TransportFigures,
    /// The relay's memory at scale.
    pub scale: ScaleFigures,
}

impl Figures {
    /// The figures rounded to what is worth printing.
    pub fn rounded(&self) -> Self {
        Self {
            baseline: self.baseline.rounded(),
            quic: self.quic.rounded(),
            wss: self.wss.rounded(),
            scale: self.scale.clone(),
        }
    }

    /// One JSON object: `{"baseline", "quic", "wss", "scale"}`.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(&self.rounded()).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// The table for people.
    /// `load` is the system's load average when the run started.
    pub fn table(&self, quick: bool, took: Duration, load: Option<&str>) -> String {
        let f = self.rounded();
        let (b, q, w) = (&f.baseline, &f.quic, &f.wss);
        let mut out = String::new();
        let run = if quick { "quick run" } else { "full run" };
        let _ = writeln!(
            out,
            "relay-bench ({run}, {:.0} s): loopback; relay, host and caller in separate processes",
            took.as_secs_f64()
        );
        if let Some(load) = load {
            let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
            let _ = writeln!(out, "{cpus} CPUs; load average when it started: {load}");
        }
        let _ = writeln!(out);
        let _ =
            writeln!(out, "{:<38} {:>10} {:>10} {:>7} {:>10} {:>7}", "", "baseline", "quic", "x base", "wss", "x base");
        let rows: [Row; 10] = [
            ("latency p50 (us)", |t| Some(t.p50_us), 1),
            ("latency p90 (us)", |t| Some(t.p90_us), 1),
            ("latency p99 (us)", |t| Some(t.p99_us), 1),
            ("latency p99.9 (us)", |t| Some(t.p999_us), 1),
            ("calls/s (64 in flight, one channel)", |t| Some(t.calls_per_s), 0),
            ("MB/s 64 KiB echo (payload one way)", |t| Some(t.mbps_64k), 1),
            ("MB/s 1 MiB echo (payload one way)", |t| Some(t.mbps_1m), 1),
            ("MB/s 1 MiB echo as Vec<u8>", |t| Some(t.mbps_1m_vec), 1),
            ("connect to first answer (ms)", |t| Some(t.connect_ms), 2),
            ("relay CPU per call (us)", |t| t.cpu_us_per_call, 2),
        ];
        for (label, get, digits) in rows {
            let _ = writeln!(
                out,
                "{label:<38} {:>10} {:>10} {:>7} {:>10} {:>7}",
                cell(get(b), digits),
                cell(get(q), digits),
                ratio(get(q), get(b)),
                cell(get(w), digits),
                ratio(get(w), get(b)),
            );
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
        let _ = writeln!(
            out,
            "\n\"x base\" = the relay transport's figure / the baseline's (latency, time: higher is slower; \
             throughput: lower is slower).\nBaseline: tarpc over one TCP connection (TCP_NODELAY) with the same \
             contract, framing and bincode codec. MB = 10^6 bytes.\nRelay CPU: utime+stime of the relay process \
             over the calls/s run, in 10 ms ticks."
        );
        out
    }
}

/// A row of the table: its label, its figure, and the digits printed after the point.
type Row = (&'static str, fn(&TransportFigures) -> Option<f64>, usize);

fn round(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

fn cell(value: Option<f64>, digits: usize) -> String {
    match value {
        Some(v) => format!("{v:.digits$}"),
        None => "-".to_owned(),
    }
}

fn ratio(value: Option<f64>, base: Option<f64>) -> String {
    match (value, base) {
        (Some(v), Some(b)) if b > 0.0 => format!("{:.2}", v / b),
        _ => "-".to_owned(),
    }
}
