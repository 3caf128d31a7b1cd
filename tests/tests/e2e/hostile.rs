//! Garbage, truncated, oversized and stalled handshakes: each is closed with an error, and a
//! well-behaved caller on the same relay is not disturbed.

use std::sync::Arc;
use std::time::Duration;

use calculator::{Calc, CalculatorClient, ServeCalculator};
use quinn::{Connection, ReadError, RecvStream};
use relay_proto::{self as proto, Hello, Reply, StreamCode};
use relay_rpc::CallContext;
use relay_tests::{SLACK, TestRelay, ms};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// A relay's handshake timeout where a test waits for it to fire: short, so the test is.
const SHORT_HANDSHAKE_MS: u64 = 500;

/// A relay's handshake timeout where a test must tell a prompt answer from one the timer brought:
/// longer than [`HANG`], so an answer within `HANG` came before the timer.
const LONG_HANDSHAKE_MS: u64 = 60_000;

/// How long a test waits for the relay's answer before it calls it hung.
const HANG: Duration = Duration::from_secs(20);

/// A relay whose handshakes time out after `handshake_timeout_ms`, with the calculator served on
/// `calc`.
async fn relay_with_calculator(handshake_timeout_ms: u64) -> (TestRelay, relay_rpc::Host) {
    let relay = TestRelay::start_with(|c| c.handshake_timeout_ms = handshake_timeout_ms).await;
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
    assert_eq!(calc.add(CallContext::with_timeout(Duration::from_secs(10)), 20, 22).await.unwrap(), 42);
}

