//! Backpressure: a caller that stops reading slows only its own channel; the other channels on
//! the same host connection keep moving, over QUIC and over wss.

use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use relay_rpc::Channel;
use relay_tests::TestRelay;

const FRAME: usize = 64 * 1024;

/// A host on `url` whose listener on `echo` echoes every frame back.
async fn echo_host(relay: &TestRelay, url: &str) -> relay_rpc::Host {
    let host = relay.host_on(url).await;
    let mut listener = host.listen("echo").await.unwrap();
    tokio::spawn(async move {
        while let Ok(incoming) = listener.accept().await {
            let Ok(channel) = incoming.accept().await else { continue };
            tokio::spawn(async move {
                let (mut tx, mut rx) = channel.split();
                while let Some(Ok(frame)) = rx.next().await {
                    if tx.send(frame.freeze()).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    host
}

/// Sends `frames` frames and reads the echo of each.
async fn echo_round(channel: Channel, frames: usize) -> usize {
    let (mut tx, mut rx) = channel.split();
    let writer = tokio::spawn(async move {
        for i in 0..frames {
            tx.send(Bytes::from(vec![i as u8; FRAME])).await.unwrap();
        }
        tx
    });
    let mut echoed = 0;
    while echoed < frames {
        let frame = rx.next().await.unwrap().unwrap();
        assert_eq!(frame.len(), FRAME);
        assert_eq!(frame[0], echoed as u8);
        echoed += 1;
    }
    drop(writer.await.unwrap());
    echoed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_channel_does_not_slow_the_others() {
    let relay = TestRelay::start().await;
    for url in [relay.url.clone(), relay.ws_url.clone()] {
        let _host = echo_host(&relay, &url).await;
        let caller = relay.caller_on(&url).await;

        // The stalled caller writes as long as it can and never reads: its echo backs up.
        let stalled = caller.open_channel("echo", None).await.unwrap();
        let (mut stalled_tx, _stalled_rx) = stalled.split();
        let written = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = written.clone();
        let stall = tokio::spawn(async move {
            loop {
                if stalled_tx.send(Bytes::from(vec![0u8; FRAME])).await.is_err() {
                    break;
                }
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
        // Wait until it is stalled: its count stops moving.
        let mut last = written.load(std::sync::atomic::Ordering::Relaxed);
        let waiting = std::time::Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let now = written.load(std::sync::atomic::Ordering::Relaxed);
            if now == last && now > 0 {
                break;
            }
            assert!(waiting.elapsed() < Duration::from_secs(30), "{url}: the writer never stalled: {now} frames");
            last = now;
        }

        // Twenty active channels on the same host each move 2 MiB there and back.
        let mut active = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let channel = caller.open_channel("echo", None).await.unwrap();
            active.spawn(echo_round(channel, 32));
        }
        let finished = tokio::time::timeout(Duration::from_secs(30), async {
            let mut done = 0;
            while let Some(result) = active.join_next().await {
                done += result.unwrap();
            }
            done
        })
        .await
        .expect("the active channels finish while one is stalled");
        assert_eq!(finished, 20 * 32, "{url}");

        // The stalled writer is held back by flow control, not buffered without bound: it stays
        // where it stalled, for as long as it is watched.
        let stuck_at = written.load(std::sync::atomic::Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            written.load(std::sync::atomic::Ordering::Relaxed),
            stuck_at,
            "{url}: the stalled writer is blocked"
        );
        assert!(stuck_at * FRAME < 64 * 1024 * 1024, "{url}: {stuck_at} frames buffered somewhere");
        stall.abort();
    }
}
