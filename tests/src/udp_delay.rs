//! A UDP forwarder that holds every datagram for a fixed delay each way, in order: a QUIC client
//! that dials it sees the relay a round trip of twice the delay away, so what happens within the
//! handshake's round trips (0-RTT data) does not depend on how fast loopback and the scheduler are.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// A running forwarder; stops when dropped.
#[derive(Debug)]
pub struct UdpDelay {
    /// Where clients send: datagrams reach the target `delay` later, answers come back as late.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

/// The largest datagram forwarded.
const MAX_DATAGRAM: usize = 65_535;

/// Datagrams one direction holds at once; past it, more are dropped (as a full link would).
const QUEUE: usize = 4096;

/// A datagram, when it is due, and where it goes (`None`: the connected peer).
type Due = (Instant, Vec<u8>, Option<SocketAddr>);

impl UdpDelay {
    /// Forwards between `target` and each client, through a socket of the client's own.
    pub async fn start(target: SocketAddr, delay: Duration) -> Self {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind the front"));
        let addr = front.local_addr().expect("front address");
        let task = tokio::spawn(async move {
            // Every task of the forwarder, ended with it.
            let mut tasks = JoinSet::new();
            let (down, queued) = mpsc::channel::<Due>(QUEUE);
            tasks.spawn(send_when_due(front.clone(), queued));
            let mut clients: HashMap<SocketAddr, mpsc::Sender<Due>> = HashMap::new();
            let mut datagram = vec![0; MAX_DATAGRAM];
            loop {
                let Ok((len, from)) = front.recv_from(&mut datagram).await else { continue };
                let up = match clients.entry(from) {
                    Entry::Occupied(client) => client.into_mut(),
                    Entry::Vacant(new) => {
                        let Ok(back) = UdpSocket::bind("127.0.0.1:0").await else { continue };
                        if back.connect(target).await.is_err() {
                            continue;
                        }
                        let back = Arc::new(back);
                        let (up, queued) = mpsc::channel(QUEUE);
                        tasks.spawn(send_when_due(back.clone(), queued));
                        tasks.spawn(answers(back, from, delay, down.clone()));
                        new.insert(up)
                    }
                };
                let _ = up.try_send((Instant::now() + delay, datagram[..len].to_vec(), None));
            }
        });
        Self { addr, task }
    }
}

/// Queues what the target answers on `back` for the client at `to`, due `delay` later.
async fn answers(back: Arc<UdpSocket>, to: SocketAddr, delay: Duration, down: mpsc::Sender<Due>) {
    let mut datagram = vec![0; MAX_DATAGRAM];
    loop {
        // An error is the target's port closed for a moment (a restart): go on.
        let Ok(len) = back.recv(&mut datagram).await else { continue };
        let _ = down.try_send((Instant::now() + delay, datagram[..len].to_vec(), Some(to)));
    }
}

/// Sends each queued datagram when it is due, in the order queued.
async fn send_when_due(socket: Arc<UdpSocket>, mut queued: mpsc::Receiver<Due>) {
    while let Some((due, datagram, to)) = queued.recv().await {
        tokio::time::sleep_until(due).await;
        let _ = match to {
            Some(to) => socket.send_to(&datagram, to).await,
            None => socket.send(&datagram).await,
        };
    }
}

impl Drop for UdpDelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}
