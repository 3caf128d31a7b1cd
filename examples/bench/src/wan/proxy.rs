//! The impairment proxy of the WAN profile: what a wide-area path does to packets, made in the
//! bench process, in userspace, between two loopback sockets.
//!
//! - [`UdpProxy`]: every datagram, each way, is delivered a fixed one-way delay after it
//!   arrived, in the order it arrived, or dropped with probability [`Loss`] (each way, decided
//!   independently with a seeded xorshift generator). Each client source address gets an
//!   upstream socket of its own, so the server sees one peer per client, as through a NAT.
//!   Datagrams beyond [`UDP_QUEUE`] waiting in one direction are dropped (a tail-drop queue:
//!   memory stays bounded), and so are datagrams larger than [`PATH_MTU_PAYLOAD`], as a real
//!   path's routers would: loopback carries 64 KiB datagrams, which QUIC's path MTU discovery
//!   would find and use, and no wide-area path does.
//! - [`TcpProxy`]: each accepted connection gets one upstream connection; every chunk read, each
//!   way, is written the one-way delay later, in order, with at most [`TCP_BUDGET`] bytes
//!   waiting per direction (the reader waits past that: memory stays bounded). An end of stream
//!   is passed on (half-close) the delay later too; an error closes both ways. No loss: TCP
//!   retransmits below the socket API, so a userspace proxy cannot make a segment go missing.
//!
//! A TCP handshake is answered by the proxy's own socket at once, which would hide the round
//! trip a real `connect` waits for. So the first bytes of each connection, each way, are not
//! delivered before one round trip of this leg (twice the delay) after the accept plus the
//! one-way delay: what a client that sends right after its `connect` returned would see.
//!
//! What the TCP proxy cannot make: TCP's own windows and congestion control see a loopback round
//! trip (the proxy reads as fast as its budget allows), so a TCP flow here behaves as if it ran
//! through a split-connection middlebox with a [`TCP_BUDGET`] window over the delay, not as one
//! end-to-end flow whose window must cover the round trip. QUIC's congestion control, on the
//! other hand, sees the whole delay and every loss.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Datagrams that may wait in one direction of one UDP session before more are dropped.
pub const UDP_QUEUE: usize = 16_384;
/// The largest UDP payload the proxy passes on: an Ethernet path's 1,500-byte MTU less the IPv4
/// and UDP headers (28 bytes), what most internet paths carry.
pub const PATH_MTU_PAYLOAD: usize = 1_500 - 28;
/// Bytes that may wait in one direction of one TCP connection before the proxy stops reading.
pub const TCP_BUDGET: usize = 8 << 20;
/// The most one read of a TCP connection takes.
const TCP_CHUNK: usize = 64 << 10;

/// A UDP socket on a port of 127.0.0.1 the system chooses, with the large buffers the relay's
/// own QUIC sockets have: with the kernel's default a burst overflows the socket's queue, and the
/// kernel drops datagrams the proxy was never asked to drop.
fn bind_udp() -> anyhow::Result<UdpSocket> {
    let socket = relay_proto::io::bind_udp(SocketAddr::from(([127, 0, 0, 1], 0)), relay_proto::io::UDP_BUFFER_BYTES)
        .context("binding a UDP socket of the proxy")?;
    socket.set_nonblocking(true)?;
    Ok(UdpSocket::from_std(socket)?)
}

/// How late deliveries were past their due time (the delay), summed: timers have a granularity
/// (tokio's is a millisecond, rounded up) and a loaded machine wakes tasks late, so the path a
/// proxy makes is a little longer than asked. Counting it says how much.
#[derive(Debug, Default)]
pub struct Lateness {
    total_ns: AtomicU64,
    deliveries: AtomicU64,
    /// The latest delivery since [`Lateness::take_max`] last read it.
    max_ns: AtomicU64,
}

impl Lateness {
    /// Notes a delivery due at `due`, made now.
    fn note(&self, due: Instant) {
        let late = Instant::now().saturating_duration_since(due);
        let late_ns = late.as_nanos().min(u128::from(u64::MAX)) as u64;
        self.total_ns.fetch_add(late_ns, Ordering::Relaxed);
        self.deliveries.fetch_add(1, Ordering::Relaxed);
        self.max_ns.fetch_max(late_ns, Ordering::Relaxed);
    }

    /// The latest delivery's lateness since the last call, in ns, and starts over.
    pub fn take_max(&self) -> u64 {
        self.max_ns.swap(0, Ordering::Relaxed)
    }

