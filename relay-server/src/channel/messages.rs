//! Splices with a WebSocket end: message by message, one WebSocket message per QUIC frame.
//!
//! Every end's reads draw on the relay's buffer budget ([`crate::budget`]): a message is held
//! from its first byte until it has been written on. WebSocket ends are kept alive: an end
//! silent for `keep_alive_ms` is pinged, and one that sends nothing at all (no frame, no pong)
//! for `idle_timeout_ms` is cut, its channel's other end told as for a peer that went away.
//! Every WebSocket end is finished with a complete closing handshake ([`crate::channel::close`]).

use super::Relayed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{FutureExt, SinkExt, StreamExt};
use quinn::{RecvStream, SendStream, VarInt};
use relay_proto::StreamCode;
use relay_proto::hc::{
    CLOSE_GOING_AWAY, CLOSE_NORMAL, CLOSE_TOO_BIG, ChannelEnd, close_to_stream_code, stream_code_to_close,
};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;

use super::close::CLOSE_GRACE;
use super::ws_end::{Received, WsEnd};
use super::{End, Side, SpliceContext};
use crate::budget::{Budget, Framing, Meter, Metered, Prefixed};
use crate::phase::Phase;

/// One unit of traffic.
#[derive(Clone)]
pub(crate) enum Frame {
    Binary(Bytes),
    /// A WebSocket text message: UTF-8.
    Text(Bytes),
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

/// Why an end failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Its connection broke, or it broke the protocol: it is sent nothing more.
    Lost,
    /// It sent a message larger than the relay takes (`max_frame_bytes`, or the whole buffer
    /// budget).
    TooLarge,
    /// It sent nothing, not even a pong, for the idle timeout.
    Idle,
}

impl Fault {
    /// What the failed end is told, if anything: a QUIC reset code, a WebSocket close.
    fn goodbye(self) -> Option<(StreamCode, u16, &'static str)> {
        match self {
            Fault::Lost => None,
            Fault::TooLarge => Some((StreamCode::ProtocolError, CLOSE_TOO_BIG, "message too large for the relay")),
            // Only WebSocket ends go idle here (QUIC connections have their own idle timeout).
            Fault::Idle => Some((StreamCode::ProtocolError, CLOSE_GOING_AWAY, "idle timeout: no frame or pong")),
        }
    }
}

/// What a source yields next.
pub(crate) enum Next {
    Frame(Frame),
    /// A clean end: a WebSocket close frame (code, reason), or a QUIC stream's end.
    Close(Option<(u16, String)>),
    Failed(Fault),
}

/// The receiving half of an end, frame by frame. The QUIC half is boxed: a splice holds two
/// sources and two sinks inline for its channel's life, most often WebSocket ends (a few words).
pub(crate) enum Source {
    Quic(Box<FramedRead<Metered<RecvStream>, LengthDelimitedCodec>>, Arc<Meter>),
    Ws(WsEnd),
}

/// The sending half of an end, frame by frame.
pub(crate) enum Sink {
    Quic(Box<FramedWrite<SendStream, LengthDelimitedCodec>>),
    Ws(WsEnd),
}

/// Splits an end into frame source and sink; QUIC frames longer than `max_frame` are refused.
/// What the source reads draws on `budget`.
pub(crate) fn halves(end: End, max_frame: usize, budget: &Budget) -> (Source, Sink) {
    match end {
        End::Quic(pipe) => {
            let codec =
                || LengthDelimitedCodec::builder().length_field_length(4).max_frame_length(max_frame).new_codec();
            let recv = Metered::new(pipe.recv, Framing::Prefixed(Prefixed::default()), Some(budget));
            let meter = recv.meter().clone();
            let source = Source::Quic(Box::new(FramedRead::new(recv, codec())), meter);
            (source, Sink::Quic(Box::new(FramedWrite::new(pipe.send, codec()))))
        }
        End::Ws(ws) => (Source::Ws(ws.clone()), Sink::Ws(ws)),
    }
}

