//! Which relay certificates a client trusts.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// Why a trust configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The certificate file could not be read or holds no PEM certificate.
    #[error("cannot read certificates from {path}: {detail}")]
    ReadCertificates {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// A certificate was rejected as a trust anchor.
    #[error("certificate in {path} is not a usable trust anchor")]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// The reason.
        #[source]
        source: rustls::Error,
    },
    /// No certificate to trust was configured.
    #[error("no trusted certificate configured: pass the relay's certificate or CA file")]
    NoTrustAnchors,
    /// rustls refused the configuration.
    #[error("tls configuration refused")]
    Config(#[from] rustls::Error),
}

/// Reads every PEM certificate in `path` into a root store.
pub(crate) fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let read_err = |detail: String| TlsError::ReadCertificates { path: path.to_owned(), detail };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| read_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(read_err("no certificate found".into()));
    }
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|source| TlsError::BadCertificate { path: path.to_owned(), source })?;
    }
    Ok(roots)
}

/// A rustls client configuration trusting `roots`, offering the ALPN protocols `alpn`.
pub(crate) fn client_config(roots: Arc<RootCertStore>, alpn: &[&[u8]]) -> Result<rustls::ClientConfig, TlsError> {
    if roots.is_empty() {
        return Err(TlsError::NoTrustAnchors);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}
