//! The `RootManageSharedAccessKey`, generated into the data directory on first start.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use relay_rpc::auth::SharedAccessKey;
use ring::rand::{SecureRandom, SystemRandom};

/// The root key's name, as in Azure.
pub const ROOT_KEY_NAME: &str = "RootManageSharedAccessKey";

/// The root key's file in a data directory.
pub fn root_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("root.key")
}

/// Why the root key could not be loaded or made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RootKeyError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file holds no key.
    #[error("{0}: not a SharedAccessKeyName=...;SharedAccessKey=... line")]
    Invalid(PathBuf),
    /// The system's random source failed.
    #[error("no randomness for a new key")]
    Random,
}

/// Loads the root key from `data_dir`, generating a random one (256 bits) if there is none.
pub fn load_or_generate(data_dir: &Path) -> Result<SharedAccessKey, RootKeyError> {
    let path = root_key_path(data_dir);
    let io = |source| RootKeyError::Io { path: path.clone(), source };
    if !path.exists() {
        let mut bytes = [0u8; 32];
        SystemRandom::new().fill(&mut bytes).map_err(|_| RootKeyError::Random)?;
        let secret = base64::engine::general_purpose::STANDARD.encode(bytes);
        std::fs::create_dir_all(data_dir).map_err(io)?;
        crate::certs::write_private(
            &path,
            format!("SharedAccessKeyName={ROOT_KEY_NAME};SharedAccessKey={secret}\n").as_bytes(),
        )
        .map_err(io)?;
        tracing::info!(path = %path.display(), "generated the root key");
    }
    let text = std::fs::read_to_string(&path).map_err(io)?;
    SharedAccessKey::parse(&text).ok_or(RootKeyError::Invalid(path))
}
