//! Keeping a host online: serve an address, and after any loss (relay restart, network drop,
//! token refresh failure) connect and register again, with capped exponential backoff and full
//! jitter, reset after a stable period. Status changes are observable.

use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};
use tokio::sync::watch;

use super::connection::Host;
use crate::contract::Dispatch;
use crate::error::{ConnectError, ListenError};
use crate::options::ConnectOptions;
use crate::proto::ErrorCode;

/// Where a host that keeps itself online stands.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HostStatus {
    /// Connecting to the relay and registering.
    Connecting,
    /// Registered: callers reach it.
    Online,
    /// Lost, for the reason given; it will try again after a backoff.
    Offline(String),
}

/// Exponential backoff with full jitter: the `n`-th retry waits a random time in
/// `[0, min(cap, base × 2ⁿ)]`; after `stable` online, the count starts over. Sans-IO.
///
/// ```
/// use std::time::Duration;
/// use relay_rpc::Backoff;
///
/// let backoff = Backoff::default();
/// assert!(backoff.delay(0, u64::MAX) <= Duration::from_secs(1));
/// assert!(backoff.delay(30, u64::MAX) <= Duration::from_secs(30));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first retry's longest wait.
    pub base: Duration,
    /// The longest wait of any retry.
    pub cap: Duration,
    /// How long a host must stay online for the retry count to start over.
    pub stable: Duration,
}

impl Default for Backoff {
    /// 1 s doubling to at most 30 s; reset after 60 s online. Full jitter spreads hosts that
    /// lost the same relay at the same moment.
    fn default() -> Self {
        Self { base: Duration::from_secs(1), cap: Duration::from_secs(30), stable: Duration::from_secs(60) }
    }
}

impl Backoff {
    /// The wait before retry number `attempt` (from 0), given a uniformly random `random`.
    pub fn delay(&self, attempt: u32, random: u64) -> Duration {
        let ceiling = self.base.saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX)).min(self.cap);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(random % nanos.saturating_add(1))
    }
}

/// Why a host that keeps itself online gave up: only errors that retrying cannot mend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OnlineError {
    /// The relay URL or TLS configuration is unusable.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The relay refused the registration for good (bad token, invalid address, bad request).
    #[error(transparent)]
    Listen(#[from] ListenError),
}

impl Host {
    /// Serves `dispatcher` on `address` of the relay at `url` for as long as the returned future
    /// is polled: connects, registers and serves; after any loss connects and registers again
    /// with `backoff`. Every status change is sent on `status`. Returns only for errors that
    /// retrying cannot mend (a bad URL or certificate, a refused token, an invalid address).
    ///
    /// ```no_run
    /// # use relay_rpc::{Backoff, ConnectOptions, Host, HostStatus};
    /// # async fn run<D: relay_rpc::contract::Dispatch>(dispatcher: D, options: ConnectOptions) {
    /// let (status, mut changes) = tokio::sync::watch::channel(HostStatus::Connecting);
    /// tokio::spawn(Host::serve_online("quic://relay.example:7443", options, "calc", dispatcher, Backoff::default(), status));
    /// while changes.changed().await.is_ok() {
    ///     println!("host is {:?}", *changes.borrow());
    /// }
    /// # }
    /// ```
    pub async fn serve_online<D: Dispatch>(
        url: &str,
        options: ConnectOptions,
        address: &str,
        dispatcher: D,
        backoff: Backoff,
        status: watch::Sender<HostStatus>,
    ) -> OnlineError {
        let mut attempt = 0u32;
        loop {
            status.send_replace(HostStatus::Connecting);
            let mut online_since = None;
            let lost = async {
                let host = Host::connect(url, options.clone()).await?;
                let listener = host.listen(address).await?;
                status.send_replace(HostStatus::Online);
                online_since = Some(Instant::now());
                listener.serve(dispatcher.clone()).await?;
                Ok::<_, OnlineError>(())
            }
            .await;
            let reason = match lost {
                Err(e) if is_permanent(&e) => {
                    status.send_replace(HostStatus::Offline(e.to_string()));
                    return e;
                }
                Err(e) => e.to_string(),
                Ok(()) => "the registration ended".to_owned(),
            };
            tracing::info!(%address, %reason, "host offline; reconnecting");
            status.send_replace(HostStatus::Offline(reason));
            if online_since.is_some_and(|since| since.elapsed() >= backoff.stable) {
                attempt = 0;
            }
            tokio::time::sleep(backoff.delay(attempt, random())).await;
            attempt = attempt.saturating_add(1);
        }
    }
}

fn is_permanent(e: &OnlineError) -> bool {
    match e {
        OnlineError::Connect(e) => matches!(e, ConnectError::Url(_) | ConnectError::Tls(_)),
        OnlineError::Listen(e) => match e {
            ListenError::Unauthorized { .. } | ListenError::InvalidAddress(_) | ListenError::AlreadyListening(_) => {
                true
            }
            ListenError::Refused { code, .. } => *code == ErrorCode::BadRequest,
            _ => false,
        },
    }
}

fn random() -> u64 {
    let mut bytes = [0u8; 8];
    let _ = SystemRandom::new().fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_with_full_jitter() {
        let b =
            Backoff { base: Duration::from_millis(100), cap: Duration::from_secs(1), stable: Duration::from_secs(5) };
        assert_eq!(b.delay(0, u64::MAX), Duration::from_nanos(u64::MAX % 100_000_001));
        assert_eq!(b.delay(0, 50_000_000), Duration::from_millis(50));
        assert_eq!(b.delay(3, 800_000_000), Duration::from_millis(800), "100 ms × 2³ = 800 ms ceiling");
        assert_eq!(b.delay(3, 800_000_001), Duration::ZERO, "wraps within the ceiling");
        for attempt in [4, 10, 31, 32, u32::MAX] {
            assert!(b.delay(attempt, u64::MAX) <= Duration::from_secs(1));
        }
        assert_eq!(b.delay(0, 0), Duration::ZERO, "full jitter reaches zero");
    }
}
