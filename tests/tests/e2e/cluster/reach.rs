//! A caller on one node reaches hosts, listeners and ports on another.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use relay_proto::ErrorCode;
use relay_rpc::{Connection, Host, OpenError};
use relay_tests::cluster::{ClusterNode, settle};
use relay_tests::lab::{LabClient, LabHost, ServeLab};
use relay_tests::nats::TestNats;
use relay_tests::{SLACK, temp_dir};

use super::{Heartbeats, ctx, lab_once_known, serve_lab};
use crate::multicast::{self, FeedClient, ServeFeed, Subscriber};

#[tokio::test]
async fn a_caller_on_one_node_calls_a_host_on_another_and_the_bytes_skip_the_host_node() {
    let nats = TestNats::start();
    let data = temp_dir("cluster-data");
    let a = ClusterNode::start(&nats.url(), "cross", &data);
    let b = ClusterNode::start(&nats.url(), "cross", &data);
    let heartbeats = Heartbeats::watch(&nats, "cross").await;
    let _host = serve_lab(&a, "lab", "on-a").await;

    let caller = Connection::connect(&b.url, b.options()).await.expect("caller connects to node b");
    let client = lab_once_known(&caller, "lab").await;
    assert_eq!(client.whoami(ctx()).await.unwrap(), "on-a", "served by the host on node a");
    assert_eq!(client.first_even(ctx(), vec![1, 2]).await.unwrap(), Some(2));
    // Several channels, each opened through node a's listener.
    for _ in 0..5 {
        let other = LabClient::connect(&caller, "lab").await.expect("another channel opens");
        assert_eq!(other.check(ctx(), 3).await.unwrap(), Ok(3));
    }

    // A caller over Hybrid Connections (wss) on node b reaches the QUIC host on node a too.
    let ws_caller = Connection::connect(&b.ws_url, b.options()).await.expect("wss caller connects to node b");
    let over_wss = LabClient::connect(&ws_caller, "lab").await.expect("a channel opens over wss");
    assert_eq!(over_wss.whoami(ctx()).await.unwrap(), "on-a");

    // The host checks the caller's contract from node b as from its own node: a caller of
    // another contract is refused, naming the mismatch, over QUIC and over wss.
    for other in [&caller, &ws_caller] {
        let err = calculator::CalculatorClient::connect(other, "lab").await.unwrap_err();
        assert!(matches!(&err, OpenError::ContractMismatch(detail) if !detail.is_empty()), "{err:?}");
    }

    // An address with no listener anywhere: refused at once, as on a single node.
    let started = Instant::now();
    let err = LabClient::connect(&caller, "nowhere").await.unwrap_err();
    assert!(matches!(err, OpenError::NoListener { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(1), "refused after {:?}", started.elapsed());

    // A bulk transfer: 8 MiB each way through node b; node a relays none of it.
    let a_before = heartbeats.next_from(&a.url).await.relayed_bytes;
    let b_before = heartbeats.next_from(&b.url).await.relayed_bytes;
    let mib: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    for _ in 0..8 {
        let reversed = client.reverse(ctx(), mib.clone()).await.unwrap();
        assert_eq!(reversed.len(), mib.len());
    }
    let a_after = heartbeats.next_from(&a.url).await.relayed_bytes;
    let b_after = heartbeats.next_from(&b.url).await.relayed_bytes;
    assert!(b_after - b_before >= 16 * 1024 * 1024, "node b relayed {} bytes", b_after - b_before);
    assert!(a_after - a_before < 64 * 1024, "node a relayed {} bytes of a transfer it is not on", a_after - a_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hybrid_connections_listeners_on_one_node_take_callers_on_another_at_a_rendezvous_there() {
    let nats = TestNats::start();
    let data = temp_dir("cluster-data");
    let a = ClusterNode::start(&nats.url(), "hc", &data);
    let b = ClusterNode::start(&nats.url(), "hc", &data);
    let heartbeats = Heartbeats::watch(&nats, "hc").await;

    // A Rust host over wss on node a: callers on node b, over QUIC and over wss, reach it.
    let host = Host::connect(&a.ws_url, a.options()).await.expect("wss host connects to node a");
    let (lab, _events) = LabHost::new("wss-on-a");
    tokio::spawn(host.listen("lab").await.expect("listens").serve(ServeLab::new(lab)));
    let quic_caller = Connection::connect(&b.url, b.options()).await.expect("caller connects to node b");
    let client = lab_once_known(&quic_caller, "lab").await;
    assert_eq!(client.whoami(ctx()).await.unwrap(), "wss-on-a");
    let ws_caller = Connection::connect(&b.ws_url, b.options()).await.expect("wss caller connects to node b");
    let over_wss = LabClient::connect(&ws_caller, "lab").await.expect("a channel opens over wss");
    assert_eq!(over_wss.first_even(ctx(), vec![3, 4]).await.unwrap(), Some(4));

    // The listener opened its rendezvous on node b: node a relays none of a bulk transfer.
    let a_before = heartbeats.next_from(&a.url).await.relayed_bytes;
    let mib: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    for _ in 0..4 {
        assert_eq!(client.reverse(ctx(), mib.clone()).await.unwrap().len(), mib.len());
    }
    let a_after = heartbeats.next_from(&a.url).await.relayed_bytes;
    assert!(a_after - a_before < 64 * 1024, "node a relayed {} bytes of a transfer it is not on", a_after - a_before);

    // Azure's own listener, hyco-ws, on node a: it is sent an accept naming node b, and a Rust
    // caller on node b talks to it.
    let key = relay_rpc::auth::SharedAccessKey::from_file(data.join("root.key")).expect("root key");
    let port = a.ws_url.rsplit(':').next().expect("a port");
    let token = relay_rpc::auth::sas_token(
        &format!("http://127.0.0.1:{port}/hyco"),
        key.name(),
        key.secret(),
        relay_rpc::auth::unix_now() + 3600,
    );
    let listen_url = format!("{}/$hc/hyco?sb-hc-action=listen", a.ws_url);
    let mut hyco =
        relay_tests::node::NodeScript::spawn("hc-listener.js", &[&listen_url, &token], &data.join("cert.pem"));
    hyco.expect("listening", SLACK);
    let deadline = Instant::now() + settle();
    let mut channel = loop {
        match quic_caller.open_channel("hyco", None).await {
            Ok(channel) => break channel,
            Err(OpenError::NoListener { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("no channel to the hyco-ws listener: {e:?}"),
        }
    };
    let connection = hyco.expect("connection", SLACK);
    let address = connection["address"].as_str().expect("an accept address");
    assert!(address.starts_with(&format!("{}/$hc/hyco?", b.ws_url)), "the rendezvous is on node b: {address}");
    let hello = tokio::time::timeout(SLACK, channel.next()).await.expect("in time").expect("a frame").expect("ok");
    assert_eq!(&hello[..], b"hello from hyco-ws");
    futures::SinkExt::send(&mut channel, bytes::Bytes::from_static(&[1, 2, 3])).await.expect("sent");
    let reply = tokio::time::timeout(SLACK, channel.next()).await.expect("in time").expect("a frame").expect("ok");
    assert_eq!(&reply[..], &[3, 2, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_forwarded_from_one_node_is_reached_through_another() {
    use clap::Parser as _;
    use relay_forward::{Cli, Command, Connector, Forwarder};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let nats = TestNats::start();
    let data = temp_dir("cluster-data");
    let a = ClusterNode::start(&nats.url(), "ports", &data);
    let b = ClusterNode::start(&nats.url(), "ports", &data);
    let (echo, _echoed) = crate::forward::echo_server().await;
    let (echo, data_dir) = (echo.to_string(), data.to_str().expect("utf-8 path").to_owned());
    let parse = |args: &[&str]| {
        Cli::try_parse_from(std::iter::once("relay").chain(args.iter().copied())).expect("arguments parse").command
    };
    // `relay forward` on node a, once over QUIC and once over wss; `relay connect` on node b.
    for (address, forward_url) in [("ssh-quic", &a.url), ("ssh-wss", &a.ws_url)] {
        let Command::Forward(args) =
            parse(&["forward", "--relay", forward_url, "--address", address, "--to", &echo, "--data-dir", &data_dir])
        else {
            unreachable!("a forward command")
        };
        let forwarder = Forwarder::start(&args).await.expect("forwarder starts on node a");
        tokio::spawn(async move { forwarder.run(std::future::pending()).await.expect("forwarder runs") });
        let Command::Connect(args) = parse(&[
            "connect",
            "--relay",
            &b.url,
            "--address",
            address,
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &data_dir,
        ]) else {
            unreachable!("a connect command")
        };
        let connector = Connector::start(&args).await.expect("connector starts on node b");
        let local = connector.local_addr();
        tokio::spawn(connector.run(std::future::pending()));

        // 4 MiB through each way, once node b knows of the forwarder's registration.
        let sent: Vec<u8> = (0..4 * 1024 * 1024).map(|i| (i % 253) as u8).collect();
        let deadline = Instant::now() + settle();
        let echoed = loop {
            // Until node b knows the address, the connector resets each connection it takes, and
            // the reset may come before `connect` returns.
            let mut socket = match tokio::net::TcpStream::connect(local).await {
                Ok(socket) => socket,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Err(e) => panic!("{address}: cannot connect to the connector: {e}"),
            };
            let (mut read, mut write) = socket.split();
            let (written, echoed) = tokio::join!(
                async {
                    write.write_all(&sent).await?;
                    write.shutdown().await
                },
                async {
                    let mut echoed = Vec::new();
                    tokio::time::timeout(settle(), read.read_to_end(&mut echoed)).await.map(|_| echoed)
                },
            );
            match (written, echoed) {
                (Ok(()), Ok(echoed)) if !echoed.is_empty() => break echoed,
                _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
                other => panic!("{address}: no echo through node b within {:?}: {other:?}", settle()),
            }
        };
        assert!(echoed == sent, "{address}: {} bytes echoed of {}", echoed.len(), sent.len());
    }
}

/// A multicast subscriber on `url` (of `node`); returns its host and what it has seen.
async fn subscribe(node: &ClusterNode, url: &str, stall: bool) -> (Host, Arc<Mutex<Vec<u64>>>) {
    let host = Host::connect(url, node.options()).await.expect("subscriber connects");
    let subscriber = Subscriber { seen: Arc::default(), stall };
    let seen = subscriber.seen.clone();
    tokio::spawn(host.listen(multicast::ADDRESS).await.expect("listens").serve(ServeFeed::new(subscriber)));
    (host, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_reaches_subscribers_on_every_node_in_order_and_a_stalled_one_is_cut_alone() {
    let nats = TestNats::start();
    let data = temp_dir("cluster-data");
    let config = format!("[[addresses]]\npath = \"{}\"\nmode = \"multicast\"\n", multicast::ADDRESS);
    let a = ClusterNode::start_with(&nats.url(), "events", &data, &config);
    let b = ClusterNode::start_with(&nats.url(), "events", &data, &config);
    let healthy =
        [subscribe(&a, &a.url, false).await, subscribe(&a, &a.ws_url, false).await, subscribe(&b, &b.url, false).await];
    let (_stalled_host, stalled) = subscribe(&a, &a.url, true).await;
    let caller = Connection::connect(&b.url, b.options()).await.expect("publisher connects to node b");
    let publisher =
        FeedClient::connect(&caller, multicast::ADDRESS).await.expect("a multicast address takes publishers");

    // Node b learns of node a's subscribers within a few heartbeats; events go out meanwhile,
    // and a subscriber gets them from when it is found on.
    let mut seq = 0;
    let deadline = Instant::now() + settle();
    while !healthy.iter().all(|(_, seen)| multicast::len(seen) > 0) || multicast::len(&stalled) == 0 {
        assert!(Instant::now() < deadline, "subscribers on node a not reached within {:?}", settle());
        publisher.event(multicast::ctx(), seq).await.unwrap();
        seq += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Then 24 MiB in 8 KiB events: far past the stalled subscriber's window and its queue on
    // node b (4 MiB), at the healthy subscribers' pace.
    let padding = vec![7u8; 8 * 1024];
    for _ in 0..30 {
        for _ in 0..100 {
            publisher.bulk(multicast::ctx(), seq, padding.clone()).await.unwrap();
            seq += 1;
        }
        let caught_up = relay_tests::eventually(Duration::from_secs(20), || {
            healthy.iter().all(|(_, seen)| seen.lock().unwrap().last() == Some(&(seq - 1)))
        })
        .await;
        assert!(caught_up, "healthy subscribers behind at {seq}");
    }
    for (i, (_, seen)) in healthy.iter().enumerate() {
        let seen = seen.lock().unwrap();
        let first = seen[0];
        assert_eq!(*seen, (first..seq).collect::<Vec<_>>(), "subscriber {i}: every event from its first, in order");
    }
    assert_eq!(stalled.lock().unwrap().len(), 1, "the stalled subscriber got one event and blocked");
    let cut = b.log_text().contains("multicast subscriber too slow; cut");
    assert!(cut, "node b did not cut the stalled subscriber; its log: {}", b.log_text());
}

#[tokio::test]
async fn channels_are_spread_round_robin_over_the_listeners_of_every_node() {
    let nats = TestNats::start();
    let data = temp_dir("cluster-data");
    let a = ClusterNode::start(&nats.url(), "spread", &data);
    let b = ClusterNode::start(&nats.url(), "spread", &data);
    let _host_a = serve_lab(&a, "lab", "on-a").await;
    let _host_b = serve_lab(&b, "lab", "on-b").await;
    let caller = Connection::connect(&b.url, b.options()).await.expect("caller connects to node b");
    // Until node b's view holds node a's listener, every channel goes to node b's own.
    let deadline = Instant::now() + settle();
    loop {
        let client = LabClient::connect(&caller, "lab").await.expect("a channel opens");
        if client.whoami(ctx()).await.unwrap() == "on-a" {
            break;
        }
        assert!(Instant::now() < deadline, "node b never routed to node a's listener");
    }
    let (mut on_a, mut on_b) = (0, 0);
    for _ in 0..60 {
        let client = LabClient::connect(&caller, "lab").await.expect("a channel opens");
        match client.whoami(ctx()).await.unwrap().as_str() {
            "on-a" => on_a += 1,
            "on-b" => on_b += 1,
            other => panic!("served by {other}"),
        }
    }
    // One listener per node: each takes half, within ±30%.
    assert!((21..=39).contains(&on_a) && (21..=39).contains(&on_b), "on a: {on_a}, on b: {on_b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_request_to_one_node_reaches_a_hyco_https_listener_on_another_over_a_rendezvous_there() {
    use relay_proto::auth::{sas_token, unix_now};
    use relay_tests::https::{Connection as Https, sha256_hex};

    let nats = TestNats::start();
    let data = temp_dir("cluster-data");
    let web = "[[addresses]]\npath = \"web\"\nhttp = true\n";
    let a = ClusterNode::start_with(&nats.url(), "http", &data, web);
    let b = ClusterNode::start_with(&nats.url(), "http", &data, web);
    let root = relay_rpc::auth::SharedAccessKey::from_file(data.join("root.key")).expect("root key");
    let token = |audience: &str| sas_token(audience, root.name(), root.secret(), unix_now() + 3600);
    let listen = token("http://127.0.0.1/web");
    let url = format!("{}/$hc/web?sb-hc-action=listen", a.ws_url);
    let mut listener =
        relay_tests::node::NodeScript::spawn("https-listener.js", &[&url, &listen], &data.join("cert.pem"));
    listener.expect("listening", Duration::from_secs(30));
    let send = token("https://127.0.0.1/web");
    let b_addr: std::net::SocketAddr = b.ws_url.trim_start_matches("wss://").parse().expect("node b's address");

    // Once node b knows of the listener: a GET, then a body too large for a control channel.
    let deadline = Instant::now() + settle();
    let hello = loop {
        let response = Https::open_to(b_addr, &data.join("cert.pem"))
            .await
            .send("GET", "/web/hello?x=1", &[("ServiceBusAuthorization", &send)], Vec::new())
            .await;
        if response.status != 502 || Instant::now() > deadline {
            break response;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!((hello.status, hello.text()), (200, "hello GET".to_owned()), "{hello:?}");
    assert_eq!(hello.header("x-echo-url"), Some("/web/hello?x=1"));
    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let echo = Https::open_to(b_addr, &data.join("cert.pem"))
        .await
        .send("POST", "/web/echo", &[("ServiceBusAuthorization", &send)], body.clone())
        .await;
    assert_eq!(echo.status, 200, "{echo:?}");
    let json: serde_json::Value = serde_json::from_str(&echo.text()).expect("json");
    assert_eq!(json["sha256"], sha256_hex(&body), "{json}");
}

#[tokio::test]
async fn a_hosts_incoming_channel_limit_counts_its_channels_from_every_node() {
    let nats = TestNats::start();
    let data = temp_dir("cluster-data");
    let a = ClusterNode::start(&nats.url(), "limit", &data);
    let b = ClusterNode::start(&nats.url(), "limit", &data);
    let host = Host::connect(&a.url, a.options().with_max_incoming_channels(2)).await.expect("host connects");
    let (lab, _events) = LabHost::new("on-a");
    tokio::spawn(host.listen("lab").await.expect("listens").serve(ServeLab::new(lab)));
    let caller_a = Connection::connect(&a.url, a.options()).await.expect("caller connects to node a");
    let caller_b = Connection::connect(&b.url, b.options()).await.expect("caller connects to node b");

    // One channel through its own node (a stream the relay opens), one through node b (a
    // rendezvous the host dials): two of two, whichever way they came.
    let local = LabClient::connect(&caller_a, "lab").await.expect("a channel through node a");
    let remote = lab_once_known(&caller_b, "lab").await;
    for caller in [&caller_a, &caller_b] {
        let err = LabClient::connect(caller, "lab").await.unwrap_err();
        assert!(matches!(err, OpenError::Refused { code: ErrorCode::Busy, .. }), "{err:?}");
    }
    // A channel that ends frees its place for a caller on either node.
    drop(remote);
    let deadline = Instant::now() + SLACK;
    let again = loop {
        match LabClient::connect(&caller_b, "lab").await {
            Ok(client) => break client,
            Err(OpenError::Refused { code: ErrorCode::Busy, .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the freed place was not taken within {SLACK:?}: {e:?}"),
        }
    };
    assert_eq!(again.whoami(ctx()).await.unwrap(), "on-a");
    assert_eq!(local.whoami(ctx()).await.unwrap(), "on-a");
}
