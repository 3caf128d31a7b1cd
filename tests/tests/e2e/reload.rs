//! `SIGHUP` through the real `relay-server` binary: the config file is read again, and keys
//! (added, rotated, removed), address options and limits take effect with no connection dropped;
//! a bad file is logged and changes nothing; a listener whose key was removed loses its
//! registration at its next renewal.

use std::time::Duration;

use relay_rpc::auth::{AuthFailure, SasKeyProvider, SharedAccessKey};
use relay_rpc::{CallContext, Connection, Host, ListenError, OpenError};
use relay_tests::SLACK;
use relay_tests::lab::{LabClient, LabHost, ServeLab};
use relay_tests::relay_process::RelayProcess;

fn key(name: &str, primary: &str, secondary: Option<&str>) -> String {
    let secondary = secondary.map(|s| format!("secondary_key = \"{s}\"\n")).unwrap_or_default();
    format!("[[keys]]\nname = \"{name}\"\nprimary_key = \"{primary}\"\n{secondary}rights = [\"listen\", \"send\"]\n")
}

const CALC: &str = "[[addresses]]\npath = \"calc\"\n";
const PUBLIC: &str = "[[addresses]]\npath = \"public\"\n";
const PUBLIC_ANONYMOUS: &str = "[[addresses]]\npath = \"public\"\nanonymous_senders = true\n";

async fn connect(relay: &RelayProcess, name: &str, secret: &str) -> Connection {
    let options = relay.anonymous_options().with_shared_access_key(SharedAccessKey::new(name, secret));
    Connection::connect(&relay.url, options).await.expect("caller connects")
}

/// Serves the lab named `name` on `calc` from a host signing with `key`; returns the host and
/// the listener's outcome.
async fn serve_calc(
    relay: &RelayProcess,
    key: SharedAccessKey,
    ttl: Duration,
) -> (Host, tokio::task::JoinHandle<Result<(), ListenError>>) {
    let options = relay.anonymous_options().with_token_provider(SasKeyProvider::with_ttl(key, ttl));
    let host = Host::connect(&relay.url, options).await.expect("host connects");
    let (lab, _events) = LabHost::new("calc");
    let listener = host.listen("calc").await.expect("listens");
    (host, tokio::spawn(async move { listener.serve(ServeLab::new(lab)).await.map(drop) }))
}

fn refusal(result: Result<LabClient, OpenError>) -> AuthFailure {
    match result {
        Err(OpenError::Unauthorized { reason, .. }) => reason,
        other => panic!("expected an authorization refusal, got {other:?}"),
    }
}

async fn whoami(connection: &Connection, address: &str) -> String {
    let client = LabClient::connect(connection, address).await.expect("opens");
    client.whoami(CallContext::default()).await.expect("answers")
}

