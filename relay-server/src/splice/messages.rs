//! Splices with a WebSocket end: message by message, one WebSocket message per QUIC frame.

use std::time::Duration;

use bytes::Bytes;
use futures::stream::{SplitSink, SplitStream};
use futures::{FutureExt, SinkExt, StreamExt};
use quinn::{RecvStream, SendStream, VarInt};
use relay_rpc::proto::StreamCode;
use relay_rpc::proto::hc::{CLOSE_GOING_AWAY, CLOSE_NORMAL, CLOSE_RESTART};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;

use super::{End, Side};
use crate::state::{Phase, Shared};
use crate::ws::WsStream;

/// How long the second direction may take to finish after the first closed cleanly.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// One unit of traffic.
#[derive(Clone)]
pub(crate) enum Frame {
    Binary(Bytes),
    Text(tokio_tungstenite::tungstenite::Utf8Bytes),
}

impl Frame {
    /// The payload's length in bytes.
    pub(crate) fn len(&self) -> usize {
        match self {
            Frame::Binary(data) => data.len(),
            Frame::Text(text) => text.len(),
        }
    }
}

/// What a source yields next.
pub(crate) enum Next {
    Frame(Frame),
    /// A clean end: a WebSocket close frame (code, reason), or a QUIC stream's end.
    Close(Option<(u16, String)>),
    Failed,
}

/// The receiving half of an end, frame by frame.
pub(crate) enum Source {
    Quic(FramedRead<RecvStream, LengthDelimitedCodec>),
    Ws(SplitStream<WsStream>),
}

/// The sending half of an end, frame by frame.
pub(crate) enum Sink {
    Quic(FramedWrite<SendStream, LengthDelimitedCodec>),
    Ws(SplitSink<WsStream, Message>),
}

/// Splits an end into frame source and sink; QUIC frames longer than `max_frame` are refused.
pub(crate) fn halves(end: End, max_frame: usize) -> (Source, Sink) {
    match end {
        End::Quic(pipe) => {
            let codec =
                || LengthDelimitedCodec::builder().length_field_length(4).max_frame_length(max_frame).new_codec();
            (Source::Quic(FramedRead::new(pipe.recv, codec())), Sink::Quic(FramedWrite::new(pipe.send, codec())))
        }
        End::Ws(ws) => {
            let (sink, source) = (*ws).split();
            (Source::Ws(source), Sink::Ws(sink))
        }
    }
}

impl Source {
    pub(crate) async fn next(&mut self) -> Next {
        match self {
            Source::Quic(read) => match read.next().await {
                Some(Ok(frame)) => Next::Frame(Frame::Binary(frame.freeze())),
                None => Next::Close(None),
                Some(Err(_)) => Next::Failed,
            },
            Source::Ws(read) => loop {
                return match read.next().await {
                    Some(Ok(Message::Binary(data))) => Next::Frame(Frame::Binary(data)),
                    Some(Ok(Message::Text(text))) => Next::Frame(Frame::Text(text)),
                    Some(Ok(Message::Close(frame))) => {
                        Next::Close(frame.map(|f| (u16::from(f.code), f.reason.to_string())))
                    }
                    Some(Ok(_)) => continue, // pings and pongs are the WebSocket's own business
                    Some(Err(_)) | None => Next::Failed,
                };
            },
        }
    }

    /// Stops reading, telling a QUIC peer why.
    pub(crate) fn stop(&mut self, code: StreamCode) {
        if let Source::Quic(read) = self {
            let _ = read.get_mut().stop(quic_code(code));
        }
    }

    /// After this end was sent a close: a QUIC stream is stopped with `code`; a WebSocket is read
    /// (and what arrives dropped) until the peer's close or end, within [`CLOSE_GRACE`], so that
    /// closing the socket with unread data does not reset the connection and lose the close frame.
    pub(crate) async fn finish_after_close(&mut self, code: StreamCode) {
        match self {
            Source::Quic(_) => self.stop(code),
            Source::Ws(_) => {
                let _ =
                    tokio::time::timeout(CLOSE_GRACE, async { while let Next::Frame(_) = self.next().await {} }).await;
            }
        }
    }
}

impl Sink {
    /// Sends `frame` and flushes it.
    pub(crate) async fn send(&mut self, frame: Frame) -> Result<(), ()> {
        self.feed(frame).await?;
        self.flush().await
    }

    /// Queues `frame` for sending without flushing; the sink writes out as its buffer fills.
    pub(crate) async fn feed(&mut self, frame: Frame) -> Result<(), ()> {
        match (self, frame) {
            (Sink::Quic(write), Frame::Binary(data)) => write.feed(data).await.map_err(drop),
            (Sink::Quic(write), Frame::Text(text)) => write.feed(Bytes::from(text)).await.map_err(drop),
            (Sink::Ws(write), Frame::Binary(data)) => write.feed(Message::Binary(data)).await.map_err(drop),
            (Sink::Ws(write), Frame::Text(text)) => write.feed(Message::Text(text)).await.map_err(drop),
        }
    }

    /// Writes out every queued frame.
    pub(crate) async fn flush(&mut self) -> Result<(), ()> {
        match self {
            Sink::Quic(write) => SinkExt::<Bytes>::flush(write).await.map_err(drop),
            Sink::Ws(write) => write.flush().await.map_err(drop),
        }
    }

