//! Plain WebSocket clients (tokio-tungstenite, no relay-rpc) speaking Azure's Hybrid Connections
//! protocol to a test relay, as any standard client library would: a sender, and a listener's
//! control channel and rendezvous sockets.

use std::time::Duration;

use futures::StreamExt;
use relay_rpc::auth::{sas_token, unix_now};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::TestRelay;

/// TLS or plain TCP, boxed.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A client WebSocket to the relay.
pub type Ws = WebSocketStream<Box<dyn Io>>;

/// Which of the relay's WebSocket endpoints to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `wss://`, trusting the relay's certificate.
    Wss,
    /// Plain `ws://` (the relay must have `ws_plain_listen` set).
    Ws,
}

/// A token for `address` signed with the relay's root key, valid for `ttl`, in the form hyco-ws
/// signs (`http://host:port/address`).
pub fn token(relay: &TestRelay, address: &str, ttl: Duration) -> String {
    let root = relay.root_key();
    let audience = format!("http://127.0.0.1:{}/{address}", relay.ws_addr.port());
    sas_token(&audience, root.name(), root.secret(), unix_now() + ttl.as_secs())
}

fn base(relay: &TestRelay, scheme: Scheme) -> String {
    match scheme {
        Scheme::Wss => format!("wss://127.0.0.1:{}", relay.ws_addr.port()),
        Scheme::Ws => format!("ws://{}", relay.ws_plain_addr.expect("ws_plain_listen set")),
    }
}

/// Opens a WebSocket to `url` (a `wss://` URL is trusted with the relay's certificate), with
/// the token in the `ServiceBusAuthorization` header if given.
pub async fn connect(relay: &TestRelay, url: &str, token: Option<&str>) -> Result<Ws, WsError> {
    let mut request = url.into_client_request()?;
    if let Some(token) = token {
        request.headers_mut().insert("ServiceBusAuthorization", token.parse().expect("header value"));
    }
    let host = request.uri().host().expect("host").to_owned();
    let port = request.uri().port_u16().expect("port");
    let tcp = TcpStream::connect((host.as_str(), port)).await?;
    let io: Box<dyn Io> = if url.starts_with("wss://") {
        let connector = tokio_rustls::TlsConnector::from(crate::tls_trusting(&relay.cert));
        let name = ServerName::try_from(host).expect("server name");
        Box::new(connector.connect(name, tcp).await?)
    } else {
        Box::new(tcp)
    };
    let (ws, _) = tokio_tungstenite::client_async(request, io).await?;
    Ok(ws)
}

/// A sender's WebSocket to `address`.
pub async fn sender(relay: &TestRelay, scheme: Scheme, address: &str) -> Ws {
    let url = format!("{}/$hc/{address}?sb-hc-action=connect", base(relay, scheme));
    connect(relay, &url, Some(&token(relay, address, Duration::from_secs(3600)))).await.expect("sender connects")
}

/// A listener's control channel on `address`, with `token`.
pub async fn control(relay: &TestRelay, scheme: Scheme, address: &str, token: &str) -> Ws {
    let url = format!("{}/$hc/{address}?sb-hc-action=listen", base(relay, scheme));
    connect(relay, &url, Some(token)).await.expect("listener connects")
}

/// Waits on `control` (up to 10 s) for the next `accept` and opens its rendezvous socket.
pub async fn accept(relay: &TestRelay, control: &mut Ws) -> Ws {
    accept_within(relay, control, Duration::from_secs(10)).await
}

/// Waits on `control` (up to `wait`) for the next `accept` and opens its rendezvous socket.
pub async fn accept_within(relay: &TestRelay, control: &mut Ws, wait: Duration) -> Ws {
    let address = loop {
        let message = tokio::time::timeout(wait, control.next())
            .await
            .expect("accept in time")
            .expect("control channel open")
            .expect("control channel healthy");
        if let Message::Text(text) = message {
            let json: serde_json::Value = serde_json::from_str(&text).expect("json");
            break json["accept"]["address"].as_str().expect("accept address").to_owned();
        }
    };
    connect(relay, &address, None).await.expect("rendezvous connects")
}

/// A listener on `address` and a sender connected to it: (control channel, sender, rendezvous).
pub async fn channel(relay: &TestRelay, scheme: Scheme, address: &str) -> (Ws, Ws, Ws) {
    let mut control = control(relay, scheme, address, &token(relay, address, Duration::from_secs(3600))).await;
    let (sender, rendezvous) =
        tokio::join!(sender(relay, scheme, address), async { accept(relay, &mut control).await });
    (control, sender, rendezvous)
}

/// How a WebSocket ended, seen by its client.
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    /// A close frame arrived (code, reason), and then the stream ended without error.
    Clean(u16, String),
    /// A close frame arrived, but the stream then failed.
    ClosedThenFailed(u16, String),
    /// The stream ended, or failed, with no close frame.
    Dropped(String),
}

/// Reads `ws` until it ends, within `limit`, skipping data, pings and pongs.
pub async fn ending(ws: &mut Ws, limit: Duration) -> Ending {
    let read = async {
        let mut close = None;
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => {
                    close = Some(frame.map_or((1005, String::new()), |f| (u16::from(f.code), f.reason.to_string())))
                }
                Some(Ok(_)) => {}
                None => {
                    return match close {
                        Some((code, reason)) => Ending::Clean(code, reason),
                        None => Ending::Dropped("ended without a close".into()),
                    };
                }
                Some(Err(e)) => {
                    return match close {
                        Some((code, reason)) => Ending::ClosedThenFailed(code, reason),
                        None => Ending::Dropped(e.to_string()),
                    };
                }
            }
        }
    };
    tokio::time::timeout(limit, read).await.unwrap_or_else(|_| Ending::Dropped("still open".into()))
}

/// A close frame.
pub fn close_frame(code: u16, reason: &str) -> Option<CloseFrame> {
    Some(CloseFrame { code: code.into(), reason: reason.to_owned().into() })
}
