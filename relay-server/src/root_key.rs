//! The `RootManageSharedAccessKey`, generated into the data directory on first start.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use relay_proto::auth::SharedAccessKey;
use ring::rand::{SecureRandom, SystemRandom};

use crate::key_file::{self, Existing};

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
    #[error("cannot read or write {path}")]
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
    /// The file is a symbolic link to nothing. Writing a new key through it would put the key
    /// wherever the link points; writing over it would lose what it was meant to reach (a
    /// mounted secret that is not there yet, say) and silently change the key. So the relay stops.
    #[error("{0} is a symbolic link to a missing file: restore its target, or remove it for a new key")]
    DanglingLink(PathBuf),
    /// The system's random source failed.
    #[error("no randomness for a new key")]
    Random,
}

/// Loads the root key from `data_dir`, generating a random one (256 bits) if there is none.
/// A new key file is readable by its owner only; an existing one open to others is warned about.
pub fn load_or_generate(data_dir: &Path) -> Result<SharedAccessKey, RootKeyError> {
    let path = root_key_path(data_dir);
    let io = |source| RootKeyError::Io { path: path.clone(), source };
    match key_file::probe(&path).map_err(io)? {
        Existing::DanglingLink => return Err(RootKeyError::DanglingLink(path)),
        Existing::Present => key_file::warn_if_exposed(&path),
        Existing::Missing => {
            let mut bytes = [0u8; 32];
            SystemRandom::new().fill(&mut bytes).map_err(|_| RootKeyError::Random)?;
            let secret = base64::engine::general_purpose::STANDARD.encode(bytes);
            std::fs::create_dir_all(data_dir).map_err(io)?;
            key_file::write_private(
                &path,
                format!("SharedAccessKeyName={ROOT_KEY_NAME};SharedAccessKey={secret}\n").as_bytes(),
            )
            .map_err(io)?;
            tracing::info!(path = %path.display(), "generated the root key");
        }
    }
    let text = std::fs::read_to_string(&path).map_err(io)?;
    SharedAccessKey::parse(&text).ok_or(RootKeyError::Invalid(path))
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;
    use crate::key_file::tests::fresh_dir;

    #[test]
    fn a_new_key_is_private_and_loads_again() {
        let dir = fresh_dir("new");
        let key = load_or_generate(&dir).unwrap();
        let mode = std::fs::metadata(root_key_path(&dir)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_or_generate(&dir).unwrap(), key);
        let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers, ["root.key"], "no temporary file left behind");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_existing_key_open_to_others_is_warned_about() {
        #[derive(Clone, Default)]
        struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Captured {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let dir = fresh_dir("exposed");
        let path = root_key_path(&dir);
        std::fs::write(&path, "SharedAccessKeyName=root;SharedAccessKey=k\n").unwrap();
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
        let dispatch = tracing::Dispatch::new(subscriber);
        let load = |mode| {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            tracing::dispatcher::with_default(&dispatch, || load_or_generate(&dir).unwrap());
            String::from_utf8(std::mem::take(&mut *captured.0.lock().unwrap())).unwrap()
        };
        let logs = load(0o600);
        assert!(!logs.contains("WARN"), "{logs}");
        let logs = load(0o644);
        assert!(logs.contains("WARN") && logs.contains("root.key") && logs.contains("0644"), "{logs}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_dangling_symlink_is_refused_not_followed() {
        // Regression (issue 19): `exists()` follows links, so a dangling `root.key` link was taken
        // for no key, and the new key was written wherever the link pointed.
        let dir = fresh_dir("dangling");
        let target = dir.join("elsewhere");
        std::os::unix::fs::symlink(&target, root_key_path(&dir)).unwrap();
        assert!(matches!(load_or_generate(&dir), Err(RootKeyError::DanglingLink(_))));
        assert!(!target.exists(), "no key written through the link");
        assert!(std::fs::symlink_metadata(root_key_path(&dir)).unwrap().file_type().is_symlink(), "the link is kept");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