    /// Passes on a close from `from`: a WebSocket close frame as it is; to a QUIC stream, a normal
    /// close as its end and any other as a reset saying what the close code says.
    pub(crate) async fn close(&mut self, close: Option<(u16, String)>, from: Side) {
        match self {
            Sink::Quic(write) => {
                let _ = SinkExt::<Bytes>::flush(write).await;
                let code = match close.as_ref().map(|(code, _)| *code) {
                    None | Some(CLOSE_NORMAL) => None,
                    Some(CLOSE_GOING_AWAY) if from == Side::Host => Some(StreamCode::ListenerGone),
                    Some(CLOSE_GOING_AWAY) => Some(StreamCode::CallerGone),
                    Some(CLOSE_RESTART) => Some(StreamCode::RelayShutdown),
                    Some(_) => Some(StreamCode::ProtocolError),
                };
                let stream = write.get_mut();
                let _ = match code {
                    None => stream.finish(),
                    Some(code) => stream.reset(quic_code(code)),
                };
            }
            Sink::Ws(write) => {
                let (code, reason) = close.unwrap_or((CLOSE_NORMAL, String::new()));
                send_close(write, code, &reason).await;
            }
        }
    }

    /// Ends abnormally: resets a QUIC stream with `code`, closes a WebSocket with `ws_code`.
    pub(crate) async fn cut(&mut self, code: StreamCode, ws_code: u16, reason: &str) {
        match self {
            Sink::Quic(write) => {
                let _ = write.get_mut().reset(quic_code(code));
            }
            Sink::Ws(write) => send_close(write, ws_code, reason).await,
        }
    }
}

async fn send_close(write: &mut SplitSink<WsStream, Message>, code: u16, reason: &str) {
    let frame = CloseFrame { code: code.into(), reason: reason.to_owned().into() };
    let _ = write.send(Message::Close(Some(frame))).await;
}

fn quic_code(code: StreamCode) -> VarInt {
    VarInt::from_u64(code.to_u64()).unwrap_or_default()
}

/// Frames passed on before a flush, at most, when they arrive faster than they go.
const MAX_BATCH: usize = 64;

/// Copies `from` into `to` until a clean close, which is passed on; on failure names the side.
/// Frames that have already arrived go out together, in one write (and one TLS record, one
/// packet) where they fit, and are flushed as soon as no more are waiting.
async fn pump(from: &mut Source, from_side: Side, to: &mut Sink, to_side: Side) -> Result<(), Side> {
    loop {
        let mut next = Some(from.next().await);
        let mut fed = 0;
        while let Some(arrived) = next.take() {
            match arrived {
                Next::Frame(frame) => to.feed(frame).await.map_err(|()| to_side)?,
                Next::Close(close) => {
                    to.close(close, from_side).await;
                    return Ok(());
                }
                Next::Failed => return Err(from_side),
            }
            fed += 1;
            if fed < MAX_BATCH {
                next = from.next().now_or_never();
            }
        }
        to.flush().await.map_err(|()| to_side)?;
    }
}

pub(super) async fn splice_messages(
    caller: End,
    host: End,
    host_dead: Option<CancellationToken>,
    shared: &Shared,
) -> Option<Side> {
    let max_frame = shared.config.max_frame_bytes;
    let (mut caller_source, mut caller_sink) = halves(caller, max_frame);
    let (mut host_source, mut host_sink) = halves(host, max_frame);
    enum Ending {
        Clean,
        Failed(Side),
        Shutdown,
    }
    let ending = {
        let mut down = std::pin::pin!(pump(&mut host_source, Side::Host, &mut caller_sink, Side::Caller));
        let mut up = std::pin::pin!(pump(&mut caller_source, Side::Caller, &mut host_sink, Side::Host));
        let first = tokio::select! {
            r = &mut down => (r, true),
            r = &mut up => (r, false),
            () = shared.reached(Phase::Closing) => (Ok(()), false),
            () = async { match &host_dead { Some(dead) => dead.cancelled().await, None => std::future::pending().await } } => {
                tracing::debug!("the listener was found dead; cutting its channel");
                (Err(Side::Host), true)
            }
        };
        if shared.phase() >= Phase::Closing {
            Ending::Shutdown
        } else {
            match first {
                (Err(side), _) => Ending::Failed(side),
                (Ok(()), down_finished) => {
                    // One direction closed cleanly; let the other finish its close handshake.
                    let rest = if down_finished { up.as_mut() } else { down.as_mut() };
                    let _ = tokio::time::timeout(CLOSE_GRACE, rest).await;
                    Ending::Clean
                }
            }
        }
    };
    match ending {
        Ending::Clean => None,
        Ending::Failed(Side::Host) => {
            caller_sink.cut(StreamCode::ListenerGone, CLOSE_GOING_AWAY, "the listener went away").await;
            caller_source.finish_after_close(StreamCode::ListenerGone).await;
            Some(Side::Host)
        }
        Ending::Failed(Side::Caller) => {
            host_sink.cut(StreamCode::CallerGone, CLOSE_GOING_AWAY, "the sender went away").await;
            host_source.finish_after_close(StreamCode::CallerGone).await;
            Some(Side::Caller)
        }
        Ending::Shutdown => {
            for sink in [&mut caller_sink, &mut host_sink] {
                sink.cut(StreamCode::RelayShutdown, CLOSE_RESTART, "relay shutting down").await;
            }
            None
        }
    }
}
