//! Authorization through a real relay: every attack is refused with its own typed reason and
//! the relay keeps serving others; tokens renew; expired listeners end; secrets never leak.

use std::time::Duration;

use relay_rpc::auth::{AuthFailure, Right, SasKeyProvider, SharedAccessKey, sas_token, unix_now};
use relay_rpc::{CallContext, ConnectOptions, Connection, Host, ListenError, OpenError};
use relay_server::{AddressConfig, KeyConfig, Secret};
use relay_tests::lab::{LabClient, LabHost, ServeLab};
use relay_tests::{SLACK, TestRelay};

const ROOT: &str = "RootManageSharedAccessKey";

fn key(name: &str, rights: &[Right], scope: Option<&str>) -> KeyConfig {
    KeyConfig {
        name: name.into(),
        primary_key: Secret::new(format!("{name}-secret")),
        secondary_key: None,
        rights: rights.to_vec(),
        scope: scope.map(Into::into),
    }
}

async fn relay() -> TestRelay {
    TestRelay::start_with(|c| {
        c.keys = vec![key("listeners", &[Right::Listen], None), key("senders", &[Right::Send], None)];
        c.addresses = vec![AddressConfig { path: "public".into(), anonymous_senders: true, ..Default::default() }];
    })
    .await
}

/// Serves the lab on `address` with the root key.
async fn serve(relay: &TestRelay, address: &str) -> Host {
    let host = relay.host().await;
    let (lab, _events) = LabHost::new(address);
    tokio::spawn(host.listen(address).await.unwrap().serve(ServeLab::new(lab)));
    host
}

async fn open_with(relay: &TestRelay, address: &str, token: Option<String>) -> Result<LabClient, OpenError> {
    let options = match token {
        Some(token) => relay.anonymous_options().with_token(token),
        None => relay.anonymous_options(),
    };
    let connection = Connection::connect(&relay.url, options).await.unwrap();
    LabClient::connect(&connection, address).await
}

fn reason(result: Result<LabClient, OpenError>) -> AuthFailure {
    match result {
        Err(OpenError::Unauthorized { reason, .. }) => reason,
        other => panic!("expected an authorization refusal, got {other:?}"),
    }
}

async fn others_still_served(relay: &TestRelay) {
    let client = LabClient::connect(&relay.caller().await, "calc").await.unwrap();
    assert_eq!(client.whoami(CallContext::default()).await.unwrap(), "calc");
}

#[tokio::test]
async fn callers_are_refused_with_distinct_reasons() {
    let relay = relay().await;
    let _calc = serve(&relay, "calc").await;
    let _evil = serve(&relay, "calc-evil").await;
    let root = relay.root_key();
    let port = relay.addr.port();
    let signed = |uri: &str, name: &str, key: &str, expiry: u64| Some(sas_token(uri, name, key, expiry));
    let soon = unix_now() + 600;
    let calc_uri = format!("quic://127.0.0.1:{port}/calc");

    assert_eq!(reason(open_with(&relay, "calc", None).await), AuthFailure::MissingToken);
    assert_eq!(
        reason(open_with(&relay, "calc", Some("SharedAccessSignature garbage".into())).await),
        AuthFailure::Malformed
    );
    let forged = signed(&calc_uri, ROOT, "a-guessed-key", soon);
    assert_eq!(reason(open_with(&relay, "calc", forged).await), AuthFailure::BadSignature);
    let good = sas_token(&calc_uri, ROOT, root.secret(), soon);
    let tampered = good.replace(&format!("se={soon}"), &format!("se={}", soon + 100_000));
    assert_eq!(reason(open_with(&relay, "calc", Some(tampered)).await), AuthFailure::BadSignature);
    let expired = signed(&calc_uri, ROOT, root.secret(), unix_now() - 600);
    assert_eq!(reason(open_with(&relay, "calc", expired).await), AuthFailure::Expired);
    let listen_only = signed(&calc_uri, "listeners", "listeners-secret", soon);
    assert_eq!(reason(open_with(&relay, "calc", listen_only).await), AuthFailure::WrongRight);
    // Prefix tricks: a token for `calc` does not open `calc-evil`; traversal is refused, not normalised.
    assert_eq!(reason(open_with(&relay, "calc-evil", Some(good.clone())).await), AuthFailure::OutOfScope);
    let traversal = signed(&format!("quic://127.0.0.1:{port}/calc/../calc-evil"), ROOT, root.secret(), soon);
    assert_eq!(reason(open_with(&relay, "calc-evil", traversal).await), AuthFailure::Malformed);
    let encoded = signed(&format!("quic://127.0.0.1:{port}/calc/%2e%2e/calc-evil"), ROOT, root.secret(), soon);
    assert_eq!(reason(open_with(&relay, "calc-evil", encoded).await), AuthFailure::Malformed);
    let other_host = signed("quic://relay.evil.example:7443/calc", ROOT, root.secret(), soon);
    assert_eq!(reason(open_with(&relay, "calc", other_host).await), AuthFailure::OutOfScope);
    let oversize = format!("{good}{}", "A".repeat(5000));
    let err = open_with(&relay, "calc", Some(oversize)).await.unwrap_err();
    assert!(matches!(err, OpenError::Refused { code: relay_rpc::ErrorCode::BadRequest, .. }), "{err:?}");

    // The right token works, below its path too, and with any scheme and port in its audience.
    assert!(open_with(&relay, "calc", Some(good)).await.is_ok());
    let sb = signed("sb://localhost/calc", "senders", "senders-secret", soon);
    assert!(open_with(&relay, "calc", sb).await.is_ok());
    others_still_served(&relay).await;
}

