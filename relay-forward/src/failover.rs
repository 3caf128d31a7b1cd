//! A caller's connection to one relay of several (`--relay URL1,URL2`): to the first that
//! answers, in a random order, and to another when its relay is gone or draining.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use relay_rpc::client::{REOPEN_ATTEMPTS, REOPEN_BACKOFF};
use relay_rpc::{ConnectOptions, Connection, ErrorCode, OpenError, RelayUrls};

use super::CliError;

/// A caller's connection to one relay of a list (the nodes of a cluster, or relays that each
/// know the same listeners), which moves to another relay of the list when its own is gone.
/// Cheap to clone; clones share the current connection.
///
/// It connects to the first relay that answers, trying them in a random order
/// ([`RelayUrls::try_order`]). [`open_with`](Self::open_with) opens on the current connection;
/// when that fails because the relay is gone or draining ([`relay_gone`]), it connects to
/// another relay of the list (the one just lost last) and opens there, up to
/// [`REOPEN_ATTEMPTS`] tries in all, waiting by [`REOPEN_BACKOFF`] when no relay answers. A
/// refusal from a live relay (no listener, a bad token) is returned as it is. Channels already
/// open on the old connection are not touched: they end with their relay or finish on it.
///
/// Given one URL it is a plain [`Connection`]: that reconnects to its relay by itself, and an
/// open that fails is not tried again.
///
/// ```no_run
/// use relay_forward::FailoverConnection;
/// use relay_rpc::{ConnectOptions, stream};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let options = ConnectOptions::new().trust_pem_file("relay-data/cert.pem")?;
/// let relays = FailoverConnection::connect("quic://node1:7443,quic://node2:7443", options).await?;
/// println!("connected to {}", relays.relay());
/// // Keep the connection with the stream, so that it lives as long as the stream.
/// let (stream, _connection) = relays
///     .open_with(|connection| async move { stream::connect(&connection, "ssh").await.map(|s| (s, connection)) })
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct FailoverConnection {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    relays: RelayUrls,
    options: ConnectOptions,
    /// The connection opens go through; replaced when its relay is gone.
    current: Mutex<Current>,
    /// Held while connecting to another relay: one move at a time, the opens that found the
    /// same relay gone wait for it and use its connection.
    moving: tokio::sync::Mutex<()>,
}

#[derive(Debug, Clone)]
struct Current {
    connection: Connection,
    url: String,
    /// Counts the moves: an open that failed on an older connection does not move again.
    generation: u64,
}

impl FailoverConnection {
    /// Connects to the first of `relays` that answers, in a random order. Fails at once if the
    /// list is empty or holds anything but relay URLs, and with the last relay's error if none
    /// answers.
    pub async fn connect(relays: impl Into<RelayUrls>, options: ConnectOptions) -> Result<Self, CliError> {
        let relays = relays.into();
        relays.check()?;
        let (connection, url) = connect_any(&relays, None, &options).await?;
        let current = Current { connection, url, generation: 0 };
        Ok(Self {
            inner: Arc::new(Inner { relays, options, current: Mutex::new(current), moving: Default::default() }),
        })
    }

    /// The URL of the relay connected to now.
    pub fn relay(&self) -> String {
        self.current().url
    }

