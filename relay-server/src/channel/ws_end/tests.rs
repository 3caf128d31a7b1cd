//! A channel's WebSocket end against tungstenite's client (and hand-made frames where a client
//! would not send them), over an in-memory pipe.

use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use relay_proto::ws_frame::{FrameHeader, Opcode, WsFrameError, encode_frame};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};

use super::*;
use crate::budget::{Budget, Framing, WsFraming};

const MAX: usize = 2 << 20;
/// How long a closing handshake waits on a peer that makes no progress.
const PATIENCE: Duration = Duration::from_secs(1);

impl WsEnd {
    /// Queues a data message once the end is ready for it, as a splice does.
    async fn feed(&self, text: bool, payload: Bytes) -> Result<(), WsWriteError> {
        poll_fn(|cx| self.poll_ready(cx)).await?;
        self.queue(text, payload)
    }
}

/// A relay end and the raw client side of its pipe.
fn pair(max: usize) -> (WsEnd, DuplexStream) {
    let (client, relay) = tokio::io::duplex(64 * 1024);
    let io =
        Metered::new(Box::new(relay) as Box<dyn Io>, Framing::Ws(WsFraming::new(max)), Some(&Budget::new(64 << 20)));
    (WsEnd::new(io, Vec::new(), max, PATIENCE), client)
}

async fn client(raw: DuplexStream) -> WebSocketStream<DuplexStream> {
    let config = WebSocketConfig::default().max_message_size(None).max_frame_size(None);
    WebSocketStream::from_raw_socket(raw, Role::Client, Some(config)).await
}

/// A client's (masked) frame.
fn masked(fin: bool, opcode: Opcode, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::new();
    encode_frame(fin, opcode, Some([0x11, 0x22, 0x33, 0x44]), payload, &mut frame);
    frame
}