#[tokio::test]
async fn listeners_are_refused_too_and_anonymous_senders_need_no_token() {
    let relay = relay().await;
    let _calc = serve(&relay, "calc").await;
    let port = relay.addr.port();
    let listen = |token: Option<String>| {
        let options = match token {
            Some(t) => relay.anonymous_options().with_token(t),
            None => relay.anonymous_options(),
        };
        let url = relay.url.clone();
        async move { Host::connect(&url, options).await.unwrap().listen("public").await.map(|_| ()) }
    };
    let listen_reason = |r: Result<(), ListenError>| match r {
        Err(ListenError::Unauthorized { reason, .. }) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert_eq!(listen_reason(listen(None).await), AuthFailure::MissingToken, "listeners always need a token");
    let send_only = sas_token(&format!("quic://localhost:{port}/public"), "senders", "senders-secret", unix_now() + 60);
    assert_eq!(listen_reason(listen(Some(send_only)).await), AuthFailure::WrongRight);

    let _public = serve(&relay, "public").await;
    let client = open_with(&relay, "public", None).await.expect("anonymous senders need no token on `public`");
    assert_eq!(client.whoami(CallContext::default()).await.unwrap(), "public");
    assert_eq!(reason(open_with(&relay, "calc", None).await), AuthFailure::MissingToken, "but only there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_renew_tokens_and_unrenewed_listeners_end_as_expired() {
    let relay = TestRelay::start_with(|c| c.clock_skew_secs = 0).await;
    let root = relay.root_key();
    let lifetime = Duration::from_secs(2);
    let renewing = Host::connect(
        &relay.url,
        relay.anonymous_options().with_token_provider(SasKeyProvider::with_ttl(root.clone(), lifetime)),
    )
    .await
    .unwrap();
    let (lab, _events) = LabHost::new("renewing");
    tokio::spawn(renewing.listen("renewing").await.unwrap().serve(ServeLab::new(lab)));
    let registered = tokio::time::Instant::now();

    let fixed = sas_token(&format!("{}/fixed", relay.url), ROOT, root.secret(), unix_now() + lifetime.as_secs());
    let fixed_host = Host::connect(&relay.url, relay.anonymous_options().with_token(fixed)).await.unwrap();
    let (lab, _events) = LabHost::new("fixed");
    // Ended by its token's expiry, not left registered until the connection goes.
    let ended =
        tokio::time::timeout(lifetime + SLACK, fixed_host.listen("fixed").await.unwrap().serve(ServeLab::new(lab)))
            .await
            .expect("the listener ends once its token expires");
    assert!(matches!(ended, Err(ListenError::TokenExpired)), "{ended:?}");

    // The renewing host outlives two lifetimes of its tokens.
    tokio::time::sleep_until(registered + 2 * lifetime + lifetime / 4).await;
    let client = LabClient::connect(&relay.caller().await, "renewing").await.unwrap();
    assert_eq!(client.whoami(CallContext::default()).await.unwrap(), "renewing", "still registered after 2 lifetimes");
}

#[tokio::test]
async fn secrets_never_reach_logs_or_debug_output() {
    let captured = relay_tests::CapturedLogs::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("trace")
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let relay = TestRelay::start_with(|c| c.keys = vec![key("senders", &[Right::Send], None)]).await;
    let root = relay.root_key();
    let _calc = serve(&relay, "calc").await;
    let token = sas_token(&format!("{}/calc", relay.url), ROOT, root.secret(), unix_now() + 60);
    let client = open_with(&relay, "calc", Some(token.clone())).await.unwrap();
    client.whoami(CallContext::default()).await.unwrap();
    let forged = sas_token(&format!("{}/calc", relay.url), ROOT, "guess", unix_now() + 60);
    // Refused, so the relay checked (and would log about) the forged token.
    assert_eq!(reason(open_with(&relay, "calc", Some(forged.clone())).await), AuthFailure::BadSignature);

    let signature = |t: &str| t[t.find("sig=").unwrap() + 4..t.find("&se=").unwrap()].to_owned();
    let secrets = [root.secret().to_owned(), "senders-secret".to_owned(), signature(&token), signature(&forged)];
    let logs = captured.text();
    assert!(logs.contains("listener registered"), "the capture works");
    let options = ConnectOptions::new().with_token(token.clone()).with_shared_access_key(root.clone());
    let debug = [
        format!("{options:?}"),
        format!("{root:?}"),
        format!("{:?}", SharedAccessKey::parse(&format!("SharedAccessKeyName=x;SharedAccessKey={}", root.secret()))),
        format!("{:?}", relay_rpc::auth::SasToken::parse(&token).unwrap()),
        format!("{:?}", relay_rpc::auth::StaticToken::new(token.clone())),
        format!("{:?}", key("senders", &[Right::Send], None)),
    ];
    for secret in &secrets {
        assert!(!logs.contains(secret.as_str()), "a secret reached the logs");
        for d in &debug {
            assert!(!d.contains(secret.as_str()), "a secret reached Debug output: {d}");
        }
    }
}

#[tokio::test]
async fn tokens_for_empty_paths_or_living_too_long_are_refused() {
    // Regression (issue 19): `quic://host//` and `quic://host/$hc/` once covered the whole
    // namespace, and a token could live for years.
    let relay = relay().await;
    let _calc = serve(&relay, "calc").await;
    let root = relay.root_key();
    let port = relay.addr.port();
    let soon = unix_now() + 600;
    for uri in [format!("quic://127.0.0.1:{port}//"), format!("wss://127.0.0.1:{port}/$hc/")] {
        let token = sas_token(&uri, ROOT, root.secret(), soon);
        assert_eq!(reason(open_with(&relay, "calc", Some(token)).await), AuthFailure::Malformed, "{uri}");
    }
    let calc_uri = format!("quic://127.0.0.1:{port}/calc");
    let long = sas_token(&calc_uri, ROOT, root.secret(), unix_now() + 30 * 24 * 3600);
    assert_eq!(reason(open_with(&relay, "calc", Some(long)).await), AuthFailure::Malformed);
    let six_days = sas_token(&calc_uri, ROOT, root.secret(), unix_now() + 6 * 24 * 3600);
    assert!(open_with(&relay, "calc", Some(six_days)).await.is_ok(), "within the default week");
    let namespace = sas_token(&format!("quic://127.0.0.1:{port}/"), ROOT, root.secret(), soon);
    assert!(open_with(&relay, "calc", Some(namespace)).await.is_ok(), "the namespace root covers all");
    others_still_served(&relay).await;
}
