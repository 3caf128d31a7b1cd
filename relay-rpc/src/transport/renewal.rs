//! When a listener renews its token, and with what: the schedule both transports follow.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::auth::{ProvideError, Token, TokenProvider};

/// How long to wait before asking a failing provider again.
const RETRY: Duration = Duration::from_secs(1);

/// A listener's token renewal: asks the provider for a fresh token when two thirds of the
/// current one's life have passed. The clock is passed in; nothing here sleeps or sends.
pub(crate) struct Renewal {
    provider: Option<Arc<dyn TokenProvider>>,
    resource: String,
    expires_at: Option<u64>,
    failed: bool,
}

/// What one renewal attempt gave.
#[derive(Debug)]
pub(crate) enum Renewed {
    /// A fresh token to send to the relay.
    Token(Token),
    /// The provider gives no fresher token (a fixed one): the registration ends when it expires.
    Stop,
    /// The provider failed; try again after [`Renewal::due_in`].
    Retry(ProvideError),
}

impl fmt::Debug for Renewal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Renewal").field("resource", &self.resource).field("expires_at", &self.expires_at).finish()
    }
}

impl Renewal {
    /// Renews the token for `resource` that expires at `expires_at` (unix seconds), if there is
    /// a provider and a token.
    pub(crate) fn new(provider: Option<Arc<dyn TokenProvider>>, resource: String, expires_at: Option<u64>) -> Self {
        Self { provider, resource, expires_at, failed: false }
    }

    /// The resource the token is for.
    pub(crate) fn resource(&self) -> &str {
        &self.resource
    }

    /// How long from `now` until the next attempt, or `None` if there is nothing to renew.
    pub(crate) fn due_in(&self, now: SystemTime) -> Option<Duration> {
        let expiry = self.expires_at?;
        self.provider.as_ref()?;
        if self.failed {
            return Some(RETRY);
        }
        let remaining = (UNIX_EPOCH + Duration::from_secs(expiry)).duration_since(now).unwrap_or_default();
        Some(remaining * 2 / 3)
    }

    /// Asks the provider for a fresher token.
    pub(crate) fn renew(&mut self) -> Renewed {
        let (Some(provider), Some(expiry)) = (&self.provider, self.expires_at) else { return Renewed::Stop };
        match provider.token(&self.resource) {
            Ok(token) if token.expires_at() > expiry => {
                self.expires_at = Some(token.expires_at());
                self.failed = false;
                Renewed::Token(token)
            }
            Ok(_) => {
                self.expires_at = None;
                Renewed::Stop
            }
            Err(e) => {
                self.failed = true;
                Renewed::Retry(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::StaticToken;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Debug, Default)]
    struct Counting(AtomicU64);

    impl TokenProvider for Counting {
        fn token(&self, _resource: &str) -> Result<Token, ProvideError> {
            match self.0.fetch_add(1, Ordering::Relaxed) {
                0 => Err(ProvideError("offline".into())),
                n => Ok(Token::new(format!("t{n}"), 1_000 + n * 100)),
            }
        }
    }

    #[test]
    fn renews_at_two_thirds_retries_failures_and_stops_on_a_fixed_token() {
        let at = |secs| UNIX_EPOCH + Duration::from_secs(secs);
        let mut renewal = Renewal::new(Some(Arc::new(Counting::default())), "r".into(), Some(1_000));
        assert_eq!(renewal.due_in(at(700)), Some(Duration::from_secs(200)));
        assert_eq!(renewal.due_in(at(2_000)), Some(Duration::ZERO));
        assert!(matches!(renewal.renew(), Renewed::Retry(_)));
        assert_eq!(renewal.due_in(at(900)), Some(RETRY));
        assert!(matches!(renewal.renew(), Renewed::Token(t) if t.expires_at() == 1_100));
        assert_eq!(renewal.due_in(at(800)), Some(Duration::from_secs(200)));

        let fixed = crate::auth::sas_token("sb://relay.example/calc", "key", "c2VjcmV0", 1_000);
        let fixed: Arc<dyn TokenProvider> = Arc::new(StaticToken::new(fixed));
        let mut renewal = Renewal::new(Some(fixed), "r".into(), Some(1_000));
        assert!(matches!(renewal.renew(), Renewed::Stop));
        assert_eq!(renewal.due_in(at(0)), None);
        assert_eq!(Renewal::new(None, "r".into(), Some(1_000)).due_in(at(0)), None);
        assert_eq!(Renewal::new(Some(Arc::new(Counting::default())), "r".into(), None).due_in(at(0)), None);
    }
}
