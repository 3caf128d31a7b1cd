//! Garbage, truncated, oversized and stalled handshakes: each is closed with an error, and a
//! well-behaved caller on the same relay is not disturbed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use calculator::{Calc, CalculatorClient, ServeCalculator};
use quinn::{Connection, ReadError, RecvStream};
use relay_proto::{self as proto, Hello, Reply, StreamCode};
use relay_rpc::CallContext;
use relay_tests::TestRelay;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// A relay whose handshakes time out after 500 ms, with the calculator served on `calc`.
async fn relay_with_calculator() -> (TestRelay, relay_rpc::Host) {
    let relay = TestRelay::start_with(|c| c.handshake_timeout_ms = 500).await;
    let host = relay.host().await;
    tokio::spawn(host.listen("calc").await.unwrap().serve(ServeCalculator::new(Calc)));
    (relay, host)
}

/// A TLS client configuration that trusts the relay's certificate and offers `alpn`.
fn tls_client(relay: &TestRelay, alpn: &[u8]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(&relay.cert).unwrap()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![alpn.to_vec()];
    tls
}

/// A QUIC connection that speaks raw bytes to the relay.
async fn raw_connection(relay: &TestRelay, alpn: &[u8]) -> Result<Connection, quinn::ConnectionError> {
    raw_connection_from(relay, alpn, "127.0.0.1").await
}

/// A QUIC connection that speaks raw bytes to the relay, from the source address `from`.
async fn raw_connection_from(relay: &TestRelay, alpn: &[u8], from: &str) -> Result<Connection, quinn::ConnectionError> {
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls_client(relay, alpn)).unwrap();
    let mut endpoint = quinn::Endpoint::client(format!("{from}:0").parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    endpoint.connect(relay.addr, "localhost").unwrap().await
}

/// A good caller still gets answers.
async fn good_caller_works(relay: &TestRelay) {
    let caller = relay.caller().await;
    let calc = CalculatorClient::connect(&caller, "calc").await.unwrap();
    assert_eq!(calc.add(CallContext::with_timeout(Duration::from_secs(5)), 20, 22).await.unwrap(), 42);
}

/// Reads what the relay answers on a stream: a reply, a reset code, or the end.
async fn answer(recv: &mut RecvStream) -> Result<Option<Reply>, StreamCode> {
    let mut buf = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), recv.read_chunk(usize::MAX, true))
            .await
            .expect("relay answers in time")
        {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk.bytes),
            Ok(None) => break,
            Err(ReadError::Reset(code)) => return Err(StreamCode::from_u64(code.into_inner())),
            // The relay closes a connection without an authorized hello with the same code.
            Err(ReadError::ConnectionLost(quinn::ConnectionError::ApplicationClosed(close))) => {
                return Err(StreamCode::from_u64(close.error_code.into_inner()));
            }
            Err(e) => panic!("unexpected read error {e}"),
        }
    }
    if buf.len() < proto::FRAME_HEADER_LEN {
        return Ok(None);
    }
    Ok(Some(Reply::decode(&buf[proto::FRAME_HEADER_LEN..]).expect("a well-formed reply")))
}

#[tokio::test]
async fn garbage_datagrams_are_ignored() {
    let (relay, _host) = relay_with_calculator().await;
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for i in 0..200u32 {
        let junk: Vec<u8> = (0..1200).map(|j| (i.wrapping_mul(31) ^ j) as u8).collect();
        socket.send_to(&junk, relay.addr).await.unwrap();
    }
    good_caller_works(&relay).await;
}

#[tokio::test]
async fn a_wrong_protocol_is_refused_at_the_tls_handshake() {
    let (relay, _host) = relay_with_calculator().await;
    assert!(raw_connection(&relay, b"h3").await.is_err());
    good_caller_works(&relay).await;
}

#[tokio::test]
async fn a_garbage_hello_is_refused_as_a_bad_request() {
    let (relay, _host) = relay_with_calculator().await;
    let connection = raw_connection(&relay, proto::ALPN).await.unwrap();
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    send.write_all(&proto::encode_frame(b"\x01\x02 this is not a hello")).await.unwrap();
    match answer(&mut recv).await {
        Ok(Some(Reply::Refused(refusal))) => assert_eq!(refusal.code, proto::ErrorCode::BadRequest),
        other => panic!("expected a refusal, got {other:?}"),
    }
    good_caller_works(&relay).await;
}

