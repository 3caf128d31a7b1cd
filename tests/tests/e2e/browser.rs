//! Issue #18 in a real browser: a headless Chromium page is a Hybrid Connections sender (the
//! WebSocket API, the token in `sb-hc-token`), through a real relay, over `ws://` and `wss://`, to
//! a standard listener (tokio-tungstenite). Whichever end closes, the page sees a clean close
//! (`wasClean`) with the code and reason the closing end gave, never 1006.
//!
//! Needs Node.js and Chromium (`apt-get install chromium`; `CHROMIUM` names another binary):
//! without them this test fails, it does not skip.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use relay_proto::auth::percent::encode_component as percent_encode;
use relay_tests::TestRelay;
use relay_tests::node::node_dir;
use relay_tests::raw_ws::{self, Ending, Scheme, close_frame};
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(10);

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

/// Runs the page as a sender on each of `urls` in `mode`; what it saw of each.
async fn browse(mode: &str, urls: Vec<String>) -> Vec<PageSaw> {
    let browser = chromium();
    let mode = mode.to_owned();
    let run = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg("browser-sender.js")
            .arg(&mode)
            .args(&urls)
            .env("CHROMIUM", browser)
            .current_dir(node_dir())
            .output()
            .expect("node runs (is Node.js installed?)")
    });
    let output = tokio::time::timeout(Duration::from_secs(90), run).await.expect("the browser finishes").unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "browser-sender.js failed: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    stdout.lines().map(|line| serde_json::from_str(line).expect("a JSON line")).collect()
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
    for _ in 0..senders {
        let mut rendezvous = raw_ws::accept(relay, control).await;
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
async fn exchange(address: &str, listener_closes: bool) -> (Vec<PageSaw>, Vec<Ending>) {
    let relay = TestRelay::start_with(|c| c.ws_plain_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let mut control = control(&relay, address).await;
    let urls = vec![sender_url(&relay, Scheme::Ws, address), sender_url(&relay, Scheme::Wss, address)];
    let mode = if listener_closes { "listener-closes" } else { "sender-closes" };
    tokio::join!(browse(mode, urls), listen(&relay, &mut control, 2, listener_closes))
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