/// Sends SIGHUP and waits for the relay to log its answer; returns that line.
async fn reload(relay: &RelayProcess, needle: &str) -> String {
    let before = relay.log().len();
    relay.signal("-HUP");
    relay
        .logged_after(before, needle, SLACK)
        .await
        .unwrap_or_else(|| panic!("no {needle:?} in the log after SIGHUP: {}", relay.log()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_changes_keys_and_address_options_without_dropping_anything() {
    let config = format!("{}{}{CALC}{PUBLIC}", key("a", "a-primary", None), key("b", "b-primary", None));
    let relay = RelayProcess::start("reload", Some(&config));
    let (host, listener) = serve_calc(&relay, SharedAccessKey::new("a", "a-primary"), Duration::from_secs(600)).await;
    let (lab, _events) = LabHost::new("public");
    tokio::spawn(host.listen("public").await.expect("listens").serve(ServeLab::new(lab)));
    let caller_b = connect(&relay, "b", "b-primary").await;
    let open_b = LabClient::connect(&caller_b, "calc").await.unwrap();
    assert_eq!(open_b.whoami(CallContext::default()).await.unwrap(), "calc");
    let anonymous = Connection::connect(&relay.url, relay.anonymous_options()).await.unwrap();
    assert_eq!(refusal(LabClient::connect(&anonymous, "public").await), AuthFailure::MissingToken);

    // b removed, a's secondary rotated in, c added, public opened to anonymous senders; and a
    // setting only a restart changes.
    relay.write_config(&format!(
        "max_frame_bytes = 65536\n{}{}{CALC}{PUBLIC_ANONYMOUS}",
        key("a", "a-primary", Some("a-secondary")),
        key("c", "c-primary", None)
    ));
    let line = reload(&relay, "config reloaded").await;
    assert!(line.contains("keys (added c; removed b; changed a)"), "{line}");
    assert!(line.contains("addresses (changed public)"), "{line}");
    assert!(!line.contains("a-secondary"), "no secret in the log: {line}");
    let log = relay.log();
    assert!(log.contains("changed max_frame_bytes: takes effect after a restart"), "{log}");

    // Nothing dropped: b's open channel still calls, and the host still serves.
    assert_eq!(open_b.whoami(CallContext::default()).await.unwrap(), "calc", "the open channel survives");
    assert!(!listener.is_finished(), "the host's registration survives");
    // b's new opens are refused, on the connection it already has and on a new one.
    assert_eq!(refusal(LabClient::connect(&caller_b, "calc").await), AuthFailure::BadSignature);
    let fresh_b = connect(&relay, "b", "b-primary").await;
    assert_eq!(refusal(LabClient::connect(&fresh_b, "calc").await), AuthFailure::BadSignature);
    // c works, and a with either of its secrets.
    assert_eq!(whoami(&connect(&relay, "c", "c-primary").await, "calc").await, "calc");
    assert_eq!(whoami(&connect(&relay, "a", "a-secondary").await, "calc").await, "calc");
    assert_eq!(whoami(&connect(&relay, "a", "a-primary").await, "calc").await, "calc");
    // The address option is in force: a caller without a token may now open on public (only).
    assert_eq!(whoami(&anonymous, "public").await, "public");
    assert_eq!(refusal(LabClient::connect(&anonymous, "calc").await), AuthFailure::MissingToken);

    // A broken file: logged in one line with its reason, and the running config stays.
    relay.write_config(&format!("{}{CALC}keep_alive_ms = [not toml\n", key("d", "d-primary", None)));
    let line = reload(&relay, "config reload failed").await;
    assert!(line.contains("the previous config stays in force") && line.contains("relay.toml"), "{line}");
    assert!(line.contains("TOML parse error"), "the reason is on the line: {line}");
    assert_eq!(whoami(&connect(&relay, "c", "c-primary").await, "calc").await, "calc", "c still accepted");
    let d = connect(&relay, "d", "d-primary").await;
    assert_eq!(refusal(LabClient::connect(&d, "calc").await), AuthFailure::BadSignature, "d not added");
    // A file that parses but is invalid is refused the same way.
    relay.write_config(&format!("keep_alive_ms = 0\n{}{CALC}{PUBLIC}", key("c", "c-primary", None)));
    let line = reload(&relay, "config reload failed").await;
    assert!(line.contains("keep_alive_ms must be positive"), "{line}");
    assert_eq!(whoami(&anonymous, "public").await, "public", "public still takes anonymous senders");
    assert_eq!(whoami(&connect(&relay, "a", "a-secondary").await, "calc").await, "calc", "a still rotated");
    assert_eq!(open_b.whoami(CallContext::default()).await.unwrap(), "calc", "and the open channel still calls");
    assert!(!listener.is_finished(), "and the host still serves");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_lowers_and_raises_a_limit_for_new_opens_and_cuts_nothing_open() {
    let keys = key("a", "a-primary", None);
    let relay = RelayProcess::start("reload-limit", Some(&format!("{keys}{CALC}")));
    let (_host, listener) = serve_calc(&relay, SharedAccessKey::new("a", "a-primary"), Duration::from_secs(600)).await;
    let caller = connect(&relay, "a", "a-primary").await;
    let mut open = Vec::new();
    for _ in 0..2 {
        open.push(LabClient::connect(&caller, "calc").await.expect("opens under the default limit"));
    }

    // Lowered below what is open: new opens are refused as busy, the open channels call on.
    relay.write_config(&format!("max_channels_per_listener = 1\n{keys}{CALC}"));
    reload(&relay, "config reloaded").await;
    match LabClient::connect(&caller, "calc").await {
        Err(OpenError::Refused { code: relay_rpc::ErrorCode::Busy, .. }) => {}
        other => panic!("expected a refusal as busy, got {:?}", other.map(drop)),
    }
    for client in &open {
        assert_eq!(client.whoami(CallContext::default()).await.unwrap(), "calc", "nothing open is cut");
    }
    // One closed (whether or not the relay has seen it yet): still at the lowered limit, busy.
    drop(open.pop());
    match LabClient::connect(&caller, "calc").await {
        Err(OpenError::Refused { code: relay_rpc::ErrorCode::Busy, .. }) => {}
        other => panic!("expected a refusal as busy at the limit, got {:?}", other.map(drop)),
    }

    // Raised: a new open goes through at once.
    relay.write_config(&format!("max_channels_per_listener = 3\n{keys}{CALC}"));
    reload(&relay, "config reloaded").await;
    open.push(LabClient::connect(&caller, "calc").await.expect("opens under the raised limit"));
    open.push(LabClient::connect(&caller, "calc").await.expect("and another"));
    match LabClient::connect(&caller, "calc").await {
        Err(OpenError::Refused { code: relay_rpc::ErrorCode::Busy, .. }) => {}
        other => panic!("expected a refusal as busy at 3, got {:?}", other.map(drop)),
    }
    assert!(!listener.is_finished(), "the host's registration survives every reload");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_whose_key_was_removed_loses_its_registration_at_its_next_renewal() {
    let config =
        format!("clock_skew_secs = 0\n{}{}{CALC}", key("gone", "gone-primary", None), key("c", "c-primary", None));
    let relay = RelayProcess::start("reload-renewal", Some(&config));
    // Renewed at two thirds of its lifetime.
    let ttl = Duration::from_secs(6);
    let gone = SharedAccessKey::new("gone", "gone-primary");
    let (_host, listener) = serve_calc(&relay, gone.clone(), ttl).await;
    let registered = tokio::time::Instant::now();
    relay.write_config(&format!("clock_skew_secs = 0\n{}{CALC}", key("c", "c-primary", None)));
    reload(&relay, "config reloaded").await;
    let caller = connect(&relay, "c", "c-primary").await;
    assert_eq!(whoami(&caller, "calc").await, "calc", "registered until its next renewal");
    // Tokens are signed to the whole second: renewed between 3 s and 4 s after registering.
    assert!(registered.elapsed() < ttl / 2, "the reload came before the renewal; the machine is too slow");

    let ended = tokio::time::timeout(ttl + SLACK, listener).await.expect("the registration ends").unwrap();
    assert!(registered.elapsed() >= ttl / 2, "ended at the renewal, not before: {:?}", registered.elapsed());
    // The relay refused the renewed token: the code for a refused renewal, not for a lapse.
    assert!(matches!(ended, Err(ListenError::RenewalRefused)), "{ended:?}");
    let err = LabClient::connect(&caller, "calc").await.unwrap_err();
    assert!(matches!(err, OpenError::NoListener { .. }), "{err:?}");
    // Registering again with the removed key is refused.
    let options = relay.anonymous_options().with_shared_access_key(gone);
    let host = Host::connect(&relay.url, options).await.expect("host connects");
    let err = host.listen("calc").await.unwrap_err();
    assert!(matches!(err, ListenError::Unauthorized { reason: AuthFailure::BadSignature, .. }), "{err:?}");
}

#[tokio::test]
async fn without_a_config_file_sighup_has_nothing_to_reload() {
    let mut relay = RelayProcess::start("reload-none", None);
    let line = reload(&relay, "SIGHUP").await;
    assert!(line.contains("nothing to reload"), "{line}");
    assert!(relay.running(), "SIGHUP does not stop the relay");
    let key = SharedAccessKey::from_file(relay.data_dir().join("root.key")).unwrap();
    let options = relay.anonymous_options().with_shared_access_key(key);
    let host = Host::connect(&relay.url, options).await.expect("still serving");
    drop(host.listen("calc").await.expect("listens"));
}