    /// `(total lateness in ns, deliveries)` now.
    pub fn snapshot(&self) -> (u64, u64) {
        (self.total_ns.load(Ordering::Relaxed), self.deliveries.load(Ordering::Relaxed))
    }
}

/// A loss probability, shared by the proxies that drop datagrams, and changeable while they run.
#[derive(Debug, Clone, Default)]
pub struct Loss(Arc<AtomicU64>);

impl Loss {
    /// A loss probability of `p` (clamped to 0..=1).
    pub fn new(p: f64) -> Self {
        let loss = Self::default();
        loss.set(p);
        loss
    }

    /// Makes the probability `p` (clamped to 0..=1) from now on.
    pub fn set(&self, p: f64) {
        self.0.store(p.clamp(0.0, 1.0).to_bits(), Ordering::Relaxed);
    }

    /// The probability now.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// A xorshift64* generator: deterministic for a seed, cheap, and good enough to decide drops.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator started from `seed` (0 is replaced: xorshift would stay at 0).
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 { 0x9E37_79B9_7F4A_7C15 } else { seed })
    }

    /// The next number in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        // The top 53 bits of the scrambled state, as a fraction.
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Whether to drop a datagram, with probability `p`.
    pub fn drops(&mut self, p: f64) -> bool {
        p > 0.0 && self.next_f64() < p
    }
}

/// What a UDP proxy did with the datagrams it got, both ways, since it started.
#[derive(Debug, Default)]
pub struct UdpCounts {
    /// Datagrams received, both ways.
    pub received: AtomicU64,
    /// Datagrams dropped by the loss probability.
    pub lost: AtomicU64,
    /// Datagrams dropped because [`UDP_QUEUE`] were already waiting.
    pub overflowed: AtomicU64,
    /// Datagrams dropped for being larger than [`PATH_MTU_PAYLOAD`]: QUIC's path MTU probes,
    /// which a real path drops too (not counted as loss).
    pub too_large: AtomicU64,
    /// How late the datagrams passed on were.
    pub late: Lateness,
}

impl UdpCounts {
    /// `(received, lost, overflowed)` now.
    pub fn snapshot(&self) -> (u64, u64, u64) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        (get(&self.received), get(&self.lost), get(&self.overflowed))
    }
}

/// A UDP impairment proxy on 127.0.0.1 in front of `upstream`; stops when dropped.
#[derive(Debug)]
pub struct UdpProxy {
    addr: SocketAddr,
    counts: Arc<UdpCounts>,
    _tasks: JoinSet<()>,
}

impl UdpProxy {
    /// Listens on a port of 127.0.0.1 the system chooses and forwards to `upstream`, each
    /// datagram `delay` later, each dropped with probability `loss` (each way), the drops
    /// decided by generators seeded from `seed`.
    pub async fn start(upstream: SocketAddr, delay: Duration, loss: Loss, seed: u64) -> anyhow::Result<Self> {
        let socket = bind_udp()?;
        let addr = socket.local_addr()?;
        let counts = Arc::new(UdpCounts::default());
        let mut tasks = JoinSet::new();
        let session = Session { listen: Arc::new(socket), upstream, delay, loss, counts: counts.clone() };
        tasks.spawn(async move {
            if let Err(e) = session.run(seed).await {
                eprintln!("relay-bench: the UDP proxy stopped: {e:#}");
            }
        });
        Ok(Self { addr, counts, _tasks: tasks })
    }

    /// Where clients send.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What it did with the datagrams so far.
    pub fn counts(&self) -> &UdpCounts {
        &self.counts
    }
}

/// The UDP proxy's shared state: its listening socket, where it forwards, and how.
struct Session {
    listen: Arc<UdpSocket>,
    upstream: SocketAddr,
    delay: Duration,
    loss: Loss,
    counts: Arc<UdpCounts>,
}

impl Session {
    /// Receives clients' datagrams and forwards each through its client's upstream socket,
    /// until the proxy is dropped (which drops every client's tasks with `clients`).
    async fn run(self, seed: u64) -> anyhow::Result<()> {
        let mut clients: HashMap<SocketAddr, mpsc::Sender<(Instant, Bytes)>> = HashMap::new();
        let mut tasks = JoinSet::new();
        let mut rng = XorShift::new(seed);
        let mut buf = vec![0u8; 65_536];
        loop {
            let (n, from) = match self.listen.recv_from(&mut buf).await {
                Ok(received) => received,
                // An ICMP error for an earlier send may surface here: not this socket's end.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(e).context("receiving on the UDP proxy"),
            };
            let to_upstream = match clients.get(&from) {
                Some(sender) => sender.clone(),
                None => {
                    let index = clients.len() as u64 + 1;
                    let sender =
                        self.client(from, seed ^ index.wrapping_mul(0xA24B_AED4_963E_E407), &mut tasks).await?;
                    clients.insert(from, sender.clone());
                    sender
                }
            };
            self.forward(&mut rng, &to_upstream, &buf[..n]);
        }
    }

