//! What every binary of the workspace (`relay-server`, `relay`, the examples) needs from its
//! process, written once so that they all behave alike: the signal that asks it to stop
//! ([`shutdown`]), lines for whoever started it on stdout ([`tell`]), the log on stderr
//! ([`init_logs`], as text or JSON), and the runtime of its `--threads` ([`runtime()`]).
//!
//! ```no_run
//! # async fn serve_until(_stop: impl std::future::Future<Output = ()>) {}
//! # async fn run() {
//! let shutdown = relay_process::Shutdown::listen();
//! relay_process::tell("serving; Ctrl-C stops");
//! serve_until(async move {
//!     let signal = shutdown.requested().await;
//!     relay_process::tell(&format!("stopping on {signal}"));
//! })
//! .await;
//! # }
//! ```
#![deny(missing_docs)]

pub mod logs;
pub mod runtime;
pub mod shutdown;

pub use logs::{LogFormat, init_logs};
pub use runtime::runtime;
pub use shutdown::{Shutdown, Signal, requested};

/// Prints `text` and a newline on stdout for whoever started the process. A reader that went
/// away (a closed pipe) is not the process's failure: `println!` would panic and take it down.
pub fn tell(text: &str) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{text}").and_then(|()| stdout.flush());
}
