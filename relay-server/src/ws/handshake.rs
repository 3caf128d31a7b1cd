//! The HTTP/1.1 side of a WebSocket handshake: read the request head (bounded), answer with
//! `101 Switching Protocols` or an error status. Written by hand rather than through
//! tungstenite's `accept_hdr`, because a sender's answer waits for a listener's rendezvous.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::{Io, WsStream};
use crate::budget::Metered;

/// The largest request head accepted, in bytes.
pub(crate) const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;

/// Why a request head could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HeadError {
    #[error("connection closed before the request head ended")]
    Eof,
    #[error("request head larger than {MAX_HEAD} bytes")]
    TooLarge,
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// A parsed request head.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) method: String,
    pub(crate) target: String,
    pub(crate) headers: Vec<(String, String)>,
}

impl Head {
    /// The first header named `name`, case-insensitively.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.header(name).is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }

    /// The `Sec-WebSocket-Key` of a valid WebSocket upgrade request, or why it is not one.
    pub(crate) fn websocket_key(&self) -> Result<&str, &'static str> {
        if self.method != "GET" {
            return Err("method must be GET");
        }
        if !self.has_token("Upgrade", "websocket") || !self.has_token("Connection", "upgrade") {
            return Err("not a WebSocket upgrade");
        }
        if self.header("Sec-WebSocket-Version") != Some("13") {
            return Err("Sec-WebSocket-Version must be 13");
        }
        self.header("Sec-WebSocket-Key").filter(|k| !k.is_empty()).ok_or("missing Sec-WebSocket-Key")
    }

    /// The first sub-protocol the client offers.
    pub(crate) fn first_protocol(&self) -> Option<String> {
        self.header("Sec-WebSocket-Protocol")
            .and_then(|v| v.split(',').map(str::trim).find(|p| !p.is_empty()))
            .map(str::to_owned)
    }
}

/// Reads a request head; returns it and any bytes read past it.
pub(crate) async fn read_head(io: &mut Box<dyn Io>) -> Result<(Head, Vec<u8>), HeadError> {
    let mut buf = Vec::with_capacity(1024);
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() >= MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
        let mut chunk = [0u8; 2048];
        let n = io.read(&mut chunk[..(MAX_HEAD - buf.len()).min(2048)]).await?;
        if n == 0 {
            return Err(HeadError::Eof);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(&buf[..end]) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(HeadError::Malformed("incomplete".into())),
        Err(e) => return Err(HeadError::Malformed(e.to_string())),
    }
    let head = Head {
        method: request.method.unwrap_or_default().to_owned(),
        target: request.path.unwrap_or_default().to_owned(),
        headers: request
            .headers
            .iter()
            .map(|h| (h.name.to_owned(), String::from_utf8_lossy(h.value).into_owned()))
            .collect(),
    };
    Ok((head, buf[end..].to_vec()))
}

/// Answers `101 Switching Protocols` and turns the connection into a WebSocket.
pub(crate) async fn upgrade(
    mut io: Metered<Box<dyn Io>>,
    leftover: Vec<u8>,
    key: &str,
    protocol: Option<&str>,
    max_message: usize,
) -> std::io::Result<WsStream> {
    let mut response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
        derive_accept_key(key.as_bytes())
    );
    if let Some(protocol) = protocol.filter(|p| is_token(p)) {
        response.push_str(&format!("Sec-WebSocket-Protocol: {protocol}\r\n"));
    }
    response.push_str("\r\n");
    io.write_all(response.as_bytes()).await?;
    io.flush().await?;
    // tungstenite zero-fills its whole read buffer per socket (128 KiB by default), and every
    // channel holds two sockets here; a large message reserves its own length anyway.
    let config = WebSocketConfig::default()
        .read_buffer_size(WS_READ_BUFFER)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message));
    Ok(WebSocketStream::from_partially_read(io, leftover, Role::Server, Some(config)).await)
}

/// The read buffer of each WebSocket: as large as rustls's own reads (4 KiB), so a read takes
/// what one TLS read brought; 16 KiB cost 24 KiB more per channel and moved bulk no faster.
const WS_READ_BUFFER: usize = 4 * 1024;

/// Answers with an error status and closes. The description goes in the reason phrase (as
/// Azure's relay does) and in the body.
pub(crate) async fn refuse(mut io: Box<dyn Io>, status: u16, description: &str) {
    let reason: String =
        description.chars().map(|c| if c.is_ascii() && !c.is_ascii_control() { c } else { '?' }).take(512).collect();
    let reason = if reason.is_empty() { "Error".to_owned() } else { reason };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reason}",
        reason.len()
    );
    let _ = io.write_all(response.as_bytes()).await;
    let _ = io.shutdown().await;
}

/// Whether `s` is an HTTP token (safe to echo in a header).
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
