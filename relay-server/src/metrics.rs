//! The relay's counters for Prometheus (`GET /metrics` on the admin endpoint), kept with the
//! Prometheus project's `prometheus-client` crate. Events are counted where they happen (channel
//! opens by transport and result, their latency, authorization failures, HTTP-mode answers);
//! what is a state of the moment (listeners, open channels, bytes relayed, memory) is read when
//! scraped, by the admin driver, from where it is kept already.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use relay_proto::ErrorCode;
use relay_proto::auth::{AuthFailure, unix_now};

use crate::rates::MinuteRates;

/// A transport a peer reached the relay over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub(crate) enum Transport {
    /// Native QUIC.
    quic,
    /// WebSocket (Hybrid Connections), `wss://` or `ws://`.
    websocket,
}

/// How a channel open ended, as the `result` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub(crate) enum OpenResult {
    ok,
    no_listener,
    refused,
    busy,
    rate_limited,
    unauthorized,
    timeout,
    unreachable,
    contract_mismatch,
    shutting_down,
    bad_request,
    error,
}

impl OpenResult {
    /// The result a refusal with `code` counts as.
    pub(crate) fn of(code: ErrorCode) -> Self {
        match code {
            ErrorCode::NoListener => Self::no_listener,
            ErrorCode::Rejected => Self::refused,
            ErrorCode::Busy => Self::busy,
            ErrorCode::RateLimited => Self::rate_limited,
            ErrorCode::Auth(_) => Self::unauthorized,
            ErrorCode::Unreachable => Self::unreachable,
            ErrorCode::ContractMismatch => Self::contract_mismatch,
            ErrorCode::ShuttingDown => Self::shutting_down,
            ErrorCode::BadRequest => Self::bad_request,
            _ => Self::error,
        }
    }
}

/// How a connection's handshake (QUIC's, or TLS and the first request head for WebSockets)
/// ended, as the `result` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub(crate) enum HandshakeResult {
    /// Done: the connection is served.
    ok,
    /// The peer broke it off or spoke garbage (a failed TLS or QUIC handshake, a bad head).
    failed,
    /// Not done within `handshake_timeout_ms`.
    timed_out,
    /// Turned away over the relay's connection or handshake limits.
    refused,
    /// Asked to retry with an address-validation token (QUIC, under pressure).
    retry,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct HandshakeLabels {
    transport: Transport,
    result: HandshakeResult,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OpenLabels {
    transport: Transport,
    result: OpenResult,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StatusLabels {
    status: u16,
}

/// The counters of one relay. Cheap to clone (each metric is shared).
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    channels_opened: Family<OpenLabels, Counter>,
    open_seconds: Histogram,
    auth_failures: Family<ReasonLabels, Counter>,
    http_requests: Family<StatusLabels, Counter>,
    handshakes: Family<HandshakeLabels, Counter>,
    early_opens: Counter,
    /// Channels opened per address over the last minute, for the status page.
    opens: Arc<Mutex<MinuteRates>>,
}

impl Default for Metrics {
    fn default() -> Self {
        // 100 µs to ~26 s, doubling: a same-node open on loopback takes about 200 µs; a
        // Hybrid Connections listener may take its rendezvous timeout.
        let buckets = prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.0, 19);
        Self {
            channels_opened: Family::default(),
            open_seconds: Histogram::new(buckets),
            auth_failures: Family::default(),
            http_requests: Family::default(),
            handshakes: Family::default(),
            early_opens: Counter::default(),
            opens: Arc::default(),
        }
    }
}

impl Metrics {
    /// Counts a caller's channel opened over `transport` on `address`: its result, the time it
    /// took, and the address's rate over the last minute.
    pub(crate) fn channel_opened(&self, transport: Transport, address: &str, took: Duration) {
        self.channels_opened.get_or_create(&OpenLabels { transport, result: OpenResult::ok }).inc();
        self.open_seconds.observe(took.as_secs_f64());
        self.opens.lock().unwrap_or_else(PoisonError::into_inner).note(address, unix_now());
    }

    /// Counts a caller's channel open over `transport` refused with `result`.
    pub(crate) fn channel_refused(&self, transport: Transport, result: OpenResult) {
        self.channels_opened.get_or_create(&OpenLabels { transport, result }).inc();
    }

    /// The channels opened on `address` over the last minute.
    pub(crate) fn opens_last_minute(&self, address: &str) -> u32 {
        self.opens.lock().unwrap_or_else(PoisonError::into_inner).last_minute(address, unix_now())
    }

    /// Counts a token refused, for any right.
    pub(crate) fn auth_failure(&self, reason: AuthFailure) {
        let reason = match reason {
            AuthFailure::MissingToken => "missing_token",
            AuthFailure::Malformed => "malformed",
            AuthFailure::BadSignature => "bad_signature",
            AuthFailure::Expired => "expired",
            AuthFailure::WrongRight => "wrong_right",
            AuthFailure::OutOfScope => "out_of_scope",
            _ => "other",
        };
        self.auth_failures.get_or_create(&ReasonLabels { reason: reason.to_owned() }).inc();
    }

    /// Counts a connection's handshake over `transport` that ended with `result`.
    pub(crate) fn handshake(&self, transport: Transport, result: HandshakeResult) {
        self.handshakes.get_or_create(&HandshakeLabels { transport, result }).inc();
    }

