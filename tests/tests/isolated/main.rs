//! Tests that measure the whole process (its open file descriptors and memory) or how events
//! spread in time, or stop and restart relays under load: each takes [`ALONE`] first, so no other
//! test's sockets, tasks or load come and go while it counts.

mod channel_logs;
mod faults;
mod leaks;
mod reconnect_spread;
mod soak;

/// Held by every test of this binary for its whole run.
static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
