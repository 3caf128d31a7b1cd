use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::TransportConfig;

use super::bind;
use crate::config::Config;
use crate::tls::test_support::{client_config, development_identity};

/// Both ends of a connection find that loopback carries large datagrams: bulk data then moves
/// in a fraction of the packets. The client is configured as hosts and callers are.
#[tokio::test]
async fn connections_find_large_datagrams_on_loopback() {
    let (identity, dir) = development_identity();
    let config = Config { quic_listen: SocketAddr::from(([127, 0, 0, 1], 0)), ..Config::default() };
    let server = bind(&config, &identity).expect("the relay's endpoint");
    let addr = server.local_addr().expect("bound");

    let mut tls = (*client_config(&identity, &[&rustls::version::TLS13])).clone();
    let _ = std::fs::remove_dir_all(&dir);
    tls.alpn_protocols = vec![relay_proto::ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("QUIC TLS");
    let mut transport = TransportConfig::default();
    transport.mtu_discovery_config(Some(relay_proto::io::mtu_discovery()));
    let mut client_config = quinn::ClientConfig::new(Arc::new(crypto));
    client_config.transport_config(Arc::new(transport));
    let client = relay_proto::io::bind_endpoint(SocketAddr::from(([127, 0, 0, 1], 0)), None).expect("client");

    let connecting = client.connect_with(client_config, addr, "127.0.0.1").expect("connect");
    let (near, far) = tokio::join!(connecting, async { server.accept().await.expect("incoming").await });
    let (near, far) = (near.expect("client handshake"), far.expect("server handshake"));
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
