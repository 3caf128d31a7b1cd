//! The admin endpoint (`admin_listen`): `/healthz` and `/readyz` over plain HTTP, open on
//! loopback, behind a `manage` token when bound beyond. (Readiness through a drain: `shutdown`;
//! in a cluster cut off from NATS: `cluster`.)

use relay_proto::auth::{Right, sas_token, unix_now};
use relay_server::{KeyConfig, Secret};
use relay_tests::TestRelay;
use relay_tests::http::{self, Answer};

#[tokio::test]
async fn on_loopback_anyone_reads_health_and_readiness_and_nothing_else() {
    let relay = TestRelay::start().await;
    let admin = relay.admin_addr;
    assert!(admin.ip().is_loopback());
    assert_eq!(http::get(admin, "/healthz", &[]).await, Answer { status: 200, body: "ok\n".into() });
    assert_eq!(http::get(admin, "/readyz", &[]).await, Answer { status: 200, body: "ready\n".into() });
    let unknown = http::get(admin, "/metrics.php", &[]).await;
    assert_eq!(unknown.status, 404, "{unknown:?}");
    assert!(unknown.body.contains("/healthz and /readyz"), "says what it serves: {unknown:?}");
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