impl Source {
    /// The next unit. A frame stays counted against the buffer budget until
    /// [`written_on`](Self::written_on).
    pub(crate) async fn next(&mut self) -> Next {
        self.meter().resume();
        match self {
            Source::Quic(read, meter) => match read.next().await {
                Some(Ok(frame)) => {
                    meter.unit_yielded();
                    Next::Frame(Frame::Binary(frame.freeze()))
                }
                None => Next::Close(None),
                Some(Err(_)) if meter.refused() => Next::Failed(Fault::TooLarge),
                // The codec refuses a frame over `max_frame_bytes` as invalid data.
                Some(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => Next::Failed(Fault::TooLarge),
                Some(Err(_)) => Next::Failed(Fault::Lost),
            },
            Source::Ws(read) => loop {
                let meter = read.meter();
                let received = match read.next().await {
                    Ok(received) => received,
                    Err(e) if e.too_large() || meter.refused() => return Next::Failed(Fault::TooLarge),
                    Err(_) => return Next::Failed(Fault::Lost),
                };
                meter.unit_yielded();
                return match received {
                    Received::Binary(data) => Next::Frame(Frame::Binary(data)),
                    Received::Text(text) => Next::Frame(Frame::Text(text)),
                    Received::Close(close) => {
                        meter.release_delivered();
                        Next::Close(close)
                    }
                    // Pings (answered as they are read) and pongs only prove the peer alive.
                    Received::Control => {
                        meter.release_delivered();
                        continue;
                    }
                };
            },
        }
    }

    /// Everything this source yielded has been written on: its bytes go back to the budget.
    pub(crate) fn written_on(&self) {
        self.meter().release_delivered();
    }

    /// Stops reading, telling a QUIC peer why.
    pub(crate) fn stop(&mut self, code: StreamCode) {
        if let Source::Quic(read, _) = self {
            let _ = read.get_mut().get_mut().stop(quic_code(code));
        }
    }

    fn meter(&self) -> &Arc<Meter> {
        match self {
            Source::Quic(_, meter) => meter,
            Source::Ws(ws) => ws.meter(),
        }
    }

    /// The meter of a WebSocket end, whose liveness the splice watches.
    fn ws_meter(&self) -> Option<&Arc<Meter>> {
        match self {
            Source::Quic(..) => None,
            Source::Ws(ws) => Some(ws.meter()),
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
    ///
    /// Readiness, then the frame, rather than each transport's own feed future: those are
    /// several times larger, and a channel's splice holds this future for the channel's life.
    pub(crate) fn feed(&mut self, frame: Frame) -> impl Future<Output = Result<(), ()>> + '_ {
        let mut frame = Some(frame);
        std::future::poll_fn(move |cx| {
            std::task::ready!(self.poll_ready(cx))?;
            // Taken once: the future is done when it has sent it.
            std::task::Poll::Ready(frame.take().map_or(Ok(()), |frame| self.start_send(frame)))
        })
    }

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), ()>> {
        match self {
            Sink::Quic(write) => futures::Sink::<Bytes>::poll_ready(std::pin::Pin::new(write), cx).map_err(drop),
            Sink::Ws(write) => write.poll_ready(cx).map_err(drop),
        }
    }

    fn start_send(&mut self, frame: Frame) -> Result<(), ()> {
        match (self, frame) {
            (Sink::Quic(write), Frame::Binary(data) | Frame::Text(data)) => {
                futures::Sink::start_send(std::pin::Pin::new(write), data).map_err(drop)
            }
            (Sink::Ws(write), Frame::Binary(data)) => write.queue(false, data).map_err(drop),
            (Sink::Ws(write), Frame::Text(text)) => write.queue(true, text).map_err(drop),
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
                let closed_by = match from {
                    Side::Host => ChannelEnd::Listener,
                    Side::Caller => ChannelEnd::Sender,
                };
                let code = close_to_stream_code(close.as_ref().map(|(code, _)| *code), closed_by);
                let stream = write.get_mut();
                let _ = match code {
                    None => stream.finish(),
                    Some(code) => stream.reset(quic_code(code)),
                };
            }
            Sink::Ws(write) => {
                let (code, reason) = close.unwrap_or((CLOSE_NORMAL, String::new()));
                // Refused if this end closed first: its reply is already queued.
                let _ = write.send_close(code, &reason).await;
            }
        }
    }