/// The next server frame on `raw`: its header and payload.
async fn server_frame(raw: &mut (impl tokio::io::AsyncRead + Unpin)) -> (FrameHeader, Vec<u8>) {
    let mut bytes = Vec::new();
    loop {
        if let Some((header, at)) = FrameHeader::parse(&bytes).unwrap() {
            let mut payload = bytes[at..].to_vec();
            payload.resize(header.len as usize, 0);
            let have = bytes.len() - at;
            raw.read_exact(&mut payload[have..]).await.unwrap();
            return (header, payload);
        }
        bytes.push(raw.read_u8().await.unwrap());
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// What the end has allocated for its own use: read, gathered and queued bytes.
fn held(end: &WsEnd) -> usize {
    end.lock().ws.buffered_capacity()
}

#[tokio::test]
async fn messages_of_every_size_cross_both_ways() {
    let (end, raw) = pair(MAX);
    let mut ws = client(raw).await;
    let sizes = [0, 1, 125, 126, 2047, 2048, 16 * 1024 + 3, 65_535, 65_536, 300_000, 1 << 20];
    let relay = tokio::spawn(async move {
        for _ in 0..sizes.len() {
            let Received::Binary(data) = end.next().await.unwrap() else { panic!("not binary") };
            end.feed(false, data).await.unwrap();
            end.flush().await.unwrap();
        }
        let Received::Text(text) = end.next().await.unwrap() else { panic!("not text") };
        end.feed(true, text).await.unwrap();
        end.flush().await.unwrap();
        assert_eq!(held(&end), 0, "nothing kept once idle");
        end
    });
    for size in sizes {
        ws.send(Message::binary(pattern(size))).await.unwrap();
        let echoed = ws.next().await.unwrap().unwrap();
        assert_eq!(echoed, Message::binary(pattern(size)), "{size} bytes");
    }
    ws.send(Message::text("héllo")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("héllo"));
    relay.await.unwrap();
}

#[tokio::test]
async fn a_fragmented_message_is_gathered_and_a_ping_inside_it_answered_at_once() {
    let (end, raw) = pair(MAX);
    let body = pattern(100_000);
    let mut bytes = masked(false, Opcode::Binary, &body[..10]);
    bytes.extend(masked(true, Opcode::Ping, b"there?"));
    bytes.extend(masked(false, Opcode::Continuation, &body[10..60_000]));
    bytes.extend(masked(true, Opcode::Continuation, &body[60_000..]));
    let (mut from_relay, mut to_relay) = tokio::io::split(raw);
    let writing = tokio::spawn(async move { to_relay.write_all(&bytes).await.unwrap() });
    assert_eq!(end.next().await.unwrap(), Received::Control, "the ping");
    // Answered though nothing is written and the message is still being read.
    let (pong, payload) = server_frame(&mut from_relay).await;
    assert_eq!((pong.opcode, pong.mask, &payload[..]), (Opcode::Pong, None, &b"there?"[..]));
    assert_eq!(end.next().await.unwrap(), Received::Binary(body.into()));
    writing.await.unwrap();
    assert_eq!(held(&end), 0, "nothing kept once the message is taken");
}

#[tokio::test]
async fn a_message_over_the_bound_is_refused_at_its_header() {
    let (end, mut raw) = pair(1000);
    let mut header = Vec::new();
    FrameHeader { fin: true, opcode: Opcode::Binary, mask: Some([1; 4]), len: 1001 }.encode(&mut header);
    raw.write_all(&header).await.unwrap();
    let error = end.next().await.unwrap_err();
    assert!(error.too_large(), "{error:?}");
}

#[tokio::test]
async fn a_peers_close_is_answered_with_its_code_and_nothing_follows_it() {
    let (end, raw) = pair(MAX);
    let mut ws = client(raw).await;
    ws.send(Message::Close(Some(CloseFrame { code: 4000.into(), reason: "bye".into() }))).await.unwrap();
    assert_eq!(end.next().await.unwrap(), Received::Close(Some((4000, "bye".into()))));
    assert!(matches!(end.feed(false, Bytes::from_static(b"late")).await, Err(WsWriteError::Closed)));
    let closing = tokio::spawn(async move { end.close(None).await });
    let Some(Ok(Message::Close(Some(reply)))) = ws.next().await else { panic!("no reply to the close") };
    assert_eq!(u16::from(reply.code), 4000);
    assert!(ws.next().await.is_none(), "the connection ends after the reply");
    drop(ws);
    tokio::time::timeout(Duration::from_secs(1), closing).await.unwrap().unwrap();
}

#[tokio::test]
async fn the_relay_closing_first_waits_for_the_peers_reply() {
    let (end, raw) = pair(MAX);
    let mut ws = client(raw).await;
    let closing = tokio::spawn(async move { end.close(Some((1001, "going away"))).await });
    let Some(Ok(Message::Close(Some(ours)))) = ws.next().await else { panic!("no close") };
    assert_eq!((u16::from(ours.code), ours.reason.as_str()), (1001, "going away"));
    // tungstenite replies as it reads on.
    assert!(ws.next().await.is_none(), "the relay ends the connection once answered");
    drop(ws);
    tokio::time::timeout(Duration::from_secs(1), closing).await.unwrap().unwrap();
}

/// The messages a closing end has queued, `count` of `size` bytes.
async fn queue_messages(end: &WsEnd, count: usize, size: usize) {
    for i in 0..count {
        end.feed(false, Bytes::from(vec![i as u8; size])).await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_reader_gets_every_byte_and_the_close_however_long_the_tail_takes() {
    let (end, raw) = pair(MAX);
    let mut ws = client(raw).await;
    let (count, size) = (128, 16 * 1024);
    let closing = tokio::spawn(async move {
        queue_messages(&end, count, size).await;
        end.close(Some((1000, "done"))).await;
    });
    // Two megabytes at 160 KiB/s: thirteen seconds, far past any fixed grace, never a whole
    // `PATIENCE` without taking a byte.
    for i in 0..count {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let message = ws.next().await.unwrap().unwrap();
        assert_eq!(message, Message::binary(vec![i as u8; size]), "message {i}");
    }
    let Some(Ok(Message::Close(Some(close)))) = ws.next().await else { panic!("no close after the tail") };
    assert_eq!(u16::from(close.code), 1000);
    assert!(ws.next().await.is_none(), "the relay ends the connection once answered");
    drop(ws);
    tokio::time::timeout(Duration::from_secs(1), closing).await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_reads_nothing_is_dropped_after_the_patience() {
    let (end, raw) = pair(MAX);
    // More than the pipe takes: the first bytes go, then nothing for a whole `PATIENCE`.
    queue_messages(&end, 8, 16 * 1024).await;
    let started = tokio::time::Instant::now();
    end.close(Some((1000, "done"))).await;
    let waited = started.elapsed();
    assert!((PATIENCE..=2 * PATIENCE).contains(&waited), "waited {waited:?}");
    drop(raw);
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_reads_all_but_never_answers_is_dropped_after_the_patience() {
    let (end, raw) = pair(MAX);
    let (mut from_relay, _to_relay) = tokio::io::split(raw);
    let reading = tokio::spawn(async move { while from_relay.read(&mut [0; 4096]).await.unwrap() > 0 {} });
    let started = tokio::time::Instant::now();
    end.close(Some((1000, "done"))).await;
    let waited = started.elapsed();
    assert!((PATIENCE..=2 * PATIENCE).contains(&waited), "waited {waited:?}");
    drop(end);
    tokio::time::timeout(Duration::from_secs(1), reading).await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_end_that_sent_no_close_waits_for_no_reply() {
    let (end, raw) = pair(MAX);
    // The peer reads until the relay's end of the connection, then ends its own.
    let (mut from_relay, to_relay) = tokio::io::split(raw);
    let peer = tokio::spawn(async move {
        while from_relay.read(&mut [0; 4096]).await.unwrap() > 0 {}
        drop(to_relay);
    });
    let started = tokio::time::Instant::now();
    end.close(None).await;
    assert!(started.elapsed() < PATIENCE, "waited {:?}", started.elapsed());
    tokio::time::timeout(Duration::from_secs(1), peer).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_broken_frame_and_an_end_without_close_are_errors() {
    let (end, mut raw) = pair(MAX);
    raw.write_all(&[0x82, 0x01, b'x']).await.unwrap(); // not masked
    assert!(matches!(end.next().await, Err(WsReadError::Protocol(WsFrameError::Unmasked))));

    let (end, raw) = pair(MAX);
    drop(raw);
    assert!(matches!(end.next().await, Err(WsReadError::Ended)));
}
