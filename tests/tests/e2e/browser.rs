//! Issue #18 in a real browser: a headless Chromium page is a Hybrid Connections sender (the
//! WebSocket API, the token in `sb-hc-token`), through a real relay, over `ws://` and `wss://`, to
//! a standard listener (tokio-tungstenite). Whichever end closes, the page sees a clean close
//! (`wasClean`) with the code and reason the closing end gave, never 1006.
//!
//! CORS, from pages of two real origins (`http://127.0.0.1:PORT`, local servers): a page of an
//! address's allowed origin calls a hyco-https listener through the relay with `fetch` (a
//! preflighted JSON POST with the token header), calls a typed contract served by a Rust host
//! as JSON, reads the relay's own 401, and is a WebSocket sender; a page of another origin gets
//! none of it.
//!
//! Needs Node.js and Chromium (`apt-get install chromium`; `CHROMIUM` names another binary):
//! without them this test fails, it does not skip.

use std::cell::Cell;
use std::convert::Infallible;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use relay_proto::auth::percent::encode_component as percent_encode;
use relay_server::AddressConfig;
use relay_tests::node::{https_listener, node_dir};
use relay_tests::raw_ws::{self, Ending, Scheme, close_frame};
use relay_tests::{TestRelay, https};
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(10);
/// How long the browser script may take, launching Chromium included (on a fresh machine under
/// load, a launch alone can take seconds).
const BROWSER_RUN: Duration = Duration::from_secs(90);
/// How long a listener waits for the browser's first sender: longer than the browser may run,
/// so that a browser that fails reports its own output rather than the listener timing out.
const FIRST_SENDER: Duration = Duration::from_secs(100);

/// The browser binary, or a failure that says how to get one.
fn chromium() -> PathBuf {
    let path = PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    assert!(
        path.exists(),
        "no browser at {} (install Debian's chromium: apt-get install chromium, or set CHROMIUM)",
        path.display()
    );
    path
}

/// What the page saw of one WebSocket.
#[derive(Debug, serde::Deserialize)]
struct PageSaw {
    echoed: Option<String>,
    #[serde(rename = "wasClean")]
    was_clean: Option<bool>,
    code: Option<u16>,
    reason: Option<String>,
    error: Option<String>,
}

/// Runs `node SCRIPT ARGS...` (a script of `tests/node` driving the browser), within
/// [`BROWSER_RUN`]; the JSON lines it printed.
async fn in_browser<T: serde::de::DeserializeOwned>(script: &'static str, args: Vec<String>) -> Vec<T> {
    let browser = chromium();
    let run = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .args(&args)
            .env("CHROMIUM", browser)
            .current_dir(node_dir())
            .output()
            .expect("node runs (is Node.js installed?)")
    });
    let output = tokio::time::timeout(BROWSER_RUN, run).await.expect("the browser finishes").unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{script} failed: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{script} printed {line:?}: {e}")))
        .collect()
}

/// Runs the page as a sender on each of `urls` in `mode`; what it saw of each.
async fn browse(mode: &str, urls: Vec<String>) -> Vec<PageSaw> {
    in_browser("browser-sender.js", [vec![mode.to_owned()], urls].concat()).await
}

/// The URL a browser sender uses: the token in the query, as browsers cannot set headers.
fn sender_url(relay: &TestRelay, scheme: Scheme, address: &str) -> String {
    let token = percent_encode(&raw_ws::token(relay, address, Duration::from_secs(3600)));
    let base = match scheme {
        Scheme::Wss => format!("wss://127.0.0.1:{}", relay.ws_addr.port()),
        Scheme::Ws => format!("ws://{}", relay.ws_plain_addr.expect("ws_plain_listen set")),
    };
    format!("{base}/$hc/{address}?sb-hc-action=connect&sb-hc-token={token}")
}

