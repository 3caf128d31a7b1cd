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

mod provider;

pub use provider::{ProvideError, SasKeyProvider, StaticToken, Token, TokenProvider};
pub use relay_proto::auth::{
    AuthFailure, KeyFileError, Right, SAS_PREFIX, SasToken, SharedAccessKey, TokenError, sas_token, unix_now,
};
