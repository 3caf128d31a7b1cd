//! Which relay certificates a client trusts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use rustls::RootCertStore;
use rustls::client::{ClientSessionMemoryCache, Resumption};
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

/// The TLS configurations of the QUIC connections made with one
/// [`ConnectOptions`](crate::ConnectOptions) (and its clones), one per relay (`host:port`), each
/// with its own session store. Made once, not per connection, because rustls resumes a session
/// only under the configuration (the certificate verifier) that made it: so a connection made
/// again (a reconnect, a failover back, a new [`Connection`](crate::Connection) from the same
/// options) resumes the last one's session, with 0-RTT where its role allows. rustls keys its
/// store by server name alone; keyed by port too, two relays on one host are never offered each
/// other's tickets. Trusting other certificates starts a new, empty set.
#[derive(Debug, Clone, Default)]
pub(crate) struct QuicTls(Arc<Mutex<HashMap<String, Arc<rustls::ClientConfig>>>>);

/// Relays one [`QuicTls`] keeps configurations for; past it, it starts over.
const RELAYS_REMEMBERED: usize = 64;

/// Tickets kept per relay: a few connections' worth (a relay sends one per connection).
const TICKETS_PER_RELAY: usize = 8;

impl QuicTls {
    /// The configuration for the relay at `authority` (`host:port`), trusting `roots`, early
    /// data enabled (a host turns it off on its copy).
    pub(crate) fn for_relay(
        &self,
        authority: &str,
        roots: &Arc<RootCertStore>,
    ) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        let mut relays = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(config) = relays.get(authority) {
            return Ok(config.clone());
        }
        if relays.len() >= RELAYS_REMEMBERED {
            relays.clear();
        }
        let mut config = client_config(roots.clone(), &[relay_proto::ALPN])?;
        config.resumption = Resumption::store(Arc::new(ClientSessionMemoryCache::new(TICKETS_PER_RELAY)));
        config.enable_early_data = true;
        let config = Arc::new(config);
        relays.insert(authority.to_owned(), config.clone());
        Ok(config)
    }
}
