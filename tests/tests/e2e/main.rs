//! The end-to-end tests: real relays on real sockets, real hosts and callers, the real Node
//! clients and a real browser where a test names them. One binary, one module per subject: each
//! test binary links the whole stack, and linking twenty of them cost CI minutes.
//!
//! Tests that measure the whole process (open file descriptors, memory) cannot share it with
//! others; they live in the `isolated` binary.

mod admin;
mod auth;
mod backpressure;
mod browser;
mod calls;
mod channel_limit_cycles;
mod cluster;
mod contract_shapes;
mod early_data;
mod evolution;
mod exhaustion;
mod failover;
mod forward;
mod forward_failover;
mod go_away;
mod hc_http;
mod hc_http_edges;
mod hc_raw;
mod hc_streaming;
mod hostile;
mod http_channels;
mod http_forward;
mod hyco_interop;
mod json_calls;
mod known_answer;
mod multicast;
mod oneway;
mod rate_limits;
mod reconnect;
mod relay_binary;
mod reload;
mod shutdown;
mod stub_failover;
mod ws_close;
mod ws_liveness;
mod wss;