#[tokio::test]
async fn an_oversized_length_is_cut_at_once() {
    let (relay, _host) = relay_with_calculator().await;
    let connection = raw_connection(&relay, proto::ALPN).await.unwrap();
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    send.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    let started = Instant::now();
    assert_eq!(answer(&mut recv).await.unwrap_err(), StreamCode::ProtocolError);
    assert!(started.elapsed() < Duration::from_millis(450), "cut without waiting for the timeout");
    good_caller_works(&relay).await;
}

#[tokio::test]
async fn a_truncated_hello_is_closed() {
    let (relay, _host) = relay_with_calculator().await;
    let connection = raw_connection(&relay, proto::ALPN).await.unwrap();
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    let hello = Hello::Listen { address: "calc".into(), token: None }.encode();
    let frame = proto::encode_frame(&hello);
    send.write_all(&frame[..frame.len() - 2]).await.unwrap();
    send.finish().unwrap();
    assert_eq!(answer(&mut recv).await.unwrap_err(), StreamCode::ProtocolError);
    good_caller_works(&relay).await;
}

#[tokio::test]
async fn stalled_handshakes_time_out_while_others_are_served() {
    let (relay, _host) = relay_with_calculator().await;
    let connection = raw_connection(&relay, proto::ALPN).await.unwrap();
    let mut stalled = Vec::new();
    for _ in 0..30 {
        let (mut send, recv) = connection.open_bi().await.unwrap();
        send.write_all(&[0, 0]).await.unwrap(); // half a length prefix, then nothing
        stalled.push((send, recv));
    }
    // A QUIC connection that never opens a stream does not bother anyone either.
    let _idle = raw_connection(&relay, proto::ALPN).await.unwrap();
    let started = Instant::now();
    good_caller_works(&relay).await;
    assert!(started.elapsed() < Duration::from_millis(450), "the good caller is not held up by stalled ones");
    for (_send, mut recv) in stalled {
        assert_eq!(answer(&mut recv).await.unwrap_err(), StreamCode::HandshakeTimeout);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_stalled_wss_handshakes_from_one_source_do_not_keep_others_out() {
    // Room for 200 handshakes in all, 64 per source.
    let relay = TestRelay::start_with(|c| {
        c.handshake_timeout_ms = 20_000;
        c.max_pending_handshakes = 200;
        c.max_pending_handshakes_per_ip = 64;
    })
    .await;
    let host = relay.host().await;
    tokio::spawn(host.listen("calc").await.unwrap().serve(ServeCalculator::new(Calc)));
    // A thousand TCP connections from 127.0.0.2 that never finish their TLS handshake.
    let mut stalled = Vec::new();
    for _ in 0..1000 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        if let Ok(stream) = socket.connect(relay.ws_addr).await {
            stalled.push(stream);
        }
    }
    assert!(stalled.len() >= 900, "connected {}", stalled.len());
    // Someone else, from 127.0.0.1, is served at once, over wss and over QUIC.
    let started = Instant::now();
    let caller = relay_rpc::Connection::connect(&relay.ws_url, relay.options()).await.unwrap();
    let calc = CalculatorClient::connect(&caller, "calc").await.unwrap();
    assert_eq!(calc.add(CallContext::with_timeout(Duration::from_secs(5)), 1, 2).await.unwrap(), 3);
    assert!(started.elapsed() < Duration::from_secs(3), "served after {:?}", started.elapsed());
    good_caller_works(&relay).await;
    drop(stalled);
}

/// How a QUIC connection ended, within `limit`.
async fn closed_within(connection: &Connection, limit: Duration) -> quinn::ConnectionError {
    tokio::time::timeout(limit, connection.closed()).await.expect("closed in time")
}

#[tokio::test]
async fn a_connection_without_an_authorized_hello_is_closed_after_the_handshake_timeout() {
    let (relay, _host) = relay_with_calculator().await;
    let idle = raw_connection(&relay, proto::ALPN).await.unwrap();
    // One whose only hello is refused is no better.
    let refused = raw_connection(&relay, proto::ALPN).await.unwrap();
    let (mut send, mut recv) = refused.open_bi().await.unwrap();
    let hello = Hello::Connect { address: "calc".into(), token: None, contract: Default::default() };
    send.write_all(&proto::encode_frame(&hello.encode())).await.unwrap();
    assert!(matches!(answer(&mut recv).await, Ok(Some(Reply::Refused(_)))));
    // A caller with a token stays connected past the timeout.
    let caller = relay.caller().await;
    let calc = CalculatorClient::connect(&caller, "calc").await.unwrap();
    for connection in [&idle, &refused] {
        match closed_within(connection, Duration::from_secs(3)).await {
            quinn::ConnectionError::ApplicationClosed(close) => {
                assert_eq!(StreamCode::from_u64(close.error_code.into_inner()), StreamCode::HandshakeTimeout)
            }
            other => panic!("expected the relay to close it, got {other}"),
        }
    }
    let slots_back = relay_tests::eventually(Duration::from_secs(1), || relay.stats.pending_handshakes() == 0).await;
    assert!(slots_back, "their handshake slots are back");
    assert_eq!(calc.add(CallContext::with_timeout(Duration::from_secs(5)), 1, 1).await.unwrap(), 2);
}

#[tokio::test]
async fn a_caller_idle_past_the_handshake_timeout_before_its_first_channel_redials_for_it() {
    let (relay, _host) = relay_with_calculator().await;
    let late = relay.caller().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let calc = CalculatorClient::connect(&late, "calc").await.unwrap();
    assert_eq!(calc.add(CallContext::with_timeout(Duration::from_secs(5)), 2, 2).await.unwrap(), 4);
}

#[tokio::test]
async fn connections_per_source_are_capped_over_quic_and_tcp_alike() {
    let relay = TestRelay::start_with(|c| c.max_connections_per_ip = 3).await;
    let host = relay.host().await; // from 127.0.0.1
    tokio::spawn(host.listen("calc").await.unwrap().serve(ServeCalculator::new(Calc)));
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(raw_connection_from(&relay, proto::ALPN, "127.0.0.2").await.unwrap());
    }
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let tcp = socket.connect(relay.ws_addr).await.unwrap();
    assert!(relay_tests::eventually(Duration::from_secs(2), || relay.stats.open_connections() == 4).await);
    let fourth = raw_connection_from(&relay, proto::ALPN, "127.0.0.2").await;
    assert!(matches!(fourth, Err(quinn::ConnectionError::ConnectionClosed(_))), "refused: {fourth:?}");
    // 127.0.0.1 has its own allowance.
    good_caller_works(&relay).await;
    drop((held, tcp));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_wss_handshakes_from_many_sources_do_not_keep_quic_clients_out() {
    // 16 sources fill the WebSocket handshake pool (4 each); QUIC has a pool of its own.
    let relay = TestRelay::start_with(|c| {
        c.handshake_timeout_ms = 20_000;
        c.max_pending_handshakes = 64;
        c.max_pending_handshakes_per_ip = 4;
    })
    .await;
    let host = relay.host().await;
    tokio::spawn(host.listen("calc").await.unwrap().serve(ServeCalculator::new(Calc)));
    let mut stalled = Vec::new();
    for source in 2..18 {
        for _ in 0..4 {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(format!("127.0.0.{source}:0").parse().unwrap()).unwrap();
            stalled.push(socket.connect(relay.ws_addr).await.unwrap());
        }
    }
    assert!(relay_tests::eventually(Duration::from_secs(2), || relay.stats.pending_handshakes() == 64).await);
    let started = Instant::now();
    good_caller_works(&relay).await;
    assert!(started.elapsed() < Duration::from_secs(3), "served after {:?}", started.elapsed());
    drop(stalled);
}

#[tokio::test]
async fn past_half_the_quic_pool_new_clients_are_asked_to_retry_and_get_in() {
    let relay = TestRelay::start_with(|c| {
        c.max_pending_handshakes = 4;
        c.max_pending_handshakes_per_ip = 4;
    })
    .await;
    let host = relay.host().await;
    tokio::spawn(host.listen("calc").await.unwrap().serve(ServeCalculator::new(Calc)));
    // Two connections without a token hold half the pool.
    let _held = [
        raw_connection_from(&relay, proto::ALPN, "127.0.0.2").await.unwrap(),
        raw_connection_from(&relay, proto::ALPN, "127.0.0.2").await.unwrap(),
    ];
    assert_eq!(relay.stats.quic_retries(), 0);
    good_caller_works(&relay).await;
    assert!(relay.stats.quic_retries() >= 1, "the caller was asked to retry");
}

#[tokio::test]
async fn tls_and_the_request_head_share_one_deadline() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let relay = TestRelay::start_with(|c| c.handshake_timeout_ms = 1000).await;
    let started = Instant::now();
    let tcp = tokio::net::TcpStream::connect(relay.ws_addr).await.unwrap();
    // TLS in just over half the deadline, then the head in just over half again: each alone
    // would be in time.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls_client(&relay, b"http/1.1")));
    let mut tls = connector.connect("localhost".try_into().unwrap(), tcp).await.expect("TLS within the deadline");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let head = "GET /$hc/calc?sb-hc-action=connect HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
                Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    let _ = tls.write_all(head.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer)).await.expect("closed in time");
    assert!(answer.is_empty(), "answered after {:?}: {}", started.elapsed(), String::from_utf8_lossy(&answer));
}
