//! The signal that asks the process to stop: Ctrl-C (SIGINT) or, on Unix, SIGTERM.
//!
//! Each signal is listened for on its own: if one cannot be (the platform or the process's
//! limits refuse a handler), a warning says so and the other still stops the process. A process
//! that can listen for neither says so too, and runs until it is killed.

use std::fmt;

/// Which signal asked the process to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Ctrl-C: SIGINT.
    Interrupt,
    /// SIGTERM, as service managers send.
    Terminate,
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Interrupt => "Ctrl-C",
            Self::Terminate => "SIGTERM",
        })
    }
}

/// Listening for the signals that stop the process.
#[derive(Debug)]
pub struct Shutdown {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl Shutdown {
    /// Starts listening, at once: a signal that arrives from now on is seen by
    /// [`requested`](Self::requested). Must be called within a tokio runtime.
    pub fn listen() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let listen = |kind: SignalKind, name: &str| match signal(kind) {
                Ok(signal) => Some(signal),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for {name}: it will not stop the process");
                    None
                }
            };
            let shutdown = Self {
                interrupt: listen(SignalKind::interrupt(), "Ctrl-C"),
                terminate: listen(SignalKind::terminate(), "SIGTERM"),
            };
            if shutdown.interrupt.is_none() && shutdown.terminate.is_none() {
                tracing::error!("no signal can stop the process: it runs until it is killed");
            }
            shutdown
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// Completes when a signal asks the process to stop.
    pub async fn requested(self) -> Signal {
        #[cfg(unix)]
        {
            let Self { interrupt, terminate } = self;
            let wait = |signal: Option<tokio::signal::unix::Signal>, which: Signal| async move {
                if let Some(mut signal) = signal
                    // `recv` gives `None` only once the runtime shuts down.
                    && signal.recv().await.is_some()
                {
                    return which;
                }
                std::future::pending().await
            };
            tokio::select! {
                signal = wait(interrupt, Signal::Interrupt) => signal,
                signal = wait(terminate, Signal::Terminate) => signal,
            }
        }
        #[cfg(not(unix))]
        match tokio::signal::ctrl_c().await {
            Ok(()) => Signal::Interrupt,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for Ctrl-C: the process runs until it is killed");
                std::future::pending().await
            }
        }
    }
}

/// Completes when a signal asks the process to stop: [`Shutdown::listen`], then
/// [`requested`](Shutdown::requested). Listening starts when the future is first polled.
pub async fn requested() -> Signal {
    Shutdown::listen().requested().await
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    /// Sends `signal` to this process.
    fn raise(signal: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &std::process::id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    // One test, so that no other test's listener sees these signals.
    #[tokio::test]
    async fn ctrl_c_and_sigterm_each_stop_the_process_and_say_which() {
        for (name, expected) in [("TERM", Signal::Terminate), ("INT", Signal::Interrupt)] {
            let shutdown = Shutdown::listen();
            raise(name);
            let signal = tokio::time::timeout(std::time::Duration::from_secs(10), shutdown.requested()).await;
            assert_eq!(signal, Ok(expected), "{name}");
        }
        assert_eq!(Signal::Terminate.to_string(), "SIGTERM");
    }
}
