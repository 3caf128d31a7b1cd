//! TLS for the relay's endpoints: their configurations, from one identity, and the `wss://`
//! listener's stream ([`stream`]).

mod stream;

use std::sync::Arc;

pub(crate) use stream::accept;

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
/// business (`quic/mod.rs` holds `Listen` and `Rendezvous` hellos until the handshake is done).
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

/// The configuration of `wss://` ([`accept`] takes connections with it): HTTP/1.1 over TLS 1.2
/// or 1.3.
///
/// Sessions resume from stateless tickets (encrypted under keys the relay rotates and keeps in
/// memory only): a client's next WebSocket, a channel of its own, skips the certificate, and the
/// relay keeps nothing per session. A session cache would keep a few hundred bytes for each of
/// the last sessions, scattered over the heap pages of their connections, and pin those pages
/// after the connections close. No early data is taken, so stateless tickets need no replay
/// protection here.
pub(crate) fn wss_config(identity: &Identity) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let mut tls = server_config(identity, b"http/1.1", false)?;
    tls.ticketer = rustls::crypto::ring::Ticketer::new()?;
    tls.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(Arc::new(tls))
}

/// What the crate's tests need to speak TLS to the relay: its development identity, and clients
/// that trust it.
#[cfg(test)]
pub(crate) mod test_support {
    use std::sync::Arc;

    /// A development identity, in a directory of this process and thread (remove it once used).
    pub(crate) fn development_identity() -> (crate::certs::Identity, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "relay-tls-identity-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        (crate::certs::load_or_generate(&dir, None, None).expect("a development identity"), dir)
    }

    /// A client that trusts `identity`, speaking `versions`.
    pub(crate) fn client_config(
        identity: &crate::certs::Identity,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(identity.chain[0].clone()).expect("trusted");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(client)
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{client_config, development_identity};
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// A wss client's second connection resumes the first's session, from a ticket the relay
    /// keeps no copy of.
    #[tokio::test]
    async fn a_wss_clients_next_connection_resumes_from_a_stateless_ticket() {
        let (identity, dir) = development_identity();
        let config = wss_config(&identity).expect("configuration");
        let client = client_config(&identity, rustls::DEFAULT_VERSIONS);
        let connector = tokio_rustls::TlsConnector::from(client);
        let mut kinds = Vec::new();
        for _ in 0..2 {
            let (near, far) = tokio::io::duplex(64 * 1024);
            let server = async {
                let mut tls = accept(config.clone(), far).await.map_err(|(e, _)| e).expect("server handshake");
                // Data after the handshake carries the tickets to the client.
                tls.write_all(b"hi").await.expect("written");
                tls.flush().await.expect("flushed");
                tls
            };
            let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
            let client = async {
                let mut tls = connector.connect(name, near).await.expect("client handshake");
                let mut hi = [0; 2];
                tls.read_exact(&mut hi).await.expect("read");
                tls
            };
            let (_server, client) = tokio::join!(server, client);
            kinds.push(client.get_ref().1.handshake_kind());
        }
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(kinds, [Some(rustls::HandshakeKind::Full), Some(rustls::HandshakeKind::Resumed)]);
        assert!(config.ticketer.enabled(), "the tickets carry the session, not the relay");
    }
}
