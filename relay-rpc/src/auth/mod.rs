//! Authorization with Shared Access Signature tokens, in Azure Relay's exact format.
//!
//! A token grants the rights of the key that signed it (`listen`, `send`, `manage`) on the path
//! it names and everything below it, until it expires. Tokens made by Azure's own SDKs (which sign
//! `sb://host/path`) and by the Node `hyco-ws` package (`http://host:port/path`) are accepted:
//! only host and path are compared.
//!
//! ```
//! use relay_rpc::auth::{SasKeyProvider, SharedAccessKey, TokenProvider};
//!
//! let key = SharedAccessKey::new("RootManageSharedAccessKey", "c2VjcmV0LWtleS1vZi10aGUtcmVsYXk=");
//! let provider = SasKeyProvider::new(key);
//! let token = provider.token("quic://127.0.0.1:7443/calc")?;
//! assert!(token.value().starts_with("SharedAccessSignature sr=quic%3A%2F%2F127.0.0.1%3A7443%2Fcalc&sig="));
//! # Ok::<(), relay_rpc::auth::ProvideError>(())
//! ```

mod audience;
mod percent;
mod provider;
mod token;

pub use audience::{Audience, path_covers};
pub(crate) use percent::decode_lenient as percent_decode_lenient;
pub use percent::{decode as percent_decode, encode_component as percent_encode};
pub use provider::{ProvideError, SasKeyProvider, SharedAccessKey, StaticToken, Token, TokenProvider, unix_now};
pub use token::{MAX_TOKEN_LEN, SAS_PREFIX, SasToken, TokenError, sas_token};

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
    pub(crate) const ALL: [AuthFailure; 6] =
        [Self::MissingToken, Self::Malformed, Self::BadSignature, Self::Expired, Self::WrongRight, Self::OutOfScope];

    /// A short description.
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
}

impl std::fmt::Display for AuthFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
