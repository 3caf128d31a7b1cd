//! A client end against a server end, over an in-memory pipe. The relay's channel ends are tested
//! against tungstenite's client (relay-server), and the clients' against its server (relay-rpc).

use std::future::poll_fn;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream};

use super::*;
use crate::ws_frame::encode_frame;

const MAX: usize = 2 << 20;

fn pair() -> (WsConnection<DuplexStream>, WsConnection<DuplexStream>) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    (WsConnection::new(a, Side::Client, &[], MAX), WsConnection::new(b, Side::Server, &[], MAX))
}

async fn send(end: &mut WsConnection<DuplexStream>, text: bool, payload: Bytes) {
    poll_fn(|cx| end.poll_ready(cx)).await.unwrap();
    end.queue_message(text, payload).unwrap();
    poll_fn(|cx| end.poll_flush(cx)).await.unwrap();
}

async fn next(end: &mut WsConnection<DuplexStream>) -> Result<Received, WsReadError> {
    poll_fn(|cx| end.poll_next(cx)).await
}

fn pattern(len: usize) -> Bytes {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[tokio::test]
async fn messages_of_every_size_cross_both_ways_and_nothing_is_held_after() {
    let (mut client, mut server) = pair();
    for len in [0, 1, 125, 126, 2047, 2048, 16 * 1024, 16 * 1024 + 1, 65_536, 1 << 20] {
        let message = pattern(len);
        // Both ends read and write at once: a large message does not fit the pipe.
        let (_, received) = tokio::join!(send(&mut client, false, message.clone()), next(&mut server));
        assert_eq!(received.unwrap(), Received::Binary(message.clone()), "{len} bytes to the server");
        let (_, received) = tokio::join!(send(&mut server, false, message.clone()), next(&mut client));
        assert_eq!(received.unwrap(), Received::Binary(message), "{len} bytes to the client");
        assert_eq!((client.buffered_capacity(), server.buffered_capacity()), (0, 0), "{len} bytes");
    }
    send(&mut client, true, Bytes::from_static("héllo".as_bytes())).await;
    assert_eq!(next(&mut server).await.unwrap(), Received::Text(Bytes::from_static("héllo".as_bytes())));
}

#[tokio::test]
async fn a_client_masks_every_frame_with_a_new_key() {
    let (a, mut raw) = tokio::io::duplex(4096);
    let mut client = WsConnection::new(a, Side::Client, &[], MAX);
    send(&mut client, false, Bytes::from_static(b"same")).await;
    send(&mut client, false, Bytes::from_static(b"same")).await;
    let mut bytes = [0u8; 2 * (2 + 4 + 4)];
    raw.read_exact(&mut bytes).await.unwrap();
    let (first, at) = FrameHeader::parse(&bytes).unwrap().unwrap();
    let (second, _) = FrameHeader::parse(&bytes[at + 4..]).unwrap().unwrap();
    assert!(first.mask.is_some() && second.mask.is_some());
    // One in 2^32 for the same key twice.
    assert_ne!(first.mask, second.mask);
    assert_ne!(&bytes[at..at + 4], b"same", "the payload goes masked");
}

#[tokio::test]
async fn pings_and_a_close_are_answered_and_the_close_code_echoed() {
    let (mut client, mut server) = pair();
    server.queue_ping().unwrap();
    poll_fn(|cx| server.poll_flush(cx)).await.unwrap();
    assert_eq!(next(&mut client).await.unwrap(), Received::Control);
    // The client's pong went out with its read.
    assert_eq!(next(&mut server).await.unwrap(), Received::Control);

    assert!(server.queue_close(Some((1001, "going"))));
    assert!(!server.queue_close(None), "one close per end");
    poll_fn(|cx| server.poll_flush(cx)).await.unwrap();
    assert_eq!(next(&mut client).await.unwrap(), Received::Close(Some((1001, "going".into()))));
    assert!(client.close_sent() && client.close_received());
    assert!(matches!(client.queue_message(false, Bytes::new()), Err(WsWriteError::Closed)));
    assert!(matches!(next(&mut client).await, Err(WsReadError::Closed)));
    assert_eq!(next(&mut server).await.unwrap(), Received::Close(Some((1001, "going".into()))));
}

#[tokio::test]
async fn a_masked_frame_from_the_server_and_an_oversized_message_are_refused() {
    let (a, mut raw) = tokio::io::duplex(4096);
    let mut client = WsConnection::new(a, Side::Client, &[], 1024);
    let mut frame = Vec::new();
    encode_frame(true, Opcode::Binary, Some([1, 2, 3, 4]), b"x", &mut frame);
    raw.write_all(&frame).await.unwrap();
    assert!(matches!(next(&mut client).await, Err(WsReadError::Protocol(WsFrameError::Masked))));

    let (a, mut raw) = tokio::io::duplex(4096);
    let mut client = WsConnection::new(a, Side::Client, &[], 1024);
    FrameHeader { fin: true, opcode: Opcode::Binary, mask: None, len: 1025 }.encode(&mut frame);
    raw.write_all(&frame[frame.len() - 4..]).await.unwrap();
    let err = next(&mut client).await.unwrap_err();
    assert!(err.too_large(), "{err:?}");

    let (a, raw) = tokio::io::duplex(4096);
    let mut client = WsConnection::new(a, Side::Client, &[], 1024);
    drop(raw);
    assert!(matches!(next(&mut client).await, Err(WsReadError::Ended)));
}

#[tokio::test]
async fn bytes_after_the_handshake_are_read_first() {
    let (a, _raw) = tokio::io::duplex(4096);
    let mut leftover = Vec::new();
    encode_frame(true, Opcode::Binary, None, b"early", &mut leftover);
    let mut client = WsConnection::new(a, Side::Client, &leftover, 1024);
    assert_eq!(next(&mut client).await.unwrap(), Received::Binary(Bytes::from_static(b"early")));
}

#[test]
fn a_close_reason_is_cut_to_what_a_frame_holds_at_a_character() {
    let long = "é".repeat(100);
    let payload = close_payload(Some(1000), &long);
    assert!(payload.len() <= 125);
    assert!(std::str::from_utf8(&payload[2..]).is_ok());
    assert_eq!(close_payload(None, "ignored"), Bytes::new());
}

#[tokio::test]
async fn a_large_masked_payload_survives_writes_taken_a_few_bytes_at_a_time() {
    // The pipe takes 100 bytes at a time: each masked piece is mostly not taken, and masked
    // again from where the write stopped.
    let (a, b) = tokio::io::duplex(100);
    let (mut client, mut server) =
        (WsConnection::new(a, Side::Client, &[], MAX), WsConnection::new(b, Side::Server, &[], MAX));
    let message = pattern(200 * 1024 + 3);
    let (_, received) = tokio::join!(send(&mut client, false, message.clone()), next(&mut server));
    assert_eq!(received.unwrap(), Received::Binary(message));
}

#[tokio::test]
async fn queuing_waits_once_much_is_queued_until_the_peer_reads() {
    let (a, mut raw) = tokio::io::duplex(1024);
    let mut client = WsConnection::new(a, Side::Client, &[], MAX);
    let mut cx = Context::from_waker(std::task::Waker::noop());
    // Queued without a flush, a message at a time, until the end wants what it holds written.
    let mut queued = 0;
    while client.poll_ready(&mut cx).is_ready() {
        client.queue_message(false, pattern(64 * 1024)).unwrap();
        queued += 1;
        assert!(queued <= 5, "{queued} messages of 64 KiB queued and still ready");
    }
    assert_eq!(queued, 4, "ready until 256 KiB are queued");
    // The peer reads: the end is ready again once less is queued, and everything goes out.
    let reading = tokio::spawn(async move {
        let (mut sink, mut total) = (vec![0u8; 64 * 1024], 0);
        loop {
            match raw.read(&mut sink).await.unwrap() {
                0 => break total,
                n => total += n,
            }
        }
    });
    poll_fn(|cx| client.poll_ready(cx)).await.unwrap();
    assert!(client.queued() < 256 * 1024, "{}", client.queued());
    poll_fn(|cx| client.poll_flush(cx)).await.unwrap();
    assert_eq!(client.queued(), 0);
    drop(client);
    assert_eq!(
        reading.await.unwrap(),
        4 * (2 + 8 + 4 + 64 * 1024),
        "four frames: 2 bytes, a 64-bit length, a mask, 64 KiB"
    );
}
