//! A channel's frames over one WebSocket: one binary message per frame. Pings the relay every
//! keep-alive interval and gives the channel up when nothing arrived for the idle timeout.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::codes;
use super::stream::Heard;
use crate::channel::ChannelError;
use crate::transport::Role;
use relay_proto::hc::{CLOSE_GOING_AWAY, CLOSE_NORMAL};
use relay_proto::io::ws::{Received, WsConnection, WsReadError, WsWriteError};

/// How a channel's WebSocket ended.
#[derive(Debug, Clone)]
enum End {
    /// A normal close: the stream of frames ends.
    Clean,
    /// Anything else.
    Failed(ChannelError),
}

impl End {
    fn item(&self) -> Option<Result<BytesMut, ChannelError>> {
        match self {
            Self::Clean => None,
            Self::Failed(e) => Some(Err(e.clone())),
        }
    }

    fn error(&self) -> ChannelError {
        match self {
            Self::Clean => ChannelError::Closed,
            Self::Failed(e) => e.clone(),
        }
    }
}

/// Limits and timers of a channel's WebSocket.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FrameLimits {
    pub(crate) max_frame: usize,
    pub(crate) keep_alive: Duration,
    pub(crate) idle_timeout: Duration,
}

/// A channel's frames over one WebSocket to the relay (the client end of a [`WsConnection`]).
#[derive(Debug)]
pub(crate) struct WsFrames<S> {
    ws: WsConnection<Heard<S>>,
    role: Role,
    limits: FrameLimits,
    /// When to ping next, and check that the relay was heard from within the idle timeout.
    tick: Pin<Box<Sleep>>,
    ping_unflushed: bool,
    /// Fires when the host or connection this channel belongs to is closed.
    closed: Pin<Box<WaitForCancellationFutureOwned>>,
    end: Option<End>,
    /// A host's slot for one incoming channel, freed when the channel is dropped.
    _permit: Option<OwnedSemaphorePermit>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsFrames<S> {
    /// The frames of `ws`, seen from `role`'s end; ends when `closed` is cancelled.
    pub(crate) fn new(
        ws: WsConnection<Heard<S>>,
        role: Role,
        limits: FrameLimits,
        closed: CancellationToken,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Self {
        Self {
            ws,
            role,
            limits,
            tick: Box::pin(tokio::time::sleep(limits.keep_alive)),
            ping_unflushed: false,
            closed: Box::pin(closed.cancelled_owned()),
            end: None,
            _permit: permit,
        }
    }

    fn finish(&mut self, end: End) -> Option<Result<BytesMut, ChannelError>> {
        self.end.get_or_insert(end).item()
    }

    /// Whether the host or connection was closed; if so, says goodbye to the relay (best effort:
    /// a relay that never gets it sees the socket end, which means the same) and ends.
    fn poll_closed_locally(&mut self, cx: &mut Context<'_>) -> bool {
        if self.closed.as_mut().poll(cx).is_pending() {
            return false;
        }
        // A host going away means "listener gone" to its callers; a caller just closes.
        let goodbye = match self.role {
            Role::Host => (CLOSE_GOING_AWAY, "host closed"),
            Role::Caller => (CLOSE_NORMAL, "caller closed"),
        };
        if self.ws.queue_close(Some(goodbye)) {
            let _ = self.ws.poll_flush(cx);
        }
        self.end.get_or_insert(End::Failed(ChannelError::ConnectionLost("closed locally".into())));
        true
    }

    /// Pings when due; fails when nothing arrived from the relay within the idle timeout.
    fn poll_keep_alive(&mut self, cx: &mut Context<'_>) -> Poll<ChannelError> {
        self.flush_ping(cx);
        while self.tick.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            if now.duration_since(self.ws.get_ref().last_read()) >= self.limits.idle_timeout {
                return Poll::Ready(ChannelError::ConnectionLost("the relay went silent".into()));
            }
            if self.ws.queue_ping().is_ok() {
                self.ping_unflushed = true;
                self.flush_ping(cx);
            }
            self.tick.as_mut().reset(now + self.limits.keep_alive);
        }
        Poll::Pending
    }

    /// Flushes a ping until it is out: nothing else may flush an idle channel.
    fn flush_ping(&mut self, cx: &mut Context<'_>) {
        if self.ping_unflushed && self.ws.poll_flush(cx).is_ready() {
            self.ping_unflushed = false;
        }
    }

    fn read_error(&self, e: WsReadError) -> ChannelError {
        if e.too_large() {
            return ChannelError::FrameTooLarge { max: self.limits.max_frame };
        }
        match e {
            WsReadError::Ended => ChannelError::ConnectionLost("the relay dropped the connection".into()),
            WsReadError::Io(e) => ChannelError::ConnectionLost(e.to_string()),
            WsReadError::Closed => ChannelError::Closed,
            other => ChannelError::Protocol(relay_proto::error::chain(&other).to_string()),
        }
    }

    fn write_error(&self, e: WsWriteError) -> ChannelError {
        if let Some(end) = &self.end {
            return end.error();
        }
        match e {
            WsWriteError::Io(e) => ChannelError::ConnectionLost(e.to_string()),
            _ => ChannelError::Closed,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for WsFrames<S> {
    type Item = Result<BytesMut, ChannelError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(end) = &this.end {
            return Poll::Ready(end.item());
        }
        if this.poll_closed_locally(cx) {
            return Poll::Ready(this.end.as_ref().and_then(End::item));
        }
        loop {
            let received = match this.ws.poll_next(cx) {
                Poll::Ready(Ok(received)) => received,
                Poll::Ready(Err(e)) => {
                    let e = this.read_error(e);
                    return Poll::Ready(this.finish(End::Failed(e)));
                }
                Poll::Pending => break,
            };
            match received {
                Received::Binary(frame) => return Poll::Ready(Some(Ok(BytesMut::from(frame)))),
                // Hybrid Connections senders may send text; it is a frame all the same.
                Received::Text(text) => return Poll::Ready(Some(Ok(BytesMut::from(text)))),
                Received::Close(close) => {
                    // The reply (echoing the code) is queued; send it now, as nothing polls this
                    // socket once the channel has ended (best effort).
                    let _ = this.ws.poll_flush(cx);
                    let (code, reason) = close.map_or((None, String::new()), |(code, reason)| (Some(code), reason));
                    let end = codes::channel_closed(this.role, code, &reason).map_or(End::Clean, End::Failed);
                    return Poll::Ready(this.finish(end));
                }
                // Pings are answered as they are read; pongs just prove the relay alive.
                Received::Control => continue,
            }
        }
        match this.poll_keep_alive(cx) {
            Poll::Ready(e) => Poll::Ready(this.finish(End::Failed(e))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Bytes> for WsFrames<S> {
    type Error = ChannelError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), ChannelError>> {
        let this = self.get_mut();
        if this.end.is_none() {
            this.poll_closed_locally(cx);
        }
        if let Some(end) = &this.end {
            return Poll::Ready(Err(end.error()));
        }
        match this.ws.poll_ready(cx) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(this.write_error(e))),
            other => other.map(|_| Ok(())),
        }
    }

    fn start_send(self: Pin<&mut Self>, frame: Bytes) -> Result<(), ChannelError> {
        let this = self.get_mut();
        if frame.len() > this.limits.max_frame {
            return Err(ChannelError::FrameTooLarge { max: this.limits.max_frame });
        }
        this.ws.queue_message(false, frame).map_err(|e| this.write_error(e))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), ChannelError>> {
        let this = self.get_mut();
        match this.ws.poll_flush(cx) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(this.write_error(e.into()))),
            other => other.map(|_| Ok(())),
        }
    }

    /// Sends a close frame without a code (once) and flushes it.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), ChannelError>> {
        let this = self.get_mut();
        if this.end.is_some() {
            return Poll::Ready(Ok(()));
        }
        this.ws.queue_close(None);
        match this.ws.poll_flush(cx) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(this.write_error(e.into()))),
            other => other.map(|_| Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{SinkExt, StreamExt};
    use relay_proto::io::ws::Side;
    use tokio::io::DuplexStream;
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role as WsRole};

    const LIMITS: FrameLimits = FrameLimits {
        max_frame: 1024,
        keep_alive: Duration::from_millis(100),
        idle_timeout: Duration::from_millis(350),
    };

    async fn pair(role: Role) -> (WsFrames<DuplexStream>, WebSocketStream<DuplexStream>, CancellationToken) {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let client = WsConnection::new(Heard::new(a), Side::Client, &[], LIMITS.max_frame);
        let relay = WebSocketStream::from_raw_socket(b, WsRole::Server, None).await;
        let closed = CancellationToken::new();
        (WsFrames::new(client, role, LIMITS, closed.clone(), None), relay, closed)
    }

    fn close(code: u16) -> Message {
        Message::Close(Some(CloseFrame { code: code.into(), reason: "bye".into() }))
    }

    #[tokio::test]
    async fn frames_are_binary_messages() {
        let (mut frames, mut relay, _closed) = pair(Role::Caller).await;
        frames.send(Bytes::from_static(b"hello")).await.unwrap();
        assert_eq!(relay.next().await.unwrap().unwrap(), Message::binary(&b"hello"[..]));
        relay.send(Message::binary(&b"back"[..])).await.unwrap();
        assert_eq!(&frames.next().await.unwrap().unwrap()[..], b"back");
        let err = frames.send(Bytes::from(vec![0; 1025])).await.unwrap_err();
        assert!(matches!(err, ChannelError::FrameTooLarge { max: 1024 }), "{err:?}");
    }

    #[tokio::test]
    async fn close_codes_end_the_channel_with_typed_errors() {
        for (role, code, expected) in [
            (Role::Caller, 1001, "ListenerGone"),
            (Role::Host, 1001, "CallerGone"),
            (Role::Caller, 1012, "RelayShutdown"),
            (Role::Host, 1011, "Protocol"),
        ] {
            let (mut frames, mut relay, _closed) = pair(role).await;
            relay.send(close(code)).await.unwrap();
            let err = frames.next().await.unwrap().unwrap_err();
            assert!(format!("{err:?}").starts_with(expected), "{role:?} {code}: {err:?}");
            assert!(format!("{:?}", frames.next().await.unwrap().unwrap_err()).starts_with(expected));
            assert!(format!("{:?}", frames.send(Bytes::new()).await.unwrap_err()).starts_with(expected));
        }
        let (mut frames, mut relay, _closed) = pair(Role::Caller).await;
        relay.send(close(1000)).await.unwrap();
        assert!(frames.next().await.is_none());
        assert!(matches!(frames.send(Bytes::new()).await, Err(ChannelError::Closed)));
    }

    #[tokio::test]
    async fn a_dropped_connection_is_lost_and_an_oversized_message_refused() {
        let (mut frames, relay, _closed) = pair(Role::Caller).await;
        drop(relay);
        assert!(matches!(frames.next().await, Some(Err(ChannelError::ConnectionLost(_)))));

        let (a, b) = tokio::io::duplex(64 * 1024);
        let client = WsConnection::new(Heard::new(a), Side::Client, &[], 1024);
        let mut relay = WebSocketStream::from_raw_socket(b, WsRole::Server, None).await;
        let mut frames = WsFrames::new(client, Role::Host, LIMITS, CancellationToken::new(), None);
        relay.send(Message::binary(vec![0; 2048])).await.unwrap();
        assert!(matches!(frames.next().await, Some(Err(ChannelError::FrameTooLarge { max: 1024 }))));
    }

    #[tokio::test]
    async fn a_closed_host_tells_the_relay_its_listener_is_gone() {
        let (mut frames, mut relay, closed) = pair(Role::Host).await;
        closed.cancel();
        assert!(matches!(frames.next().await, Some(Err(ChannelError::ConnectionLost(_)))));
        match relay.next().await.unwrap().unwrap() {
            Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), CLOSE_GOING_AWAY),
            other => panic!("expected a close, got {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn pings_keep_a_quiet_channel_alive_and_a_silent_relay_is_given_up() {
        let (mut frames, mut relay, _closed) = pair(Role::Caller).await;
        let started = Instant::now();
        // The relay answers pings (tungstenite does, while it reads): the channel stays open.
        let answering = tokio::spawn(async move {
            let mut pings = 0;
            while let Some(Ok(message)) = relay.next().await {
                if matches!(message, Message::Ping(_)) {
                    pings += 1;
                    if pings == 5 {
                        break;
                    }
                }
            }
            relay // Kept, silent, from now on.
        });
        let next = frames.next().await;
        assert!(matches!(next, Some(Err(ChannelError::ConnectionLost(ref d))) if d.contains("silent")), "{next:?}");
        assert!(started.elapsed() >= Duration::from_millis(700), "gave up after {:?}", started.elapsed());
        let _relay = answering.await.unwrap();
    }
}
