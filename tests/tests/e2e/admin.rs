//! The admin endpoint (`admin_listen`): `/healthz` and `/readyz` over plain HTTP, open on
//! loopback, behind a `manage` token when bound beyond; `/metrics` counting exactly what was done
//! (channel opens by transport and result, HTTP-mode answers by status, multicast cuts).
//! (Readiness through a drain: `shutdown`; in a cluster cut off from NATS: `cluster`.)

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
    // A QUIC client is connected once it has sent its last handshake message; the relay counts
    // the handshake when that message arrives. The baseline waits for the host's and the caller's.
    let quic_ok = r#"relay_handshakes_total{transport="quic",result="ok"}"#;
    let before = tokio::time::timeout(relay_tests::SLACK, async {
        loop {
            let scraped = http::scrape(relay.admin_addr).await;
            if scraped.get(quic_ok) == Some(&2.0) {
                break scraped;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the host's and the caller's handshakes counted");

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

/// Tries `attempt` until it fails, at most 10 times: what passed before, and the failure.
async fn until_refused<T, E>(mut attempt: impl AsyncFnMut() -> Result<T, E>) -> (Vec<T>, E) {
    let mut passed = Vec::new();
    while passed.len() < 10 {
        match attempt().await {
            Ok(value) => passed.push(value),
            Err(e) => return (passed, e),
        }
    }
    panic!("10 attempts in a row passed a rate of 1 a second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_exactly_the_opens_and_http_requests_refused_over_the_open_rate() {
    use relay_rpc::{ErrorCode, OpenError};
    use relay_server::AddressConfig;
    use relay_tests::https;
    use relay_tests::lab::LabClient;

    // One open a second, no burst beyond it: per QUIC connection, and per source for wss
    // senders and HTTP-mode requests together.
    let relay = TestRelay::start_with(|c| {
        c.channel_opens_per_sec = 1;
        c.channel_open_burst = 1;
        c.addresses = vec![AddressConfig { path: "web".into(), http: true, ..Default::default() }];
    })
    .await;
    let (_host, _events) = relay.serve_lab(&relay.url, "lab", "a").await;
    let rate_limited = |e: OpenError| match e {
        OpenError::Refused { code: ErrorCode::RateLimited, .. } => (),
        other => panic!("expected a refusal over the rate, got {other:?}"),
    };
    let before = http::scrape(relay.admin_addr).await;

    // Each is tried until refused: what passes before depends on the seconds gone by, so the
    // counts are checked against what the clients saw.
    let quic = relay.caller().await;
    let (quic_opened, refusal) = until_refused(async || LabClient::connect(&quic, "lab").await).await;
    rate_limited(refusal);
    let wss = relay.caller_on(&relay.ws_url).await;
    let (wss_opened, refusal) = until_refused(async || LabClient::connect(&wss, "lab").await).await;
    rate_limited(refusal);
    // No listener on `web`: a request that passes the rate is the relay's 502.
    let token = https::token(&relay, "web");
    let (http_passed, refusal) = until_refused(async || {
        let answer = https::get(&relay, "/web/x", &[("ServiceBusAuthorization", &token)]).await;
        if answer.status == 429 { Err(answer) } else { Ok(answer) }
    })
    .await;
    assert!(http_passed.iter().all(|answer| answer.status == 502), "{http_passed:?}");
    assert_eq!(refusal.status, 429, "{refusal:?}");

    let after = http::scrape(relay.admin_addr).await;
    let (quic_ok, wss_ok, http_ok) = (quic_opened.len() as f64, wss_opened.len() as f64, http_passed.len() as f64);
    for (sample, grew) in [
        (r#"relay_channels_opened_total{transport="quic",result="ok"}"#, quic_ok),
        (r#"relay_channels_opened_total{transport="quic",result="rate_limited"}"#, 1.0),
        (r#"relay_channels_opened_total{transport="websocket",result="ok"}"#, wss_ok),
        (r#"relay_channels_opened_total{transport="websocket",result="rate_limited"}"#, 1.0),
        (r#"relay_http_requests_total{status="502"}"#, http_ok),
        (r#"relay_http_requests_total{status="429"}"#, 1.0),
        ("relay_channel_open_seconds_count", quic_ok + wss_ok),
    ] {
        assert_eq!(delta(&before, &after, sample), grew, "{sample}");
    }
    drop((quic_opened, wss_opened));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_exactly_the_opens_refused_as_busy_or_by_the_host_and_the_relays_http_answers() {
    use relay_rpc::{ErrorCode, OpenError};
    use relay_server::AddressConfig;
    use relay_tests::https;
    use relay_tests::lab::LabClient;

    // A listener takes one channel at a time; `web` takes HTTP requests and has no listener.
    let relay = TestRelay::start_with(|c| {
        c.max_channels_per_listener = 1;
        c.addresses = vec![AddressConfig { path: "web".into(), http: true, ..Default::default() }];
    })
    .await;
    let (host, _events) = relay.serve_lab(&relay.url, "full", "a").await;
    // A host that refuses every channel on `picky`.
    let mut picky = host.listen("picky").await.unwrap();
    tokio::spawn(async move {
        while let Ok(incoming) = picky.accept().await {
            let _ = incoming.reject(ErrorCode::Rejected, "not today").await;
        }
    });
    let quic = relay.caller().await;
    let wss = relay.caller_on(&relay.ws_url).await;
    let before = http::scrape(relay.admin_addr).await;

    let _held = LabClient::connect(&quic, "full").await.expect("the listener's one channel");
    for caller in [&quic, &wss] {
        match LabClient::connect(caller, "full").await {
            Err(OpenError::Refused { code: ErrorCode::Busy, .. }) => {}
            other => panic!("expected a refusal as busy, got {:?}", other.map(drop)),
        }
        match caller.open_channel("picky", None).await {
            Err(OpenError::Refused { code: ErrorCode::Rejected, detail }) => assert_eq!(detail, "not today"),
            other => panic!("expected the host's refusal, got {:?}", other.map(drop)),
        }
    }
    // HTTP mode: no token, a token for another address, no listener.
    let no_token = https::get(&relay, "/web/x", &[]).await;
    assert_eq!(no_token.status, 401, "{no_token:?}");
    let elsewhere = https::get(&relay, "/web/x", &[("ServiceBusAuthorization", &https::token(&relay, "other"))]).await;
    assert_eq!(elsewhere.status, 403, "{elsewhere:?}");
    let nobody = https::get(&relay, "/web/x", &[("ServiceBusAuthorization", &https::token(&relay, "web"))]).await;
    assert_eq!(nobody.status, 502, "{nobody:?}");

    let after = http::scrape(relay.admin_addr).await;
    for (sample, grew) in [
        (r#"relay_channels_opened_total{transport="quic",result="ok"}"#, 1.0),
        (r#"relay_channels_opened_total{transport="quic",result="busy"}"#, 1.0),
        (r#"relay_channels_opened_total{transport="quic",result="refused"}"#, 1.0),
        (r#"relay_channels_opened_total{transport="websocket",result="ok"}"#, 0.0),
        (r#"relay_channels_opened_total{transport="websocket",result="busy"}"#, 1.0),
        (r#"relay_channels_opened_total{transport="websocket",result="refused"}"#, 1.0),
        (r#"relay_http_requests_total{status="401"}"#, 1.0),
        (r#"relay_http_requests_total{status="403"}"#, 1.0),
        (r#"relay_http_requests_total{status="502"}"#, 1.0),
        (r#"relay_auth_failures_total{reason="missing_token"}"#, 1.0),
        ("relay_channel_open_seconds_count", 1.0),
    ] {
        assert_eq!(delta(&before, &after, sample), grew, "{sample}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_a_multicast_subscriber_cut_for_falling_behind() {
    use crate::multicast::{ADDRESS, FeedClient, ServeFeed, Subscriber, ctx};
    use relay_server::{AddressConfig, AddressMode};

    // Two frames may wait for a subscriber: once its flow-control window is full, the third cuts it.
    let relay = TestRelay::start_with(|c| {
        c.multicast_queue_frames = 2;
        c.addresses = vec![AddressConfig { path: ADDRESS.into(), mode: AddressMode::Multicast, ..Default::default() }];
    })
    .await;
    let host = relay.host().await;
    let stalled = Subscriber { seen: Default::default(), stall: true };
    let seen = stalled.seen.clone();
    tokio::spawn(host.listen(ADDRESS).await.unwrap().serve(ServeFeed::new(stalled)));
    let caller = relay.caller().await;
    let publisher = FeedClient::connect(&caller, ADDRESS).await.unwrap();
    let before = http::scrape(relay.admin_addr).await;

    // 16 KiB events until the subscriber is cut: its first blocks it, then its stream's window
    // (quinn's default, about 1.25 MB) fills, then the two frames of its queue. At most 16 MB.
    let padding = vec![7u8; 16 * 1024];
    let mut seq = 0;
    while relay.stats.multicast_overflows() == 0 && seq < 1_000 {
        for _ in 0..50 {
            publisher.bulk(ctx(), seq, padding.clone()).await.unwrap();
            seq += 1;
        }
        relay_tests::eventually(std::time::Duration::from_millis(200), || relay.stats.multicast_overflows() > 0).await;
    }
    let cut = relay_tests::eventually(relay_tests::SLACK, || relay.stats.multicast_overflows() > 0).await;
    assert!(cut, "the stalled subscriber is still served after {seq} events of 16 KiB");
    assert_eq!(relay.stats.multicast_overflows(), 1, "one subscriber, cut once");
    // It blocks on its first event, which it may not have begun when it is cut.
    assert!(seen.lock().unwrap().len() <= 1, "the subscriber blocked: {:?}", seen.lock().unwrap());

    let after = http::scrape(relay.admin_addr).await;
    assert_eq!(delta(&before, &after, "relay_multicast_subscribers_cut_total"), 1.0);
    drop((publisher, caller, host));
}
