//! TLS configurations for the relay's endpoints, from one identity.

use std::sync::Arc;

use crate::certs::Identity;

/// A rustls server configuration for `identity`, speaking `alpn`; TLS 1.3 only when `tls13_only`.
pub(crate) fn server_config(
    identity: &Identity,
    alpn: &[u8],
    tls13_only: bool,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] =
        if tls13_only { &[&rustls::version::TLS13] } else { &[&rustls::version::TLS13, &rustls::version::TLS12] };
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)?
        .with_no_client_auth()
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())?;
    tls.alpn_protocols = vec![alpn.to_vec()];
    tls.max_early_data_size = 0;
    Ok(tls)
}

/// The acceptor for `wss://`: HTTP/1.1 over TLS 1.2 or 1.3.
pub(crate) fn wss_acceptor(identity: &Identity) -> Result<tokio_rustls::TlsAcceptor, rustls::Error> {
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(server_config(identity, b"http/1.1", false)?)))
}
