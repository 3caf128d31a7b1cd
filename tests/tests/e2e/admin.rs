//! The admin endpoint (`admin_listen`): `/healthz` and `/readyz` over plain HTTP, open on
//! loopback, behind a `manage` token when bound beyond. (Readiness through a drain: `shutdown`;
//! in a cluster cut off from NATS: `cluster`.)

use relay_proto::auth::{Right, sas_token, unix_now};
use relay_server::{KeyConfig, Secret};
use relay_tests::TestRelay;
use relay_tests::http::{self, Answer, delta};

#[tokio::test]
async fn on_loopback_anyone_reads_health_and_readiness_and_nothing_else() {
    let relay = TestRelay::start().await;
    let admin = relay.admin_addr;
    assert!(admin.ip().is_loopback());
    assert_eq!(http::get(admin, "/healthz", &[]).await, Answer { status: 200, body: "ok\n".into() });
    assert_eq!(http::get(admin, "/readyz", &[]).await, Answer { status: 200, body: "ready\n".into() });
    let unknown = http::get(admin, "/metrics.php", &[]).await;
    assert_eq!(unknown.status, 404, "{unknown:?}");
    assert!(unknown.body.contains("/healthz, /readyz and /metrics"), "says what it serves: {unknown:?}");
}

#[tokio::test]
async fn beyond_loopback_only_a_manage_token_is_answered() {
    let relay = TestRelay::start_with(|c| {
        c.admin_listen = Some("0.0.0.0:0".parse().unwrap());
        c.keys.push(KeyConfig {
            name: "senders".into(),
            primary_key: Secret::new("sender-secret"),
            secondary_key: None,
            rights: vec![Right::Send, Right::Listen],
            scope: None,
        });
    })
    .await;
    // Reached over loopback all the same: what counts is where it is bound.
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], relay.admin_addr.port()));
    let expiry = unix_now() + 600;
    let root = relay.root_key();
    let resource = format!("http://127.0.0.1:{}/", admin.port());
    let manage = sas_token(&resource, root.name(), root.secret(), expiry);
    let send_only = sas_token(&resource, "senders", "sender-secret", expiry);
    let manage_on_one_address = sas_token(&format!("{resource}calc"), root.name(), root.secret(), expiry);

    let refused = http::get(admin, "/readyz", &[]).await;
    assert_eq!(refused.status, 401, "{refused:?}");
    assert!(refused.body.contains("manage right"), "{refused:?}");
    for token in [&send_only, &manage_on_one_address] {
        let refused = http::get(admin, "/readyz", &[("authorization", token)]).await;
        assert_eq!(refused.status, 401, "{refused:?}");
    }
    let ready = http::get(admin, "/readyz", &[("authorization", &manage)]).await;
    assert_eq!(ready, Answer { status: 200, body: "ready\n".into() });
    let query = relay_proto::auth::percent::encode_component(&manage);
    let ready = http::get(admin, &format!("/healthz?token={query}"), &[]).await;
    assert_eq!(ready, Answer { status: 200, body: "ok\n".into() });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_exactly_the_opens_refusals_and_requests_made() {
    use relay_rpc::auth::SharedAccessKey;
    use relay_rpc::{Connection, OpenError};
    use relay_tests::lab::{LabClient, LabHost, ServeLab};
    use relay_tests::raw_ws::{self, Scheme};

    // A listener that never opens its rendezvous is given up after half a second.
    let relay = TestRelay::start_with(|c| c.rendezvous_timeout_ms = 500).await;
    let host = relay.host().await;
    let (lab, _events) = LabHost::new("a");
    tokio::spawn(host.listen("lab").await.unwrap().serve(ServeLab::new(lab)));
    let caller = relay.caller().await;
    let before = http::scrape(relay.admin_addr).await;

    // Over QUIC: 3 channels opened, 2 to an address without listener, 1 with a forged key, 1 to
    // a listener that does not answer.
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(LabClient::connect(&caller, "lab").await.unwrap());
    }
    for _ in 0..2 {
        let err = caller.open_channel("nobody", None).await.unwrap_err();
        assert!(matches!(err, OpenError::NoListener { .. }), "{err:?}");
    }
    let forged =
        relay.anonymous_options().with_shared_access_key(SharedAccessKey::new("RootManageSharedAccessKey", "x"));
    let stranger = Connection::connect(&relay.url, forged).await.unwrap();
    assert!(stranger.open_channel("lab", None).await.is_err());
    let mute_token = raw_ws::token(&relay, "mute", std::time::Duration::from_secs(60));
    let _mute = raw_ws::control(&relay, Scheme::Wss, "mute", &mute_token).await;
    let err = caller.open_channel("mute", None).await.unwrap_err();
    assert!(matches!(err, OpenError::NoListener { .. }), "{err:?}");
    // Over wss: 2 senders to a Hybrid Connections listener, 1 to an address without listener.
    let listen = raw_ws::token(&relay, "raw", std::time::Duration::from_secs(60));
    let mut control = raw_ws::control(&relay, Scheme::Wss, "raw", &listen).await;
    let mut senders = Vec::new();
    let url = format!("wss://127.0.0.1:{}/$hc/raw?sb-hc-action=connect", relay.ws_addr.port());
    let token = raw_ws::token(&relay, "raw", std::time::Duration::from_secs(60));
    for _ in 0..2 {
        let (sender, rendezvous) =
            tokio::join!(raw_ws::connect(&relay, &url, Some(&token)), raw_ws::accept(&relay, &mut control));
        senders.push((sender.expect("sender connects"), rendezvous));
    }
    let url = format!("wss://127.0.0.1:{}/$hc/nobody?sb-hc-action=connect", relay.ws_addr.port());
    let token = raw_ws::token(&relay, "nobody", std::time::Duration::from_secs(60));
    assert!(raw_ws::connect(&relay, &url, Some(&token)).await.is_err());
    // HTTP mode: a request to an address that does not take HTTP.
    let https = relay_tests::https::request(
        &relay,
        "GET",
        "/lab/x",
        &[("ServiceBusAuthorization", &relay_tests::https::token(&relay, "lab"))],
        Vec::new(),
    )
    .await;
    assert_eq!(https.status, 404);
    // A connection to the TLS port that does not speak TLS: a failed handshake.
    let mut garbage = tokio::net::TcpStream::connect(relay.ws_addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut garbage, b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::io::AsyncReadExt::read_to_end(&mut garbage, &mut rest),
    )
    .await;

    let after = http::scrape(relay.admin_addr).await;
    for (sample, grew) in [
        (r#"relay_channels_opened_total{transport="quic",result="ok"}"#, 3.0),
        (r#"relay_channels_opened_total{transport="quic",result="no_listener"}"#, 2.0),
        (r#"relay_channels_opened_total{transport="quic",result="unauthorized"}"#, 1.0),
        (r#"relay_channels_opened_total{transport="quic",result="timeout"}"#, 1.0),
        (r#"relay_channels_opened_total{transport="websocket",result="ok"}"#, 2.0),
        (r#"relay_channels_opened_total{transport="websocket",result="no_listener"}"#, 1.0),
        (r#"relay_auth_failures_total{reason="bad_signature"}"#, 1.0),
        (r#"relay_http_requests_total{status="404"}"#, 1.0),
        ("relay_channel_open_seconds_count", 5.0),
        // The forged key's connection; two control channels, two senders and their rendezvous,
        // the sender to nobody, the HTTP request; the connection that spoke no TLS.
        (r#"relay_handshakes_total{transport="quic",result="ok"}"#, 1.0),
        (r#"relay_handshakes_total{transport="websocket",result="ok"}"#, 8.0),
        (r#"relay_handshakes_total{transport="websocket",result="failed"}"#, 1.0),
    ] {
        assert_eq!(delta(&before, &after, sample), grew, "{sample}");
    }
    assert_eq!(after.get(r#"relay_listeners{transport="quic"}"#), Some(&1.0));
    assert_eq!(after.get(r#"relay_listeners{transport="websocket"}"#), Some(&2.0));
    assert_eq!(after.get("relay_open_channels"), Some(&5.0), "3 over QUIC, 2 over wss");
    assert!(after.get("relay_process_resident_memory_bytes").is_some_and(|rss| *rss > 1e6));
    assert!(after.get("relay_process_open_fds").is_some_and(|fds| *fds > 3.0));
    drop((open, senders, control));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_bytes_are_counted_by_the_side_they_went_to() {
    use bytes::Bytes;
    use relay_rpc::http::{HttpRequest, ResponseHead};

    let relay = TestRelay::start().await;
    let host = relay.host().await;
    let mut listener = host.listen_http("sink").await.unwrap();
    tokio::spawn(async move {
        let incoming = listener.accept().await.expect("a request");
        let (mut request, response) = HttpRequest::accept(incoming).await.expect("an http request");
        let body = request.read_to_end(1 << 20).await.expect("the body");
        assert_eq!(body.len(), 100_000);
        let answer = Bytes::from(vec![9; 30_000]);
        response.send_whole(ResponseHead { status: 200, headers: Vec::new() }, answer).await.expect("answered");
    });
    let before = http::scrape(relay.admin_addr).await;
    let token = relay_tests::https::token(&relay, "sink");
    let answer =
        relay_tests::https::request(&relay, "PUT", "/sink/x", &[("ServiceBusAuthorization", &token)], vec![1; 100_000])
            .await;
    assert_eq!((answer.status, answer.body.len()), (200, 30_000), "{answer:?}");
    let after = http::scrape(relay.admin_addr).await;
    assert_eq!(delta(&before, &after, r#"relay_relayed_bytes_total{direction="to_host"}"#), 100_000.0);
    assert_eq!(delta(&before, &after, r#"relay_relayed_bytes_total{direction="to_caller"}"#), 30_000.0);
}
