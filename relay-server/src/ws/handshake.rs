//! The HTTP/1.1 side of a WebSocket handshake: read the request head (bounded), answer with
//! `101 Switching Protocols` or an error status. Written by hand rather than through
//! tungstenite's `accept_hdr`, because a sender's answer waits for a listener's rendezvous.

use std::time::Duration;

use relay_proto::hc::CHANNEL_ID_HEADER;
use relay_proto::http::{HeadError, MAX_HEAD, parse_request};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::{Io, WsStream};
use crate::budget::Metered;
use crate::channel::WsEnd;

/// A parsed request head (see [`relay_proto::http`]).
pub(crate) use relay_proto::http::RequestHead as Head;

/// Why a request head could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadHeadError {
    #[error("connection closed before the request head ended")]
    Eof,
    #[error(transparent)]
    Malformed(#[from] HeadError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads a request head, at most [`MAX_HEAD`] bytes; returns it, every byte read, and how many
/// of them the head took (the rest came after it). The caller bounds it with a deadline.
pub(crate) async fn read_head(io: &mut Box<dyn Io>) -> Result<(Head, Vec<u8>, usize), ReadHeadError> {
    let mut buf = Vec::with_capacity(1024);
    // On the heap, not in the connection's future, which lives as long as the connection.
    let mut chunk = vec![0u8; 2048];
    loop {
        // Below MAX_HEAD bytes there is room to read; at it, the parser has an answer.
        if let Some((head, used)) = parse_request(&buf)? {
            return Ok((head, buf, used));
        }
        let n = io.read(&mut chunk[..(MAX_HEAD - buf.len()).min(2048)]).await?;
        if n == 0 {
            return Err(ReadHeadError::Eof);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Answers `101 Switching Protocols` and turns the connection into a channel's WebSocket end.
pub(crate) async fn upgrade_end(
    mut io: Metered<Box<dyn Io>>,
    leftover: Vec<u8>,
    key: &str,
    (protocol, channel_id): (Option<&str>, Option<u64>),
    (max_message, patience): (usize, Duration),
) -> std::io::Result<WsEnd> {
    switch_protocols(&mut io, key, (protocol, channel_id)).await?;
    Ok(WsEnd::new(io, leftover, max_message, patience))
}

/// Answers `101 Switching Protocols` and turns the connection into a WebSocket, for a listener's
/// control channel.
pub(crate) async fn upgrade(
    mut io: Metered<Box<dyn Io>>,
    leftover: Vec<u8>,
    key: &str,
    (protocol, channel_id): (Option<&str>, Option<u64>),
    max_message: usize,
) -> std::io::Result<WsStream> {
    switch_protocols(&mut io, key, (protocol, channel_id)).await?;
    // tungstenite zero-fills its whole read buffer per socket (128 KiB by default), and every
    // channel holds two sockets here; a large message reserves its own length anyway.
    let config = WebSocketConfig::default()
        .read_buffer_size(WS_READ_BUFFER)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message));
    Ok(WebSocketStream::from_partially_read(io, leftover, Role::Server, Some(config)).await)
}

/// Answers `101 Switching Protocols` on `io`: the WebSocket begins after it.
pub(crate) async fn switch_protocols<W: AsyncWrite + Unpin>(
    io: &mut W,
    key: &str,
    (protocol, channel_id): (Option<&str>, Option<u64>),
) -> std::io::Result<()> {
    let mut response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
        derive_accept_key(key.as_bytes())
    );
    if let Some(protocol) = protocol.filter(|p| is_token(p)) {
        response.push_str(&format!("Sec-WebSocket-Protocol: {protocol}\r\n"));
    }
    if let Some(id) = channel_id {
        response.push_str(&format!("{CHANNEL_ID_HEADER}: {id}\r\n"));
    }
    response.push_str("\r\n");
    io.write_all(response.as_bytes()).await?;
    io.flush().await
}

/// The read buffer of each WebSocket. It stays allocated for the socket's life, and every
/// channel holds two sockets: 16 KiB cost 24 KiB more per channel than 4 KiB and moved bulk no
/// faster, and 1 KiB (each read then copies from rustls's plaintext, which reads the socket
/// 4 KiB at a time) moved bulk no slower than 4 KiB in `relay-bench`.
const WS_READ_BUFFER: usize = 1024;

/// Answers with an error status and closes. The description goes in the reason phrase (as
/// Azure's relay does) and in the body.
pub(crate) async fn refuse(mut io: Box<dyn Io>, status: u16, description: impl std::fmt::Display) {
    let reason: String = description
        .to_string()
        .chars()
        .map(|c| if c.is_ascii() && !c.is_ascii_control() { c } else { '?' })
        .take(512)
        .collect();
    let reason = if reason.is_empty() { "Error".to_owned() } else { reason };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reason}",
        reason.len()
    );
    let _ = io.write_all(response.as_bytes()).await;
    let _ = io.shutdown().await;
    // A lingering close: what the peer sent past what was read (the rest of a head too large,
    // a body) is read and dropped for a moment, since closing with unread bytes resets the
    // connection, and a reset can reach the peer before it has read this answer.
    // On the heap: inline, these 4 KiB would be part of every future that may refuse, which is
    // most of a connection's, for the connection's whole life.
    let mut sink = vec![0u8; 4096];
    let drain = async {
        let mut left = LINGER_BYTES;
        while left > 0 {
            match io.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// How long, and how much, a refused connection is read from before it closes.
const LINGER: std::time::Duration = std::time::Duration::from_secs(1);
const LINGER_BYTES: usize = 64 * 1024;

/// Whether `s` is an HTTP token (safe to echo in a header).
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::{Framing, WsFraming};

    /// RFC 6455's example key, in an upgrade request as hyco-ws sends it.
    const REQUEST: &[u8] = b"GET /$hc/calc?sb-hc-action=connect HTTP/1.1\r\nHost: localhost:7443\r\n\
        Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, superchat\r\n\r\n";

    /// Feeds `bytes` to `read_head` in `chunk`-sized writes, then closes the write side.
    async fn read(bytes: Vec<u8>, chunk: usize) -> Result<(Head, Vec<u8>), ReadHeadError> {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let writer = tokio::spawn(async move {
            let mut client = client;
            for piece in bytes.chunks(chunk) {
                // The relay stops reading (and drops its end) once it has an answer.
                if client.write_all(piece).await.is_err() {
                    break;
                }
            }
        });
        let mut io: Box<dyn Io> = Box::new(server);
        let read = read_head(&mut io).await;
        drop(io);
        writer.await.unwrap();
        read.map(|(head, mut all, used)| {
            assert_eq!(&all[..used], &REQUEST[..used], "the head's bytes come first");
            (head, all.split_off(used))
        })
    }

    /// What a future keeps inline, every future awaiting it keeps too, for as long as it runs: a
    /// channel's task awaits these (a refusal may come at any step), for the channel's life.
    #[test]
    fn the_handshake_futures_keep_their_buffers_on_the_heap() {
        let (_client, server) = tokio::io::duplex(64);
        let mut io: Box<dyn Io> = Box::new(server);
        assert!(std::mem::size_of_val(&read_head(&mut io)) < 512, "read_head");
        assert!(std::mem::size_of_val(&refuse(io, 400, "bad")) < 1024, "refuse");
    }

    #[tokio::test]
    async fn heads_are_read_in_any_chunking_and_what_follows_is_kept() {
        for chunk in [1, 7, 4096] {
            let (head, leftover) = read([REQUEST, b"\x82\x00"].concat(), chunk).await.unwrap();
            assert_eq!(head.websocket_key(), Ok("dGhlIHNhbXBsZSBub25jZQ=="));
            assert_eq!(head.first_protocol().as_deref(), Some("chat"));
            // Bytes sent with the head belong to the WebSocket, whatever arrived with it.
            assert!(leftover.len() <= 2 && b"\x82\x00".starts_with(&leftover), "{leftover:?}");
        }
        let (_, leftover) = read([REQUEST, b"\x82\x00"].concat(), 4096).await.unwrap();
        assert_eq!(leftover, b"\x82\x00");
    }

    #[tokio::test]
    async fn short_oversized_and_malformed_heads_fail() {
        assert!(matches!(read(REQUEST[..40].to_vec(), 8).await, Err(ReadHeadError::Eof)));
        let endless = [&REQUEST[..REQUEST.len() - 2], &b"X: y\r\n".repeat(MAX_HEAD)].concat();
        assert!(matches!(read(endless, 1000).await, Err(ReadHeadError::Malformed(_))));
        let huge = [&REQUEST[..REQUEST.len() - 2], &vec![b'a'; 2 * MAX_HEAD]].concat();
        assert!(matches!(read(huge, 1000).await, Err(ReadHeadError::Malformed(HeadError::TooLarge))));
        let garbage = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".to_vec();
        assert!(matches!(read(garbage, 3).await, Err(ReadHeadError::Malformed(_))));
    }

    #[tokio::test]
    async fn answers_101_with_the_accept_key_and_refuses_with_a_status() {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let io = Metered::new(Box::new(server) as Box<dyn Io>, Framing::Ws(WsFraming::new(1024)), None);
        let ws = upgrade(io, Vec::new(), "dGhlIHNhbXBsZSBub25jZQ==", (Some("chat\r\nX-Evil: 1"), None), 1024).await;
        drop(ws.unwrap());
        let mut answer = String::new();
        let mut client = client;
        client.read_to_string(&mut answer).await.unwrap();
        assert_eq!(
            answer,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
            "a protocol that is not a token is not echoed"
        );
        let (client, server) = tokio::io::duplex(64 * 1024);
        let io = Metered::new(Box::new(server) as Box<dyn Io>, Framing::Ws(WsFraming::new(1024)), None);
        drop(upgrade(io, Vec::new(), "dGhlIHNhbXBsZSBub25jZQ==", (Some("chat"), Some(42)), 1024).await.unwrap());
        let mut answer = String::new();
        let mut client = client;
        client.read_to_string(&mut answer).await.unwrap();
        assert!(answer.ends_with("Sec-WebSocket-Protocol: chat\r\nRelay-Channel-Id: 42\r\n\r\n"), "{answer}");
        let (client, server) = tokio::io::duplex(64 * 1024);
        refuse(Box::new(server), 400, relay_proto::http::UpgradeError::Version).await;
        let mut answer = String::new();
        let mut client = client;
        client.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 400 Sec-WebSocket-Version must be 13\r\n"), "{answer}");
        assert!(answer.ends_with("\r\n\r\nSec-WebSocket-Version must be 13"), "{answer}");
    }
}
