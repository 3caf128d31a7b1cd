//! The relay's TLS identity: a configured certificate, or a self-signed one made on first start.

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::key_file::{self, Existing};

/// Why the relay's certificate could not be loaded or made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// A file could not be read or written.
    #[error("cannot read or write {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file holds no usable PEM certificate or key.
    #[error("{path}: {detail}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The certificate could not be generated.
    #[error("cannot generate a certificate")]
    Generate(#[from] rcgen::Error),
    /// The generated certificate's file or key file is a symbolic link to nothing: writing
    /// through it would put the file wherever it points, writing over it would lose the link.
    #[error("{0} is a symbolic link to a missing file: restore its target, or remove it for a new certificate")]
    DanglingLink(PathBuf),
}

/// A certificate chain and its private key.
#[derive(Debug)]
pub struct Identity {
    /// The chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's key.
    pub key: PrivateKeyDer<'static>,
    /// The certificate file clients can trust.
    pub cert_path: PathBuf,
}

/// The names the generated development certificate is valid for.
pub const DEV_CERT_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Loads `cert`/`key`, or the development certificate in `data_dir`, generating it if absent.
pub fn load_or_generate(data_dir: &Path, cert: Option<&Path>, key: Option<&Path>) -> Result<Identity, CertError> {
    let (cert_path, key_path) = match (cert, key) {
        (Some(cert), Some(key)) => (cert.to_owned(), key.to_owned()),
        _ => {
            let (cert, key) = (data_dir.join("cert.pem"), data_dir.join("key.pem"));
            let mut missing = false;
            for path in [&cert, &key] {
                match key_file::probe(path).map_err(|source| CertError::Io { path: path.clone(), source })? {
                    Existing::Missing => missing = true,
                    Existing::Present => {}
                    Existing::DanglingLink => return Err(CertError::DanglingLink(path.clone())),
                }
            }
            if missing {
                generate(data_dir, &cert, &key)?;
            }
            (cert, key)
        }
    };
    key_file::warn_if_exposed(&key_path);
    let pem_err = |path: &Path, detail: String| CertError::Pem { path: path.to_owned(), detail };
    let chain = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| pem_err(&cert_path, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(&cert_path, e.to_string()))?;
    if chain.is_empty() {
        return Err(pem_err(&cert_path, "no certificate found".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| pem_err(&key_path, e.to_string()))?;
    Ok(Identity { chain, key, cert_path })
}

fn generate(data_dir: &Path, cert_path: &Path, key_path: &Path) -> Result<(), CertError> {
    fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CertError + '_ {
        move |source| CertError::Io { path: path.to_owned(), source }
    }
    std::fs::create_dir_all(data_dir).map_err(io_err(data_dir))?;
    let names: Vec<String> = DEV_CERT_NAMES.iter().map(|s| s.to_string()).collect();
    let certified = rcgen::generate_simple_self_signed(names)?;
    key_file::write_private(key_path, certified.signing_key.serialize_pem().as_bytes()).map_err(io_err(key_path))?;
    // The certificate is public, but written the same way: never through a link, never half.
    key_file::write_new(cert_path, certified.cert.pem().as_bytes(), 0o644).map_err(io_err(cert_path))?;
    tracing::info!(cert = %cert_path.display(), "generated a self-signed development certificate");
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn a_regenerated_key_is_private_whatever_the_old_file_was() {
        // Regression (issue 19): the key was written into the existing file, which kept its mode.
        let dir = crate::key_file::tests::fresh_dir("regenerate");
        let key = dir.join("key.pem");
        std::fs::write(&key, "stale").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        // No cert.pem: both are made again.
        load_or_generate(&dir, None, None).unwrap();
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        assert_ne!(std::fs::read_to_string(&key).unwrap(), "stale");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
