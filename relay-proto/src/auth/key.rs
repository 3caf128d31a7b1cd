//! Shared access keys, and the clock tokens are checked against.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Why a key file could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// The file could not be read.
    #[error("cannot read the key file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file holds no `SharedAccessKeyName=…;SharedAccessKey=…` connection string.
    #[error("{}: not a key connection string", path.display())]
    NotAKey {
        /// The file.
        path: PathBuf,
    },
}

/// The current time in unix seconds.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A named shared access key. `Debug` prints its name only.
#[derive(Clone, PartialEq, Eq)]
pub struct SharedAccessKey {
    name: String,
    key: String,
}

impl fmt::Debug for SharedAccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedAccessKey").field("name", &self.name).field("key", &"MASKED").finish()
    }
}

impl SharedAccessKey {
    /// A key named `name`.
    pub fn new(name: impl Into<String>, key: impl Into<String>) -> Self {
        Self { name: name.into(), key: key.into() }
    }

    /// The key's name (`skn` in tokens).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The secret.
    pub fn secret(&self) -> &str {
        &self.key
    }

    /// Parses an Azure-style connection string:
    /// `[Endpoint=sb://host/;]SharedAccessKeyName=NAME;SharedAccessKey=KEY`.
    ///
    /// ```
    /// use relay_proto::auth::SharedAccessKey;
    /// let key = SharedAccessKey::parse("Endpoint=sb://relay.example/;SharedAccessKeyName=root;SharedAccessKey=abc=").unwrap();
    /// assert_eq!((key.name(), key.secret()), ("root", "abc="));
    /// assert!(!format!("{key:?}").contains("abc="));
    /// ```
    pub fn parse(connection_string: &str) -> Option<Self> {
        let (mut name, mut key) = (None, None);
        for part in connection_string.trim().split(';').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=')?;
            match k.trim() {
                "SharedAccessKeyName" => name = Some(v.trim().to_owned()),
                "SharedAccessKey" => key = Some(v.trim().to_owned()),
                _ => {}
            }
        }
        Some(Self::new(name.filter(|n| !n.is_empty())?, key.filter(|k| !k.is_empty())?))
    }

    /// Reads a connection string from a file, such as the relay's `relay-data/root.key`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, KeyFileError> {
        let path = path.as_ref();
        let text =
            std::fs::read_to_string(path).map_err(|source| KeyFileError::Read { path: path.to_owned(), source })?;
        Self::parse(&text).ok_or_else(|| KeyFileError::NotAKey { path: path.to_owned() })
    }
}