    /// Counts an HTTP-mode request answered with `status` (by a listener or the relay).
    pub(crate) fn http_answered(&self, status: u16) {
        self.http_requests.get_or_create(&StatusLabels { status }).inc();
    }

    /// Counts a caller's channel hello that came in QUIC 0-RTT data, on a resumed connection.
    pub(crate) fn early_open(&self) {
        self.early_opens.inc();
    }

    /// Adds these counters to `registry`, under the prefix it has.
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "channels_opened",
            "Caller channel opens, by transport and result",
            self.channels_opened.clone(),
        );
        registry.register("channel_open_seconds", "Time to open a caller's channel", self.open_seconds.clone());
        registry.register("auth_failures", "Tokens refused, by reason", self.auth_failures.clone());
        registry.register("http_requests", "HTTP-mode requests answered, by status", self.http_requests.clone());
        registry.register(
            "handshakes",
            "Connection handshakes (QUIC; TLS and the first request head for WebSockets), by transport and result",
            self.handshakes.clone(),
        );
        registry.register(
            "early_data_opens",
            "Caller channel hellos that came as QUIC 0-RTT data, with a resumed connection's handshake",
            self.early_opens.clone(),
        );
    }
}

/// What the relay holds at the moment of a scrape, read from where it is kept.
#[derive(Debug, Default, Clone)]
pub(crate) struct Snapshot {
    /// Listeners registered here, by transport.
    pub(crate) listeners: Vec<(Transport, u64)>,
    pub(crate) open_channels: u64,
    /// Bytes moved to hosts and to callers.
    pub(crate) relayed_bytes: [u64; 2],
    pub(crate) buffered_bytes: u64,
    pub(crate) multicast_subscribers_cut: u64,
    /// Other nodes in this node's view (cluster mode only).
    pub(crate) cluster_nodes: Option<u64>,
    /// Whether this node is linked to its cluster's NATS (cluster mode only).
    pub(crate) cluster_linked: Option<bool>,
    pub(crate) resident_memory_bytes: Option<u64>,
    pub(crate) open_fds: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TransportLabels {
    transport: Transport,
}

impl Snapshot {
    /// This process's resident memory (`VmRSS`) and open file descriptors, where `/proc` says.
    pub(crate) fn with_process(mut self) -> Self {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        self.resident_memory_bytes = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024);
        self.open_fds = std::fs::read_dir("/proc/self/fd").ok().map(|dir| dir.count() as u64);
        self
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let mut gauge = |name: &str, help: &str, value: u64| -> Result<(), std::fmt::Error> {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(value as i64).encode(metric)
        };
        gauge("open_channels", "Channels open now", self.open_channels)?;
        gauge("buffered_bytes", "Bytes of channel messages held in the relay's buffer budget", self.buffered_bytes)?;
        if let Some(nodes) = self.cluster_nodes {
            gauge("cluster_nodes", "Other relay nodes in this node's view of its cluster", nodes)?;
        }
        if let Some(linked) = self.cluster_linked {
            gauge(
                "cluster_linked",
                "Whether this node is connected to its cluster's NATS (1) or not (0)",
                linked.into(),
            )?;
        }
        if let Some(bytes) = self.resident_memory_bytes {
            gauge("process_resident_memory_bytes", "Resident memory of the relay's process", bytes)?;
        }
        if let Some(fds) = self.open_fds {
            gauge("process_open_fds", "Open file descriptors of the relay's process", fds)?;
        }
        let mut counter = |name: &str, help: &str, value: u64| -> Result<(), std::fmt::Error> {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(value).encode(metric)
        };
        counter(
            "multicast_subscribers_cut",
            "Multicast subscribers cut for falling behind their queue",
            self.multicast_subscribers_cut,
        )?;
        let mut family = encoder.encode_descriptor(
            "listeners",
            "Listeners registered here, by transport",
            None,
            MetricType::Gauge,
        )?;
        for (transport, count) in &self.listeners {
            let labels = TransportLabels { transport: *transport };
            ConstGauge::new(*count as i64).encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "relayed_bytes",
            "Bytes moved between the ends of channels, by the side they went to",
            None,
            MetricType::Counter,
        )?;
        for (direction, bytes) in [("to_host", self.relayed_bytes[0]), ("to_caller", self.relayed_bytes[1])] {
            let labels = [("direction", direction)];
            ConstCounter::new(bytes).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_encoded_with_their_labels() {
        let metrics = Metrics::default();
        metrics.channel_opened(Transport::quic, "calc", Duration::from_millis(1));
        metrics.channel_refused(Transport::websocket, OpenResult::of(ErrorCode::NoListener));
        metrics.auth_failure(AuthFailure::Expired);
        metrics.http_answered(504);
        let mut registry = Registry::with_prefix("relay");
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            r#"relay_channels_opened_total{transport="quic",result="ok"} 1"#,
            r#"relay_channels_opened_total{transport="websocket",result="no_listener"} 1"#,
            r#"relay_channel_open_seconds_count 1"#,
            r#"relay_auth_failures_total{reason="expired"} 1"#,
            r#"relay_http_requests_total{status="504"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing from:\n{text}");
        }
    }
}