    /// Counts a datagram, and drops it or queues it for delivery `delay` from now.
    fn forward(&self, rng: &mut XorShift, queue: &mpsc::Sender<(Instant, Bytes)>, datagram: &[u8]) {
        self.counts.received.fetch_add(1, Ordering::Relaxed);
        if datagram.len() > PATH_MTU_PAYLOAD {
            self.counts.too_large.fetch_add(1, Ordering::Relaxed);
        } else if rng.drops(self.loss.get()) {
            self.counts.lost.fetch_add(1, Ordering::Relaxed);
        } else if queue.try_send((Instant::now() + self.delay, Bytes::copy_from_slice(datagram))).is_err() {
            self.counts.overflowed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sets up the client at `client`: an upstream socket of its own, a delivery task each way
    /// and a task reading the upstream socket. Returns the queue towards upstream.
    async fn client(
        &self,
        client: SocketAddr,
        seed: u64,
        tasks: &mut JoinSet<()>,
    ) -> anyhow::Result<mpsc::Sender<(Instant, Bytes)>> {
        let upstream = Arc::new(bind_udp()?);
        upstream.connect(self.upstream).await.with_context(|| format!("connecting to {}", self.upstream))?;
        let (to_upstream, mut up_queue) = mpsc::channel::<(Instant, Bytes)>(UDP_QUEUE);
        let (to_client, mut down_queue) = mpsc::channel::<(Instant, Bytes)>(UDP_QUEUE);
        let (sending, counts) = (upstream.clone(), self.counts.clone());
        tasks.spawn(async move {
            while let Some((at, datagram)) = up_queue.recv().await {
                tokio::time::sleep_until(at).await;
                counts.late.note(at);
                // A datagram that cannot be sent is one more lost: the path goes on.
                let _ = sending.send(&datagram).await;
            }
        });
        let (listen, counts) = (self.listen.clone(), self.counts.clone());
        tasks.spawn(async move {
            while let Some((at, datagram)) = down_queue.recv().await {
                tokio::time::sleep_until(at).await;
                counts.late.note(at);
                let _ = listen.send_to(&datagram, client).await;
            }
        });
        let back = Session {
            listen: self.listen.clone(),
            upstream: self.upstream,
            delay: self.delay,
            loss: self.loss.clone(),
            counts: self.counts.clone(),
        };
        tasks.spawn(async move {
            let mut rng = XorShift::new(seed);
            let mut buf = vec![0u8; 65_536];
            loop {
                match upstream.recv(&mut buf).await {
                    Ok(n) => back.forward(&mut rng, &to_client, &buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                    Err(_) => break,
                }
            }
        });
        Ok(to_upstream)
    }
}

/// A TCP impairment proxy on 127.0.0.1 in front of `upstream`; stops, with every connection
/// through it, when dropped.
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    late: Arc<Lateness>,
    _tasks: JoinSet<()>,
}

impl TcpProxy {
    /// Listens on a port of 127.0.0.1 the system chooses and, for each connection, connects to
    /// `upstream` and passes every chunk on `delay` later, each way.
    pub async fn start(upstream: SocketAddr, delay: Duration) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.context("binding the TCP proxy's port")?;
        let addr = listener.local_addr()?;
        let late = Arc::new(Lateness::default());
        let mut tasks = JoinSet::new();
        let noted = late.clone();
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((client, _)) => {
                            let (opened, late) = (Instant::now(), noted.clone());
                            // A connection that fails is closed both ways: what a broken path does.
                            connections.spawn(async move {
                                let _ = connection(client, upstream, delay, opened, &late).await;
                            });
                        }
                        // Out of file descriptors, say: the next accept may work.
                        Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                    },
                    Some(_) = connections.join_next() => {}
                }
            }
        });
        Ok(Self { addr, late, _tasks: tasks })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How late the chunks passed on were.
    pub fn late(&self) -> &Lateness {
        &self.late
    }
}

