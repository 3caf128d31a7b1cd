//! Where hosts and callers get their tokens: a fixed token, or one signed on demand with a key.

use std::fmt;
use std::time::Duration;

use relay_proto::auth::{SasToken, SharedAccessKey, sas_token, unix_now};

/// A token and when it expires. `Debug` prints no secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    value: String,
    expires_at: u64,
}

impl Token {
    /// A token valid until `expires_at` (unix seconds).
    pub fn new(value: impl Into<String>, expires_at: u64) -> Self {
        Self { value: value.into(), expires_at }
    }

    /// The token itself.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// When it expires, in unix seconds.
    pub fn expires_at(&self) -> u64 {
        self.expires_at
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token").field("value", &"MASKED").field("expires_at", &self.expires_at).finish()
    }
}

/// Why a provider could not give a token.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot get a token: {0}")]
pub struct ProvideError(pub String);

/// Gives tokens for resources; hosts ask again before a token expires and renew their
/// registration over their open connection.
pub trait TokenProvider: Send + Sync + fmt::Debug + 'static {
    /// A token for `resource`, a URI such as `quic://relay.example:7443/calc`.
    fn token(&self, resource: &str) -> Result<Token, ProvideError>;
}

/// A fixed token, e.g. from `--token` or `RELAY_TOKEN`. Its expiry is read from its `se` field.
#[derive(Clone)]
pub struct StaticToken(Token);

impl StaticToken {
    /// Wraps `token`.
    pub fn new(token: impl Into<String>) -> Self {
        let value = token.into();
        let expires_at = SasToken::parse(&value).map_or(u64::MAX, |t| t.expiry());
        Self(Token::new(value, expires_at))
    }
}

impl fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StaticToken").field(&self.0).finish()
    }
}

impl TokenProvider for StaticToken {
    fn token(&self, _resource: &str) -> Result<Token, ProvideError> {
        Ok(self.0.clone())
    }
}

/// Signs a fresh token for each resource with a shared access key.
#[derive(Debug, Clone)]
pub struct SasKeyProvider {
    key: SharedAccessKey,
    ttl: Duration,
}

impl SasKeyProvider {
    /// Signs tokens valid for one hour.
    pub fn new(key: SharedAccessKey) -> Self {
        Self::with_ttl(key, relay_proto::auth::DEFAULT_TOKEN_TTL)
    }

    /// Signs tokens valid for `ttl`.
    pub fn with_ttl(key: SharedAccessKey, ttl: Duration) -> Self {
        Self { key, ttl }
    }
}

impl TokenProvider for SasKeyProvider {
    fn token(&self, resource: &str) -> Result<Token, ProvideError> {
        let expires_at = unix_now() + self.ttl.as_secs().max(1);
        Ok(Token::new(sas_token(resource, self.key.name(), self.key.secret(), expires_at), expires_at))
    }
}