    /// Ends abnormally: resets a QUIC stream with `code`, closes a WebSocket with the close code
    /// that says the same.
    pub(crate) async fn cut(&mut self, code: StreamCode, reason: &str) {
        self.cut_closing(code, stream_code_to_close(code), reason).await;
    }

    /// Ends abnormally: resets a QUIC stream with `code`, closes a WebSocket with `ws_code` (a
    /// more precise code than `code`'s, such as "message too big").
    pub(crate) async fn cut_closing(&mut self, code: StreamCode, ws_code: u16, reason: &str) {
        match self {
            Sink::Quic(write) => {
                let _ = write.get_mut().reset(quic_code(code));
            }
            Sink::Ws(write) => {
                let _ = write.send_close(ws_code, reason).await;
            }
        }
    }

    /// Pings a WebSocket end.
    async fn ping(&mut self) -> Result<(), ()> {
        match self {
            Sink::Quic(_) => Ok(()),
            Sink::Ws(write) => write.ping().await.map_err(drop),
        }
    }

    fn meter(&self) -> Option<&Arc<Meter>> {
        match self {
            Sink::Quic(_) => None,
            Sink::Ws(ws) => Some(ws.meter()),
        }
    }
}

/// Finishes an end after the splice: a WebSocket's closing handshake is completed (whatever close
/// was sent or received), within [`CLOSE_GRACE`]; a QUIC stream's reading is stopped with
/// `code`.
pub(crate) async fn finish(source: Source, sink: Sink, code: StreamCode) {
    match (source, sink) {
        (Source::Ws(ws), Sink::Ws(..)) => ws.close(None).await,
        (mut source, _) => source.stop(code),
    }
}

fn quic_code(code: StreamCode) -> VarInt {
    VarInt::from_u64(code.to_u64()).unwrap_or_default()
}

/// Frames passed on before a flush, at most, when they arrive faster than they go.
const MAX_BATCH: usize = 64;

/// When a ping is due to a WebSocket end last heard from at `heard`, last pinged at `pinged`.
///
/// An end the relay is not reading (`heard` is `None`: it waits for budget, or for the other end
/// to take what it sent) is pinged once per interval all the same. Its own pings, and its
/// answers, wait behind what it is held back from sending, so the relay's pings are all it hears
/// to know the relay alive: without them a caller held back by a slow host for longer than its
/// idle timeout gave the channel up as lost.
fn ping_due(heard: Option<Instant>, pinged: Instant, keep_alive: Duration) -> Instant {
    heard.map_or(pinged, |heard| heard.max(pinged)) + keep_alive
}

/// Whether an end last heard from at `heard` (`None`: the relay is not reading it, for want of
/// budget) is past the idle timeout at `now`.
fn is_idle(heard: Option<Instant>, now: Instant, idle_timeout: Duration) -> bool {
    heard.is_some_and(|heard| now.saturating_duration_since(heard) >= idle_timeout)
}

