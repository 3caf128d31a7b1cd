//! Tests that measure the whole process (its open file descriptors and memory), or stop and
//! restart relays under load: each takes [`ALONE`] first, so no other test's sockets or tasks
//! come and go while it counts.

mod channel_logs;
mod faults;
mod leaks;
mod soak;

/// Held by every test of this binary for its whole run.
static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
