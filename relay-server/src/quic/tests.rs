use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::bind;
use crate::config::Config;
use crate::tls::test_support::{client_config, development_identity};

/// A client connected to a relay endpoint made from the default configuration, the client
/// configured as hosts and callers are: both ends of the connection.
async fn connected() -> (quinn::Endpoint, quinn::Connection, quinn::Endpoint, quinn::Connection) {
    let (identity, dir) = development_identity();
    let config = Config { quic_listen: SocketAddr::from(([127, 0, 0, 1], 0)), ..Config::default() };
    let server = bind(&config, &identity).expect("the relay's endpoint");
    let addr = server.local_addr().expect("bound");

    let mut tls = (*client_config(&identity, &[&rustls::version::TLS13])).clone();
    let _ = std::fs::remove_dir_all(&dir);
    tls.alpn_protocols = vec![relay_proto::ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("QUIC TLS");
    let mut client_config = quinn::ClientConfig::new(Arc::new(crypto));
    client_config.transport_config(Arc::new(relay_proto::io::transport_config()));
    let client = relay_proto::io::bind_endpoint(SocketAddr::from(([127, 0, 0, 1], 0)), None).expect("client");

    let connecting = client.connect_with(client_config, addr, "127.0.0.1").expect("connect");
    let (near, far) = tokio::join!(connecting, async { server.accept().await.expect("incoming").await });
    (client, near.expect("client handshake"), server, far.expect("server handshake"))
}

/// Both ends of a connection find that loopback carries large datagrams: bulk data then moves
/// in a fraction of the packets.
#[tokio::test]
async fn connections_find_large_datagrams_on_loopback() {
    let (_client, near, _server, far) = connected().await;
    let wanted = relay_proto::io::MAX_UDP_PAYLOAD;
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while near.stats().path.current_mtu < wanted || far.stats().path.current_mtu < wanted {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        found.is_ok(),
        "MTUs after 10 s: client {}, relay {} (wanted {wanted})",
        near.stats().path.current_mtu,
        far.stats().path.current_mtu
    );
}