/// Copies `from` into `to` until a clean close, which is passed on; on failure names the side.
/// Frames that have already arrived go out together, in one write (and one TLS record, one
/// packet) where they fit, and are flushed as soon as no more are waiting. While `from` is
/// quiet, a WebSocket `to` that has been silent for `keep_alive` is pinged.
async fn pump(
    from: &mut Source,
    from_side: Side,
    to: &mut Sink,
    to_side: Side,
    keep_alive: Duration,
    relayed: &Relayed,
) -> Result<(), (Side, Fault)> {
    let lost = |side| (side, Fault::Lost);
    let pinging = to.meter().is_some();
    let mut pinged = Instant::now();
    let ping = tokio::time::sleep(keep_alive);
    tokio::pin!(ping);
    loop {
        let first = tokio::select! {
            next = from.next() => next,
            () = &mut ping, if pinging => {
                let now = Instant::now();
                let due = ping_due(to.meter().and_then(|m| m.last_heard()), pinged, keep_alive);
                if now >= due {
                    // Boxed, as the close below: rare, and inline they would size every
                    // channel's splice for its whole life.
                    Box::pin(to.ping()).await.map_err(|()| lost(to_side))?;
                    pinged = now;
                }
                ping.as_mut().reset(ping_due(Some(now), pinged, keep_alive).max(due).into());
                continue;
            }
        };
        // Not read while what it sent is written on, however slowly the other end takes it.
        from.meter().pause();
        let mut next = Some(first);
        let mut fed = 0;
        while let Some(arrived) = next.take() {
            match arrived {
                Next::Frame(frame) => {
                    relayed.add(to_side, frame.len());
                    to.feed(frame).await.map_err(|()| lost(to_side))?
                }
                Next::Close(close) => {
                    Box::pin(to.close(close, from_side)).await;
                    return Ok(());
                }
                Next::Failed(fault) => return Err((from_side, fault)),
            }
            fed += 1;
            if fed < MAX_BATCH {
                next = from.next().now_or_never();
                from.meter().pause();
            }
        }
        to.flush().await.map_err(|()| lost(to_side))?;
        from.written_on();
    }
}

/// Resolves with the first WebSocket end that has been idle past the timeout, checking every
/// `keep_alive`.
async fn first_idle(ends: [(Side, Option<Arc<Meter>>); 2], keep_alive: Duration, idle_timeout: Duration) -> Side {
    if ends.iter().all(|(_, meter)| meter.is_none()) {
        return std::future::pending().await;
    }
    loop {
        tokio::time::sleep(keep_alive).await;
        let now = Instant::now();
        for (side, meter) in &ends {
            if let Some(meter) = meter
                && is_idle(meter.last_heard(), now, idle_timeout)
            {
                return *side;
            }
        }
    }
}

