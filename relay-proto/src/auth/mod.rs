//! Shared Access Signature tokens in Azure Relay's exact format, and the rules for what they cover.
//!
//! A token grants the rights of the key that signed it (`listen`, `send`, `manage`) on the path
//! it names and everything below it, until it expires. Tokens made by Azure's own SDKs (which sign
//! `sb://host/path`) and by the Node `hyco-ws` package (`http://host:port/path`) are accepted:
//! only host and path are compared.
//!
//! ```
//! use relay_proto::auth::{SasToken, sas_token};
//!
//! let token = sas_token("quic://127.0.0.1:7443/calc", "root", "c2VjcmV0", 1_900_000_000);
//! assert!(token.starts_with("SharedAccessSignature sr=quic%3A%2F%2F127.0.0.1%3A7443%2Fcalc&sig="));
//! let parsed = SasToken::parse(&token).unwrap();
//! assert_eq!((parsed.key_name(), parsed.expiry()), ("root", 1_900_000_000));
//! ```

mod audience;
mod key;
pub mod percent;
mod token;

pub use audience::{Audience, path_covers};
pub use key::{KeyFileError, SharedAccessKey, unix_now};
pub use token::{SAS_PREFIX, SasToken, TokenError, sas_token};

/// How long the tokens hosts and callers sign with a key live, unless told otherwise: an hour,
/// well inside the week a relay accepts at most by default.
pub const DEFAULT_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

/// What a token may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Right {
    /// Register as a listener.
    Listen,
    /// Open channels to listeners.
    Send,
    /// Everything, including listen and send.
    Manage,
}

/// Why a relay refused a credential. Each reason is distinct; none reveals a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthFailure {
    /// No token was given.
    MissingToken,
    /// The token is not a well-formed SAS token.
    Malformed,
    /// The signature does not match any key of that name.
    BadSignature,
    /// The token has expired.
    Expired,
    /// The key does not grant the right needed (listen or send).
    WrongRight,
    /// The token or its key does not cover this host or address.
    OutOfScope,
}

impl AuthFailure {
    /// Every reason, for lookups by description.
    pub const ALL: [AuthFailure; 6] =
        [Self::MissingToken, Self::Malformed, Self::BadSignature, Self::Expired, Self::WrongRight, Self::OutOfScope];

    /// A short description; also the prefix of a Hybrid Connections refusal's description.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingToken => "missing token",
            Self::Malformed => "malformed token",
            Self::BadSignature => "bad signature",
            Self::Expired => "token expired",
            Self::WrongRight => "token lacks the right",
            Self::OutOfScope => "token out of scope",
        }
    }

    /// The reason whose description begins `description`, if any.
    ///
    /// ```
    /// use relay_proto::auth::AuthFailure;
    /// assert_eq!(AuthFailure::from_description("token expired: at 12"), Some(AuthFailure::Expired));
    /// assert_eq!(AuthFailure::from_description("go away"), None);
    /// ```
    pub fn from_description(description: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| description.starts_with(f.as_str()))
    }
}

impl std::fmt::Display for AuthFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
