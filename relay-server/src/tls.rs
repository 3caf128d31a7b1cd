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

/// The configuration of the QUIC endpoint: TLS 1.3 with `alpn`, resumable sessions and 0-RTT.
///
/// Sessions are kept here (rustls' stateful resumption, which 0-RTT requires) and each ticket
/// is taken on use: early data recorded and played again finds its ticket gone and is refused,
/// and no other relay can read it. What a client may send as early data is the QUIC module's
/// business (`quic.rs` holds `Listen` and `Rendezvous` hellos until the handshake is done).
pub(crate) fn quic_server_config(identity: &Identity, alpn: &[u8]) -> Result<rustls::ServerConfig, rustls::Error> {
    let mut tls = server_config(identity, alpn, true)?;
    // QUIC allows no other value than "any": the stream limits bound early data instead.
    tls.max_early_data_size = u32::MAX;
    tls.session_storage = rustls::server::ServerSessionMemoryCache::new(QUIC_SESSIONS);
    // One reconnect's worth per connection; a resumed connection gets a fresh one.
    tls.send_tls13_tickets = 1;
    Ok(tls)
}

/// Sessions the QUIC endpoint remembers for resumption, about 200 bytes each; past it, older
/// ones are dropped and their clients make a full handshake.
const QUIC_SESSIONS: usize = 4096;

/// The acceptor for `wss://`: HTTP/1.1 over TLS 1.2 or 1.3.
pub(crate) fn wss_acceptor(identity: &Identity) -> Result<tokio_rustls::TlsAcceptor, rustls::Error> {
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(server_config(identity, b"http/1.1", false)?)))
}