pub(super) async fn splice_messages(
    caller: End,
    host: End,
    host_dead: Option<CancellationToken>,
    context: SpliceContext<'_>,
) -> Option<Side> {
    let max_frame = context.config.max_frame_bytes;
    let keep_alive = context.config.keep_alive();
    let idle_timeout = context.config.idle_timeout();
    let (mut caller_source, mut caller_sink) = halves(caller, max_frame, context.budget);
    let (mut host_source, mut host_sink) = halves(host, max_frame, context.budget);
    let meters = [(Side::Caller, caller_source.ws_meter().cloned()), (Side::Host, host_source.ws_meter().cloned())];
    let quic = |source: &Source| matches!(source, Source::Quic(..));
    let (caller_quic, host_quic) = (quic(&caller_source), quic(&host_source));
    enum Ending {
        Clean,
        Failed(Side, Fault),
        Shutdown,
    }
    let ending = {
        let mut down = std::pin::pin!(pump(
            &mut host_source,
            Side::Host,
            &mut caller_sink,
            Side::Caller,
            keep_alive,
            context.relayed
        ));
        let mut up = std::pin::pin!(pump(
            &mut caller_source,
            Side::Caller,
            &mut host_sink,
            Side::Host,
            keep_alive,
            context.relayed
        ));
        let first = tokio::select! {
            r = &mut down => r.map(|()| Side::Host),
            r = &mut up => r.map(|()| Side::Caller),
            () = context.phase.reached(Phase::Closing) => Ok(Side::Caller),
            () = async { match &host_dead { Some(dead) => dead.cancelled().await, None => std::future::pending().await } } => {
                tracing::debug!("the listener was found dead; cutting its channel");
                Err((Side::Host, Fault::Lost))
            }
            side = first_idle(meters, keep_alive, idle_timeout) => {
                tracing::debug!(?side, "channel end silent past the idle timeout; cutting the channel");
                Err((side, Fault::Idle))
            }
        };
        if context.phase.get() >= Phase::Closing {
            Ending::Shutdown
        } else {
            match first {
                Err((side, fault)) => Ending::Failed(side, fault),
                Ok(closed) => {
                    // One end closed cleanly. A QUIC stream's end closes one direction only: let
                    // the other finish. A WebSocket that sent a close can take nothing more.
                    let closed_quic = if closed == Side::Caller { caller_quic } else { host_quic };
                    if closed_quic {
                        let rest = if closed == Side::Host { up.as_mut() } else { down.as_mut() };
                        let _ = tokio::time::timeout(CLOSE_GRACE, rest).await;
                    }
                    Ending::Clean
                }
            }
        }
    };
    let (failed, caller_code, host_code) = match ending {
        Ending::Clean => (None, StreamCode::Done, StreamCode::Done),
        Ending::Failed(side, fault) => {
            let (failed_sink, other_sink) = match side {
                Side::Host => (&mut host_sink, &mut caller_sink),
                Side::Caller => (&mut caller_sink, &mut host_sink),
            };
            let (gone, reason) = match side {
                Side::Host => (StreamCode::ListenerGone, "the listener went away"),
                Side::Caller => (StreamCode::CallerGone, "the sender went away"),
            };
            if let Some((code, ws_code, why)) = fault.goodbye() {
                failed_sink.cut_closing(code, ws_code, why).await;
            }
            other_sink.cut(gone, reason).await;
            (Some(side), gone, gone)
        }
        Ending::Shutdown => {
            for sink in [&mut caller_sink, &mut host_sink] {
                sink.cut(StreamCode::RelayShutdown, "relay shutting down").await;
            }
            (None, StreamCode::RelayShutdown, StreamCode::RelayShutdown)
        }
    };
    // Boxed: the two closes are over 5 KiB of future, which every open channel would otherwise
    // carry while it is idle, though they run only once, at its end.
    Box::pin(async {
        futures::join!(finish(caller_source, caller_sink, caller_code), finish(host_source, host_sink, host_code))
    })
    .await;
    failed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A WebSocket end over an in-memory pipe.
    fn ws_end(budget: &Budget) -> End {
        use crate::budget::{Framing, WsFraming};
        let (_client, relay) = tokio::io::duplex(1024);
        let io = Metered::new(
            Box::new(relay) as Box<dyn crate::channel::Io>,
            Framing::Ws(WsFraming::new(1024)),
            Some(budget),
        );
        End::Ws(WsEnd::new(io, Vec::new(), 1024, Duration::from_secs(1)))
    }

    #[tokio::test]
    async fn a_splice_is_sized_for_its_traffic_not_its_rare_paths() {
        // Every open channel with a WebSocket end holds this future, boxed, for its whole life:
        // 2,232 bytes when each transport's feed future, the ping and the close were inline.
        let (config, budget, phase) = (crate::Config::default(), Budget::new(1 << 20), crate::phase::RelayPhase::new());
        let relayed = Relayed::default();
        let context = SpliceContext { config: &config, budget: &budget, phase: &phase, relayed: &relayed };
        let splice = splice_messages(ws_end(&budget), ws_end(&budget), None, context);
        let size = std::mem::size_of_val(&splice);
        assert!(size <= 2000, "{size} bytes");
    }

    #[test]
    fn an_end_is_pinged_after_keep_alive_of_silence_and_idle_only_while_read() {
        let t0 = Instant::now();
        let second = Duration::from_secs(1);
        assert_eq!(ping_due(Some(t0), t0, second), t0 + second);
        assert_eq!(ping_due(Some(t0 + 3 * second), t0, second), t0 + 4 * second, "heard since: later");
        assert_eq!(ping_due(Some(t0), t0 + 2 * second, second), t0 + 3 * second, "pinged since: once per interval");
        assert_eq!(ping_due(None, t0 + 2 * second, second), t0 + 3 * second, "not read: once per interval");
        assert!(!is_idle(Some(t0), t0 + 7 * second, 8 * second));
        assert!(is_idle(Some(t0), t0 + 8 * second, 8 * second));
        assert!(!is_idle(None, t0 + 100 * second, 8 * second), "an end the relay is not reading is not idle");
    }
}