/// Reads what the relay answers on a stream: a reply, a reset code, or the end; within [`HANG`].
async fn answer(recv: &mut RecvStream) -> Result<Option<Reply>, StreamCode> {
    let mut buf = Vec::new();
    loop {
        match tokio::time::timeout(HANG, recv.read_chunk(usize::MAX, true)).await.expect("relay answers in time") {
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
    let (relay, _host) = relay_with_calculator(SHORT_HANDSHAKE_MS).await;
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for i in 0..200u32 {
        let junk: Vec<u8> = (0..1200).map(|j| (i.wrapping_mul(31) ^ j) as u8).collect();
        socket.send_to(&junk, relay.addr).await.unwrap();
    }
    good_caller_works(&relay).await;
}

#[tokio::test]
async fn a_wrong_protocol_is_refused_at_the_tls_handshake() {
    let (relay, _host) = relay_with_calculator(SHORT_HANDSHAKE_MS).await;
    // TLS's `no_application_protocol` alert (120), as QUIC carries it: a CRYPTO_ERROR.
    match raw_connection(&relay, b"h3").await {
        Err(quinn::ConnectionError::ConnectionClosed(close)) => {
            assert_eq!(close.error_code, quinn::TransportErrorCode::crypto(120), "{close}")
        }
        other => panic!("expected the TLS handshake to be refused, got {:?}", other.map(|c| c.stable_id())),
    }
    good_caller_works(&relay).await;
}

#[tokio::test]
async fn a_garbage_hello_is_refused_as_a_bad_request() {
    let (relay, _host) = relay_with_calculator(SHORT_HANDSHAKE_MS).await;
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
    // The handshake timer cannot fire while `answer` waits: an answer at all is a prompt one.
    let (relay, _host) = relay_with_calculator(LONG_HANDSHAKE_MS).await;
    assert!(ms(relay.config().handshake_timeout_ms) > HANG);
    let connection = raw_connection(&relay, proto::ALPN).await.unwrap();
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    send.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    assert_eq!(answer(&mut recv).await.unwrap_err(), StreamCode::ProtocolError, "cut without waiting for the timeout");
    good_caller_works(&relay).await;
}

#[tokio::test]
async fn a_truncated_hello_is_closed() {
    let (relay, _host) = relay_with_calculator(LONG_HANDSHAKE_MS).await;
    let connection = raw_connection(&relay, proto::ALPN).await.unwrap();
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    let hello = Hello::Listen { address: "calc".into(), token: None, http: false }.encode();
    let frame = proto::encode_frame(&hello);
    send.write_all(&frame[..frame.len() - 2]).await.unwrap();
    send.finish().unwrap();
    assert_eq!(answer(&mut recv).await.unwrap_err(), StreamCode::ProtocolError);
    good_caller_works(&relay).await;
}

#[tokio::test]
async fn stalled_handshakes_time_out_while_others_are_served() {
    // Long enough that a good caller is served well before the stalled handshakes time out.
    let (relay, _host) = relay_with_calculator(5_000).await;
    let connection = raw_connection(&relay, proto::ALPN).await.unwrap();
    let mut stalled = Vec::new();
    for _ in 0..30 {
        let (mut send, recv) = connection.open_bi().await.unwrap();
        send.write_all(&[0, 0]).await.unwrap(); // half a length prefix, then nothing
        stalled.push((send, recv));
    }
    // A QUIC connection that never opens a stream does not bother anyone either.
    let _idle = raw_connection(&relay, proto::ALPN).await.unwrap();
    good_caller_works(&relay).await;
    // Served while every stalled handshake still waited: not after they timed out.
    for (i, (_send, recv)) in stalled.iter_mut().enumerate() {
        let read = futures::FutureExt::now_or_never(recv.read_chunk(usize::MAX, true));
        assert!(read.is_none(), "stalled handshake #{i} was answered before the good caller was served: {read:?}");
    }
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
    let held = relay_tests::eventually(SLACK, || relay.stats.pending_handshakes() >= 64).await;
    assert!(
        held,
        "the stalled connections hold their source's share of the pool: {}",
        relay.stats.pending_handshakes()
    );
    // Someone else, from 127.0.0.1, is served over wss and over QUIC while they hold it: not after
    // their handshakes timed out.
    let caller = relay_rpc::Connection::connect(&relay.ws_url, relay.options()).await.unwrap();
    let calc = CalculatorClient::connect(&caller, "calc").await.unwrap();
    assert_eq!(calc.add(CallContext::with_timeout(Duration::from_secs(10)), 1, 2).await.unwrap(), 3);
    good_caller_works(&relay).await;
    let still = relay.stats.pending_handshakes();
    assert!(still >= 64, "served while the stalled handshakes were pending, not after: {still} pending");
    drop(stalled);
}

/// How a QUIC connection ended, within `limit`.
async fn closed_within(connection: &Connection, limit: Duration) -> quinn::ConnectionError {
    tokio::time::timeout(limit, connection.closed()).await.expect("closed in time")
}

#[tokio::test]
async fn a_connection_without_an_authorized_hello_is_closed_after_the_handshake_timeout() {
    let (relay, _host) = relay_with_calculator(SHORT_HANDSHAKE_MS).await;
    let closes_by = ms(relay.config().handshake_timeout_ms) + SLACK;
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
        match closed_within(connection, closes_by).await {
            quinn::ConnectionError::ApplicationClosed(close) => {
                assert_eq!(StreamCode::from_u64(close.error_code.into_inner()), StreamCode::HandshakeTimeout)
            }
            other => panic!("expected the relay to close it, got {other}"),
        }
    }
    let slots_back = relay_tests::eventually(SLACK, || relay.stats.pending_handshakes() == 0).await;
    assert!(slots_back, "their handshake slots are back");
    assert_eq!(calc.add(CallContext::with_timeout(Duration::from_secs(10)), 1, 1).await.unwrap(), 2);
}

#[tokio::test]
async fn a_caller_idle_past_the_handshake_timeout_before_its_first_channel_redials_for_it() {
    let (relay, _host) = relay_with_calculator(SHORT_HANDSHAKE_MS).await;
    let late = relay.caller().await;
    // Idle for three handshake timeouts: the relay has closed the connection by then.
    tokio::time::sleep(3 * ms(relay.config().handshake_timeout_ms)).await;
    let calc = CalculatorClient::connect(&late, "calc").await.unwrap();
    assert_eq!(calc.add(CallContext::with_timeout(Duration::from_secs(10)), 2, 2).await.unwrap(), 4);
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
    assert!(relay_tests::eventually(SLACK, || relay.stats.open_connections() == 4).await);
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
    assert!(relay_tests::eventually(SLACK, || relay.stats.pending_handshakes() == 64).await);
    good_caller_works(&relay).await;
    // Served while the WebSocket pool was full, not after its handshakes timed out.
    let still = relay.stats.pending_handshakes();
    assert!(still >= 64, "the stalled handshakes still pending: {still}");
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
    // Long enough that TLS after just over half of it is surely in time, even on a loaded machine.
    let relay = TestRelay::start_with(|c| c.handshake_timeout_ms = 6_000).await;
    let over_half = ms(relay.config().handshake_timeout_ms) * 3 / 5;
    let started = tokio::time::Instant::now();
    let tcp = tokio::net::TcpStream::connect(relay.ws_addr).await.unwrap();
    // TLS in just over half the deadline, then the head in just over half again: each alone
    // would be in time.
    tokio::time::sleep(over_half).await;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls_client(&relay, b"http/1.1")));
    let mut tls = connector.connect("localhost".try_into().unwrap(), tcp).await.expect("TLS within the deadline");
    tokio::time::sleep_until(started + 2 * over_half).await;
    let head = "GET /$hc/calc?sb-hc-action=connect HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
                Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    let _ = tls.write_all(head.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(SLACK, tls.read_to_end(&mut answer)).await.expect("closed in time");
    assert!(answer.is_empty(), "answered after {:?}: {}", started.elapsed(), String::from_utf8_lossy(&answer));
}