    /// Runs `open` (which opens a channel, a stream or a typed client on the connection it is
    /// given) on the current connection; if it fails because the relay is gone or draining,
    /// moves to another relay of the list and runs it there, as the type's docs say. Returns
    /// what `open` returned last.
    pub async fn open_with<T, F, Fut>(&self, open: F) -> Result<T, OpenError>
    where
        F: Fn(Connection) -> Fut,
        Fut: Future<Output = Result<T, OpenError>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let Current { connection, url, generation } = self.current();
            let e = match open(connection).await {
                Ok(opened) => return Ok(opened),
                Err(e) => e,
            };
            if self.inner.relays.len() < 2 || !relay_gone(&e) || attempt >= REOPEN_ATTEMPTS {
                return Err(e);
            }
            tracing::info!(relay = %url, error = %e, "the relay is gone; moving to another");
            if !self.move_on(generation).await {
                tokio::time::sleep(REOPEN_BACKOFF.delay_for(attempt - 1)).await;
            }
        }
    }

    /// Closes the current connection and every channel on it, for good.
    pub fn close(&self) {
        self.current().connection.close();
    }

    fn current(&self) -> Current {
        self.inner.current.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Replaces the connection of `generation`, whose relay is gone, with one to another relay
    /// of the list (or to the same, if it alone answers). Whether there is a new connection: one
    /// this call made, or one another made meanwhile.
    async fn move_on(&self, generation: u64) -> bool {
        // Each try to connect is bounded by the handshake timeout; so is this wait.
        let _moving = self.inner.moving.lock().await;
        let lost = self.current();
        if lost.generation != generation {
            return true;
        }
        match connect_any(&self.inner.relays, Some(&lost.url), &self.inner.options).await {
            Ok((connection, url)) => {
                tracing::info!(from = %lost.url, to = %url, "moved to another relay");
                let moved = Current { connection, url, generation: generation.wrapping_add(1) };
                *self.inner.current.lock().unwrap_or_else(PoisonError::into_inner) = moved;
                true
            }
            Err(e) => {
                tracing::warn!(error = %crate::report(&e), "no relay answers");
                false
            }
        }
    }
}

/// Whether an open that failed with `error` would work on another relay: the relay is gone
/// (the connection was lost and could not be made again), does not answer, or is draining. Not
/// for a refusal from a live relay, which another relay of the same cluster would repeat.
///
/// ```
/// use relay_forward::relay_gone;
/// use relay_rpc::{ErrorCode, OpenError};
///
/// assert!(relay_gone(&OpenError::Refused { code: ErrorCode::ShuttingDown, detail: "draining".into() }));
/// assert!(!relay_gone(&OpenError::NoListener { address: "ssh".into() }));
/// ```
pub fn relay_gone(error: &OpenError) -> bool {
    matches!(
        error,
        OpenError::ConnectionLost(_) | OpenError::Timeout | OpenError::Refused { code: ErrorCode::ShuttingDown, .. }
    )
}

/// Connects to the first of `relays` that answers, in their try order with `lost` last; the
/// connection and its URL, or the error of the last one tried.
async fn connect_any(
    relays: &RelayUrls,
    lost: Option<&str>,
    options: &ConnectOptions,
) -> Result<(Connection, String), CliError> {
    let mut last = None;
    for url in relays.try_order(lost) {
        match Connection::connect(url, options.clone()).await {
            Ok(connection) => {
                tracing::debug!(url, "connected");
                return Ok((connection, url.to_owned()));
            }
            Err(source) => {
                let e = CliError::Connect { url: url.to_owned(), source };
                if relays.len() > 1 {
                    tracing::warn!(error = %crate::report(&e), "cannot connect; trying the next relay");
                }
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or(CliError::Relays(relay_rpc::UrlError::Empty)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_relay_that_is_gone_is_left() {
        assert!(relay_gone(&OpenError::ConnectionLost("gone".into())));
        assert!(relay_gone(&OpenError::Timeout));
        assert!(relay_gone(&OpenError::Refused { code: ErrorCode::ShuttingDown, detail: String::new() }));
        for refusal in [
            OpenError::NoListener { address: "ssh".into() },
            OpenError::Refused { code: ErrorCode::Busy, detail: String::new() },
            OpenError::Refused { code: ErrorCode::Unreachable, detail: String::new() },
            OpenError::ContractMismatch("other".into()),
            OpenError::Protocol("bad".into()),
        ] {
            assert!(!relay_gone(&refusal), "{refusal:?}");
        }
    }
}
