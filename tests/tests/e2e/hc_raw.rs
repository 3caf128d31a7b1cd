//! Raw Hybrid Connections handshakes against a real relay on plain `ws://`, written byte by byte:
//! what a sender's request target can and cannot make the relay put in a listener's `accept`.

use std::net::SocketAddr;
use std::time::Duration;

use relay_proto::auth::percent::decode as percent_decode;
use relay_proto::hc::{ControlMessage, TOKEN_HEADER};
use relay_rpc::auth::{SharedAccessKey, sas_token, unix_now};
use relay_server::{Config, Relay};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

const WAIT: Duration = Duration::from_secs(10);

/// A relay with plain `ws://`, so that a test can write the handshake itself.
struct PlainRelay {
    ws: SocketAddr,
    root: SharedAccessKey,
    _stop: oneshot::Sender<()>,
}

async fn start() -> PlainRelay {
    let config = Config {
        quic_listen: "127.0.0.1:0".parse().unwrap(),
        ws_listen: None,
        ws_plain_listen: Some("127.0.0.1:0".parse().unwrap()),
        admin_listen: None,
        data_dir: relay_tests::temp_dir("hc-raw"),
        ..Config::default()
    };
    let relay = Relay::bind(config).expect("relay binds");
    let ws = relay.ws_plain_addr().expect("ws:// enabled");
    let root = SharedAccessKey::from_file(relay.root_key_path()).expect("root key readable");
    let (stop, stopped) = oneshot::channel();
    tokio::spawn(relay.run(async {
        let _ = stopped.await;
    }));
    PlainRelay { ws, root, _stop: stop }
}

impl PlainRelay {
    fn token(&self, address: &str) -> String {
        sas_token(
            &format!("http://127.0.0.1:{}/{address}", self.ws.port()),
            self.root.name(),
            self.root.secret(),
            unix_now() + 600,
        )
    }

    async fn handshake(&self, target: &str, token: &str) -> (TcpStream, u16) {
        handshake(self.ws, target, token).await
    }
}

/// Sends an upgrade request for `target` and returns the socket and the response's status.
async fn handshake(relay: SocketAddr, target: &str, token: &str) -> (TcpStream, u16) {
    let mut tcp = TcpStream::connect(relay).await.unwrap();
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{TOKEN_HEADER}: {token}\r\n\r\n",
        relay
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8];
        let n = tokio::time::timeout(WAIT, tcp.read(&mut byte)).await.expect("an answer in time").unwrap();
        assert_eq!(n, 1, "the relay closed before answering: {:?}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{head:?}"));
    (tcp, status)
}

/// The next text message the relay sends on `ws` (server frames are unmasked); pings are skipped.
async fn next_text(ws: &mut TcpStream) -> String {
    loop {
        let mut head = [0u8; 2];
        ws.read_exact(&mut head).await.unwrap();
        let len = match head[1] & 0x7f {
            126 => u64::from(ws.read_u16().await.unwrap()),
            127 => ws.read_u64().await.unwrap(),
            n => u64::from(n),
        };
        let mut payload = vec![0; usize::try_from(len).unwrap()];
        ws.read_exact(&mut payload).await.unwrap();
        if head[0] & 0x0f == 1 {
            return String::from_utf8(payload).unwrap();
        }
    }
}

/// The query parameters of `url`, names percent-decoded and lower-cased as a lenient listener reads them.
fn params(url: &str) -> Vec<(String, String)> {
    let (_, query) = url.split_once('?').unwrap_or((url, ""));
    query
        .split('&')
        .map(|p| {
            let (name, value) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(name).unwrap_or_else(|| name.to_owned()).to_ascii_lowercase(), value.to_owned())
        })
        .collect()
}

#[tokio::test]
async fn a_sender_cannot_forge_the_relays_parameters_in_the_accept_url() {
    // Regression (issue 19): `%73b-hc-id` and `SB-HC-TOKEN` passed through to the listener, whose
    // URL parser then read the sender's values as the relay's own.
    let relay = start().await;
    let (mut control, status) = relay.handshake("/$hc/lab?sb-hc-action=listen", &relay.token("lab")).await;
    assert_eq!(status, 101);

    let forged = "/$hc/lab/sub?color=blue&%73b-hc-id=forged-id&SB-HC-TOKEN=forged-token\
                  &Sb-Hc-Rendezvous=forged-secret&n=1&sb-hc-action=connect";
    // The sender waits for the listener's rendezvous, which never comes: only the accept matters.
    let (ws, token) = (relay.ws, relay.token("lab"));
    let sender = tokio::spawn(async move { handshake(ws, forged, &token).await });
    let accept = tokio::time::timeout(WAIT, next_text(&mut control)).await.expect("an accept in time");
    let Ok(ControlMessage::Accept(accept)) = serde_json::from_str::<ControlMessage>(&accept) else {
        panic!("not an accept: {accept}");
    };
    assert!(!accept.address.contains("forged"), "{}", accept.address);
    assert!(!accept.id.contains("forged"), "{accept:?}");
    let params = params(&accept.address);
    assert!(params.iter().any(|(n, v)| n == "color" && v == "blue"), "{params:?}");
    assert!(params.iter().any(|(n, v)| n == "n" && v == "1"), "{params:?}");
    for name in ["sb-hc-id", "sb-hc-rendezvous", "sb-hc-action"] {
        assert_eq!(params.iter().filter(|(n, _)| n == name).count(), 1, "{name} once: {params:?}");
    }
    assert!(!params.iter().any(|(n, _)| n == "sb-hc-token"), "{params:?}");
    sender.abort();
}

#[tokio::test]
async fn a_sender_target_with_a_fragment_or_backslash_is_refused() {
    // Regression (issue 19): a raw `#` in the query hid the relay's own parameters from the
    // listener's URL parser, and a `\` reads as `/` there.
    let relay = start().await;
    let (_control, status) = relay.handshake("/$hc/lab?sb-hc-action=listen", &relay.token("lab")).await;
    assert_eq!(status, 101);
    for target in [
        "/$hc/lab/sub#x?sb-hc-action=connect",
        "/$hc/lab/sub\\..\\x?sb-hc-action=connect",
        "/$hc/lab?sb-hc-action=connect&x=1#",
        "/$hc/lab?x=a\\b&sb-hc-action=connect",
    ] {
        let (_, status) = relay.handshake(target, &relay.token("lab")).await;
        assert_eq!(status, 400, "{target}");
    }
}