/// A standard listener on `address`: echoes each sender's first message, then either waits for
/// the sender's close or closes with 1000 "done"; returns how each rendezvous socket ended.
async fn listen(relay: &TestRelay, control: &mut raw_ws::Ws, senders: usize, listener_closes: bool) -> Vec<Ending> {
    let mut endings = Vec::new();
    for sender in 0..senders {
        let wait = if sender == 0 { FIRST_SENDER } else { WAIT };
        let mut rendezvous = raw_ws::accept_within(relay, control, wait).await;
        let first = tokio::time::timeout(WAIT, rendezvous.next()).await.expect("a message").unwrap().unwrap();
        assert_eq!(first, Message::text("hello"));
        rendezvous.send(Message::text("hello")).await.unwrap();
        if listener_closes {
            rendezvous.close(close_frame(1000, "done")).await.unwrap();
        }
        endings.push(raw_ws::ending(&mut rendezvous, WAIT).await);
    }
    endings
}

/// A listener's control channel on `address`.
async fn control(relay: &TestRelay, address: &str) -> raw_ws::Ws {
    raw_ws::control(relay, Scheme::Wss, address, &raw_ws::token(relay, address, Duration::from_secs(3600))).await
}

/// A relay (with plain `ws://` too), a listener on `address`, and the page as a sender to it over
/// `ws://` then `wss://`; the listener closes first if `listener_closes`, else the page does.
/// Returns what the page saw, and how the listener's rendezvous sockets ended.
///
/// The listener runs in its own task and the browser's result is read first, so that whichever
/// side fails, the failure shows what the page saw.
async fn exchange(address: &str, listener_closes: bool) -> (Vec<PageSaw>, Vec<Ending>) {
    let relay = TestRelay::start_with(|c| c.ws_plain_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let relay = std::sync::Arc::new(relay);
    let mut control = control(&relay, address).await;
    let urls = vec![sender_url(&relay, Scheme::Ws, address), sender_url(&relay, Scheme::Wss, address)];
    let mode = if listener_closes { "listener-closes" } else { "sender-closes" };
    // The relay lives until the page is done, whenever the listener finishes.
    let listening = relay.clone();
    let listener = tokio::spawn(async move { listen(&listening, &mut control, 2, listener_closes).await });
    let seen = browse(mode, urls).await;
    match tokio::time::timeout(WAIT, listener).await {
        Ok(Ok(endings)) => (seen, endings),
        Ok(Err(failed)) => panic!("the listener failed ({failed}); the page saw {seen:?}"),
        Err(_) => panic!("the listener did not finish; the page saw {seen:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_senders_close_is_answered_and_clean() {
    let (seen, endings) = exchange("echo", false).await;
    for saw in seen {
        assert_eq!(saw.error, None);
        assert_eq!(saw.echoed.as_deref(), Some("hello"));
        assert_eq!(saw.was_clean, Some(true), "{saw:?}");
        assert_eq!((saw.code, saw.reason.as_deref()), (Some(1000), Some("bye")), "the relay echoes the close");
    }
    for ending in endings {
        assert_eq!(ending, Ending::Clean(1000, "bye".into()), "the listener sees the browser's close");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listeners_close_reaches_the_browser_clean_with_its_code_and_reason() {
    let (seen, endings) = exchange("closer", true).await;
    for saw in seen {
        assert_eq!(saw.error, None);
        assert_eq!(saw.was_clean, Some(true), "{saw:?}");
        assert_eq!((saw.code, saw.reason.as_deref()), (Some(1000), Some("done")));
    }
    for ending in endings {
        assert_eq!(ending, Ending::Clean(1000, "done".into()), "the relay answers the listener's close");
    }
}

/// What one fetch from the page got: the status and body it could read, or the error it got
/// instead (a TypeError when the browser refuses the answer, CORS).
#[derive(Debug, serde::Deserialize)]
struct FetchSaw {
    status: Option<u16>,
    body: Option<String>,
    error: Option<String>,
}

/// What a page of one origin saw (`browser-fetch.js`).
#[derive(Debug, serde::Deserialize)]
struct OriginSaw {
    origin: String,
    /// The token-carrying JSON POST to the listener's `/web/echo`.
    post: FetchSaw,
    /// A typed contract's JSON call, `/lab/Lab/first_even`, to a Rust host.
    typed: FetchSaw,
    /// A GET of `/web/hello` without a token.
    unauthorized: FetchSaw,
    /// A WebSocket sender to the echo listener on `chat`.
    ws: PageSaw,
}

/// Two TCP ports free on 127.0.0.1 (both held while the second is picked, so they differ).
fn two_free_ports() -> (u16, u16) {
    let bind = || std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let (a, b) = (bind(), bind());
    (a.local_addr().unwrap().port(), b.local_addr().unwrap().port())
}

/// A standard listener on `control` for as long as it is polled: echoes every message of each
/// sender until that sender closes, then takes the next; counts the senders in `accepted`.
async fn echo_senders(relay: &TestRelay, control: &mut raw_ws::Ws, accepted: &Cell<usize>) -> Infallible {
    loop {
        let message = control.next().await.expect("the listener's control channel open").expect("healthy");
        let Message::Text(text) = message else { continue };
        let command: serde_json::Value = serde_json::from_str(&text).expect("a JSON command");
        let Some(url) = command["accept"]["address"].as_str() else { continue };
        let mut rendezvous = raw_ws::connect(relay, url, None).await.expect("rendezvous connects");
        accepted.set(accepted.get() + 1);
        while let Some(Ok(message)) = rendezvous.next().await {
            if message.is_text() || message.is_binary() {
                let _ = rendezvous.send(message).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_an_allowed_origin_calls_an_http_listener_and_a_page_of_another_origin_is_refused() {
    const WEB: &str = "web";
    const CHAT: &str = "chat";
    const LAB: &str = "lab";
    let (allowed_port, other_port) = two_free_ports();
    let allowed = format!("http://127.0.0.1:{allowed_port}");
    let relay = TestRelay::start_with(|c| {
        let allowed_origins = vec![allowed.clone()];
        c.addresses = vec![
            AddressConfig {
                path: WEB.into(),
                http: true,
                allowed_origins: allowed_origins.clone(),
                ..Default::default()
            },
            AddressConfig { path: CHAT.into(), allowed_origins: allowed_origins.clone(), ..Default::default() },
            AddressConfig { path: LAB.into(), allowed_origins, ..Default::default() },
        ];
    })
    .await;
    let _web_listener = https_listener(&relay, WEB);
    let mut chat_listener = control(&relay, CHAT).await;
    let lab_host = relay.host().await;
    let (lab, _events) = relay_tests::lab::LabHost::new("lab");
    let lab_listener = lab_host.listen_http(LAB).await.expect("listens");
    tokio::spawn(lab_listener.serve(relay_tests::lab::ServeLab::new(lab)));

    // One send token for both addresses: the namespace root's audience covers every address.
    let token = https::token(&relay, "");
    let base = format!("https://127.0.0.1:{}", relay.ws_addr.port());
    let chat_url = format!("{}/$hc/{CHAT}?sb-hc-action=connect&sb-hc-token={}", relay.ws_url, percent_encode(&token));
    let args = vec![base, token, chat_url, allowed_port.to_string(), other_port.to_string()];
    let accepted = Cell::new(0);
    let seen: Vec<OriginSaw> = tokio::select! {
        seen = in_browser("browser-fetch.js", args) => seen,
        never = echo_senders(&relay, &mut chat_listener, &accepted) => match never {},
    };
    let [from_allowed, from_other] = <[OriginSaw; 2]>::try_from(seen).expect("one line per origin");
    assert_eq!(from_allowed.origin, allowed);
    assert_eq!(from_other.origin, format!("http://127.0.0.1:{other_port}"));

    // The allowed origin: the preflight passes, the listener's answer is readable,
    // the relay's own 401 is readable, and the WebSocket sender gets its echo.
    let post = &from_allowed.post;
    assert_eq!((post.status, &post.error), (Some(200), &None), "{from_allowed:?}");
    assert!(post.body.as_deref().is_some_and(|b| b.contains(r#""length":13"#)), "{from_allowed:?}");
    let typed = &from_allowed.typed;
    assert_eq!((typed.status, typed.body.as_deref()), (Some(200), Some("4")), "{from_allowed:?}");
    assert_eq!(from_allowed.unauthorized.status, Some(401), "{from_allowed:?}");
    assert_eq!(from_allowed.ws.echoed.as_deref(), Some("hello"), "{from_allowed:?}");
    assert_eq!((from_allowed.ws.was_clean, from_allowed.ws.code), (Some(true), Some(1000)), "{from_allowed:?}");

    // Another origin: the browser refuses the POST (no status readable), and the relay refuses
    // the WebSocket sender before it reaches the listener.
    let post = &from_other.post;
    assert!(post.error.is_some() && post.status.is_none(), "{from_other:?}");
    assert!(from_other.typed.error.is_some() && from_other.typed.status.is_none(), "{from_other:?}");
    assert!(from_other.unauthorized.status.is_none(), "{from_other:?}");
    assert_eq!(from_other.ws.echoed, None, "{from_other:?}");
    assert_ne!(from_other.ws.code, Some(1000), "{from_other:?}");
    assert_eq!(accepted.get(), 1, "only the allowed origin's sender reached the listener");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_lists_addresses_and_follows_a_host_leaving() {
    use relay_tests::lab::{LabHost, ServeLab};
    use relay_tests::node::NodeScript;

    let relay = TestRelay::start().await;
    let staying = relay.host().await;
    let leaving = relay.host().await;
    for host in [&staying, &leaving] {
        let (lab, _events) = LabHost::new("lab");
        tokio::spawn(host.listen("lab").await.unwrap().serve(ServeLab::new(lab)));
    }
    // Three channels opened (and open) on it, by two callers.
    let (caller, other) = (relay.caller().await, relay.caller().await);
    let mut channels = Vec::new();
    for caller in [&caller, &caller, &other] {
        channels.push(relay_tests::lab::LabClient::connect(caller, "lab").await.unwrap());
    }
    // What the page reads.
    let status = relay_tests::http::get(relay.admin_addr, "/api/status", &[]).await;
    let status: serde_json::Value = serde_json::from_str(&status.body).expect("json");
    assert_eq!(status["state"], "ready");
    assert_eq!(status["addresses"][0]["address"], "lab", "{status}");
    assert_eq!(status["addresses"][0]["listeners"][0]["transport"], "quic", "{status}");
    assert_eq!(status["addresses"][0]["open_channels"], 3, "{status}");
    assert_eq!(status["addresses"][0]["opened_last_minute"], 3, "{status}");
    assert_eq!(status["addresses"][0]["callers"], 2, "{status}");
    assert_eq!(status["open_channels"], 3, "{status}");

    let shot = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/status-page.png");
    let _ = std::fs::remove_file(&shot);
    let url = format!("http://{}/", relay.admin_addr);
    let env = [("CHROMIUM", chromium().to_string_lossy().into_owned())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut page =
        NodeScript::spawn_with_env("status-page.js", &[&url, "lab", shot.to_str().unwrap()], &relay.cert, &env);
    let shown = page.expect("shown", Duration::from_secs(60));
    assert_eq!(shown["listeners"], 2, "{shown}");
    leaving.close();
    page.send_line("go");
    let updated = page.expect("updated", Duration::from_secs(30));
    assert_eq!(updated["listeners"], 1, "the page follows a host leaving by itself: {updated}");
    // At a phone's width the listener's line (transport, peer, since, channels) is on a row of
    // its own under the address.
    let details = updated["details"].as_array().cloned().unwrap_or_default();
    assert_eq!(details.len(), 1, "one listener line shown on a phone: {updated}");
    assert!(details[0].as_str().is_some_and(|line| line.starts_with("quic · 127.0.0.1:")), "{updated}");
    page.expect("done", Duration::from_secs(30));
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(size > 1000, "a screenshot at {} ({size} bytes)", shot.display());
    drop((channels, staying));
}