/// One proxied connection: `client`, accepted at `opened`, to a new connection to `upstream`,
/// both ways through [`pipe`], until both ways have ended or either fails.
async fn connection(
    client: TcpStream,
    upstream: SocketAddr,
    delay: Duration,
    opened: Instant,
    late: &Lateness,
) -> anyhow::Result<()> {
    let server = TcpStream::connect(upstream).await.with_context(|| format!("connecting to {upstream}"))?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::try_join!(
        pipe(client_read, server_write, Timing { delay, opened, budget: TCP_BUDGET, late }),
        pipe(server_read, client_write, Timing { delay, opened, budget: TCP_BUDGET, late }),
    )?;
    Ok(())
}

/// How a [`pipe`] delays what it passes on.
#[derive(Debug, Clone, Copy)]
pub struct Timing<'a> {
    /// The one-way delay.
    pub delay: Duration,
    /// When the connection was accepted.
    pub opened: Instant,
    /// The most bytes waiting (plus one read).
    pub budget: usize,
    /// Where to note how late each chunk was.
    pub late: &'a Lateness,
}

/// Passes what `from` yields to `to`, each chunk `delay` after it was read and not before
/// `opened` plus a round trip (twice `delay`) plus `delay` (the handshake, see the module doc),
/// in order, with at most `budget` bytes (plus one read) waiting; `from`'s end of stream is
/// passed on as a shutdown of `to`, the delay later. Returns the bytes passed on.
pub async fn pipe<R, W>(mut from: R, mut to: W, timing: Timing<'_>) -> anyhow::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let Timing { delay, opened, budget, late } = timing;
    let budget = budget.clamp(1, u32::MAX as usize);
    let permits = Arc::new(Semaphore::new(budget));
    let handshake = opened + 2 * delay;
    let (queue, mut waiting) = mpsc::unbounded_channel();
    let read = async move {
        let mut buf = vec![0u8; TCP_CHUNK];
        loop {
            let n = from.read(&mut buf).await.context("reading")?;
            let permit = permits.clone().acquire_many_owned(n.clamp(1, budget) as u32).await?;
            let at = Instant::now().max(handshake) + delay;
            let chunk = (n > 0).then(|| Bytes::copy_from_slice(&buf[..n]));
            // The writer gone, its error ends the pipe: nothing more to pass.
            let _ = queue.send((at, chunk, permit));
            if n == 0 {
                return anyhow::Ok(());
            }
        }
    };
    let write = async move {
        let mut passed = 0u64;
        while let Some((at, chunk, permit)) = waiting.recv().await {
            tokio::time::sleep_until(at).await;
            late.note(at);
            match chunk {
                Some(chunk) => {
                    to.write_all(&chunk).await.context("writing")?;
                    passed += chunk.len() as u64;
                }
                None => {
                    to.shutdown().await.context("passing on the end of stream")?;
                    break;
                }
            }
            drop(permit);
        }
        anyhow::Ok(passed)
    };
    let ((), passed) = tokio::try_join!(read, write)?;
    Ok(passed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DELAY: Duration = Duration::from_millis(10);

    #[test]
    fn xorshift_drops_about_the_fraction_asked() {
        let mut rng = XorShift::new(7);
        let dropped = (0..100_000).filter(|_| rng.drops(0.01)).count();
        assert!((800..1_200).contains(&dropped), "{dropped} of 100,000 dropped at 1%");
        assert_eq!((0..1_000).filter(|_| rng.drops(0.0)).count(), 0);
        assert_eq!((0..1_000).filter(|_| rng.drops(1.0)).count(), 1_000);
        let (mut a, mut b) = (XorShift::new(3), XorShift::new(3));
        assert!((0..100).all(|_| a.next_f64() == b.next_f64()), "a seed gives one sequence");
    }

    #[test]
    fn loss_is_clamped_and_shared() {
        let loss = Loss::new(2.0);
        let shared = loss.clone();
        assert_eq!(shared.get(), 1.0);
        loss.set(0.25);
        assert_eq!(shared.get(), 0.25);
    }

    /// Reads from `from` until `want` bytes came, noting when each byte count was reached.
    async fn arrivals(from: &mut (impl AsyncRead + Unpin), want: usize, start: Instant) -> Vec<(usize, Duration)> {
        let mut got = 0;
        let mut seen = Vec::new();
        let mut buf = [0u8; 1024];
        while got < want {
            let n = from.read(&mut buf).await.unwrap();
            assert!(n > 0, "ended after {got} bytes");
            got += n;
            seen.push((got, start.elapsed()));
        }
        seen
    }

    #[tokio::test(start_paused = true)]
    async fn a_pipe_delays_each_chunk_in_order_after_the_handshake() {
        let (mut client, proxy_side) = tokio::io::duplex(1 << 16);
        let (server_side, mut server) = tokio::io::duplex(1 << 16);
        let start = Instant::now();
        let late = Arc::new(Lateness::default());
        let noted = late.clone();
        let piping = tokio::spawn(async move {
            pipe(proxy_side, server_side, Timing { delay: DELAY, opened: start, budget: 1 << 20, late: &noted }).await
        });
        // Sent at once: held for the handshake (a round trip), then the one-way delay.
        client.write_all(b"hello").await.unwrap();
        assert_eq!(arrivals(&mut server, 5, start).await, vec![(5, 3 * DELAY)]);
        // Later chunks: the one-way delay each, in order.
        tokio::time::sleep(Duration::from_millis(5)).await;
        client.write_all(b"ab").await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
        client.write_all(b"cd").await.unwrap();
        let sent_at = 3 * DELAY + Duration::from_millis(5);
        let seen = arrivals(&mut server, 4, start).await;
        assert_eq!(seen, vec![(2, sent_at + DELAY), (4, sent_at + Duration::from_millis(2) + DELAY)]);
        // The end of stream is passed on, the delay later.
        let closed_at = start.elapsed();
        drop(client);
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        assert_eq!(start.elapsed(), closed_at + DELAY);
        assert_eq!(piping.await.unwrap().unwrap(), 9);
        assert_eq!(late.snapshot(), (0, 4), "paused time: every chunk and the end on time");
    }

    #[tokio::test(start_paused = true)]
    async fn a_pipe_holds_at_most_its_budget() {
        let (mut client, proxy_side) = tokio::io::duplex(1024);
        // The downstream side takes nothing until read: the pipe's writer blocks on the first chunk.
        let (server_side, mut server) = tokio::io::duplex(16);
        let start = Instant::now();
        let budget = 4096;
        tokio::spawn(async move {
            let late = Lateness::default();
            pipe(proxy_side, server_side, Timing { delay: DELAY, opened: start, budget, late: &late }).await
        });
        let sent = vec![7u8; 64 << 10];
        let writing = tokio::spawn(async move {
            client.write_all(&sent).await.unwrap();
            client
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!writing.is_finished(), "the pipe read everything while its writer was blocked");
        // Reading unblocks it: everything arrives.
        let seen = arrivals(&mut server, 64 << 10, start).await;
        assert_eq!(seen.last().unwrap().0, 64 << 10);
        writing.await.unwrap();
    }

    #[tokio::test]
    async fn the_udp_proxy_delays_both_ways_and_drops_what_it_is_told() {
        let server = UdpSocket::bind(("127.0.0.1", 0)).await.unwrap();
        let loss = Loss::new(0.0);
        let proxy = UdpProxy::start(server.local_addr().unwrap(), DELAY, loss.clone(), 1).await.unwrap();
        let client = UdpSocket::bind(("127.0.0.1", 0)).await.unwrap();
        client.connect(proxy.addr()).await.unwrap();
        let echo = tokio::spawn(async move {
            let mut buf = vec![0u8; 64 << 10];
            loop {
                let (n, from) = server.recv_from(&mut buf).await.unwrap();
                server.send_to(&buf[..n], from).await.unwrap();
            }
        });
        let mut buf = [0u8; 64];
        let start = std::time::Instant::now();
        client.send(b"ping").await.unwrap();
        let n = client.recv(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"ping");
        assert!(start.elapsed() >= 2 * DELAY, "a round trip took {:?}", start.elapsed());

        // Everything dropped: nothing comes back.
        loss.set(1.0);
        for _ in 0..10 {
            client.send(b"lost").await.unwrap();
        }
        let nothing = tokio::time::timeout(4 * DELAY, client.recv(&mut buf)).await;
        assert!(nothing.is_err(), "a datagram came through at 100% loss");
        let (received, lost, overflowed) = proxy.counts().snapshot();
        assert_eq!((received, lost, overflowed), (12, 10, 0));
        assert_eq!(proxy.counts().late.snapshot().1, 2, "two datagrams passed on");

        // A datagram larger than the path's MTU never arrives; one of exactly its size does.
        loss.set(0.0);
        client.send(&[1u8; PATH_MTU_PAYLOAD + 1]).await.unwrap();
        client.send(&[2u8; PATH_MTU_PAYLOAD]).await.unwrap();
        let mut big = vec![0u8; 64 << 10];
        let n = client.recv(&mut big).await.unwrap();
        assert_eq!((n, big[0]), (PATH_MTU_PAYLOAD, 2), "the datagram of the path's MTU came back first");
        assert_eq!(proxy.counts().too_large.load(Ordering::Relaxed), 1);
        echo.abort();
    }
}
