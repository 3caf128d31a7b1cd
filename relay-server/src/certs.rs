//! The relay's TLS identity: a configured certificate, or a self-signed one made on first start.

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why the relay's certificate could not be loaded or made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
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
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
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
            if !cert.exists() || !key.exists() {
                generate(data_dir, &cert, &key)?;
            }
            (cert, key)
        }
    };
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
    write_private(key_path, certified.signing_key.serialize_pem().as_bytes()).map_err(io_err(key_path))?;
    std::fs::write(cert_path, certified.cert.pem()).map_err(io_err(cert_path))?;
    tracing::info!(cert = %cert_path.display(), "generated a self-signed development certificate");
    Ok(())
}

/// Writes a file only its owner can read.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}
