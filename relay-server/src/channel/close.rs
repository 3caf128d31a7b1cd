//! Ending a WebSocket the relay terminates with a complete closing handshake (RFC 6455,
//! sections 5.5.1 and 7.1.1), whoever started it.
//!
//! tungstenite queues the reply to a peer's close itself, echoing its code, but only writes it
//! when the socket is next flushed or read: a socket dropped right after its peer's close never
//! answers, and the peer (a browser: `wasClean = false`, code 1006) sees a dropped connection.
//! So every socket the relay is done with goes through [`close`].

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

use super::WsStream;

/// How long a closing handshake may take, from the relay's close (or its reply) to the end of the
/// TCP connection. A peer that does not answer in time is dropped.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// A close frame with `code` and `reason`.
pub(crate) fn frame(code: u16, reason: &str) -> CloseFrame {
    CloseFrame { code: code.into(), reason: reason.to_owned().into() }
}

/// Completes `ws`'s closing handshake within [`CLOSE_GRACE`]:
/// - sends `ours` if the relay is the one closing (refused, harmlessly, when a close was already
///   sent or received);
/// - flushes the reply tungstenite queued to the peer's close, if it closed first;
/// - reads, dropping what arrives, until the peer's close (its reply to ours);
/// - shuts the stream down (TLS `close_notify`, TCP FIN: the server closes TCP first) and reads
///   until the peer's end, because closing a socket with unread bytes resets the connection, and a
///   reset can discard the close frame before the peer has read it.
pub(crate) async fn close(ws: &mut WsStream, ours: Option<CloseFrame>) {
    let handshake = async {
        if let Some(frame) = ours {
            let _ = ws.send(Message::Close(Some(frame))).await;
        }
        let _ = ws.flush().await;
        while let Some(Ok(_)) = ws.next().await {}
        // Around the meter: bytes after a refused frame are drained, not parsed.
        let io = ws.get_mut().get_mut();
        let _ = io.shutdown().await;
        // On the heap: inline, it would be part of every channel's splice for the channel's life.
        let mut discard = vec![0u8; 1024];
        while matches!(io.read(&mut discard).await, Ok(n) if n > 0) {}
    };
    if tokio::time::timeout(CLOSE_GRACE, handshake).await.is_err() {
        tracing::debug!("websocket peer did not finish the closing handshake in time; dropping it");
    }
}
