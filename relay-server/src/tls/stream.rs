//! A TLS server stream that holds no buffer while its connection is idle.
//!
//! rustls' buffered connection keeps a 4 KiB receive buffer for its whole life once it has read
//! anything, and a relay holds two TLS connections for each idle `wss://` channel: that buffer
//! was the largest part of what an idle channel cost (8 of about 30 KiB). This stream drives
//! rustls' unbuffered API instead. The TLS bytes read, the bytes to send and the decrypted bytes
//! not yet read each sit in a buffer the stream takes from a small per-thread pool when it needs
//! one and gives back as soon as the buffer is empty: an idle connection holds none, and a busy
//! one takes a buffer from the pool instead of the allocator.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use rustls::ServerConfig;
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, InsufficientSizeError, WriteTraffic};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The least room one read from the socket gets (rustls' own buffered reads are this size too).
const READ_CHUNK: usize = 4096;
/// Plaintext taken by one write: four full records.
const MAX_WRITE: usize = 4 * MAX_RECORD;
/// The largest TLS plaintext record, and what encrypting one adds at most (header, content type,
/// AEAD tag; TLS 1.2's explicit nonce is within it).
const MAX_RECORD: usize = 16 * 1024;
const RECORD_OVERHEAD: usize = 5 + 1 + 16 + 8;
/// Bytes queued for the socket past which a write waits for it to take them.
const MAX_QUEUED: usize = 64 * 1024;
/// Buffers a thread keeps for reuse, and the largest it keeps (a bulk transfer's larger ones go
/// back to the allocator).
const POOLED: usize = 8;
const POOLED_CAPACITY: usize = 64 * 1024;

thread_local! {
    static POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// Gives `buffer`, if it holds no memory, an empty one from this thread's pool (when it has one).
fn from_pool(buffer: &mut Vec<u8>) {
    if buffer.capacity() == 0 {
        *buffer = POOL.with(|pool| pool.borrow_mut().pop()).unwrap_or_default();
    }
}

/// Gives `buffer` back to this thread's pool (or to the allocator), leaving an empty one that
/// holds no memory in its place.
fn give_back(buffer: &mut Vec<u8>) {
    let mut buffer = std::mem::take(buffer);
    if buffer.capacity() == 0 || buffer.capacity() > POOLED_CAPACITY {
        return;
    }
    buffer.clear();
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < POOLED {
            pool.push(buffer);
        }
    });
}

/// Takes a TLS connection on `io` through its handshake. On failure, `io` comes back with the
/// error, for the caller to count the failure before the socket closes.
pub(crate) async fn accept<IO>(config: Arc<ServerConfig>, io: IO) -> Result<TlsStream<IO>, (io::Error, IO)>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let conn = match UnbufferedServerConnection::new(config) {
        Ok(conn) => conn,
        Err(e) => return Err((invalid(e), io)),
    };
    let mut stream = TlsStream {
        io,
        conn,
        incoming: Vec::new(),
        filled: 0,
        outgoing: Vec::new(),
        sent: 0,
        read_queued: false,
        plain: Vec::new(),
        taken: 0,
        read_closed: false,
        close_notify_sent: false,
    };
    match poll_fn(|cx| stream.poll_handshake(cx)).await {
        Ok(()) => Ok(stream),
        Err(e) => Err((e, stream.io)),
    }
}

/// A TLS server connection over `IO`, after its handshake.
pub(crate) struct TlsStream<IO> {
    io: IO,
    conn: UnbufferedServerConnection,
    /// TLS bytes read (the first `filled` of it), not yet processed: between reads, part of a
    /// record at most. Its length is its initialized room.
    incoming: Vec<u8>,
    filled: usize,
    /// TLS bytes to send, of which `sent` have been.
    outgoing: Vec<u8>,
    sent: usize,
    /// Some of `outgoing` was queued by rustls while reading (tickets, a key update): a read
    /// sends it. Otherwise a read leaves the sending to the writer, whose task the socket must
    /// wake when it can take more (it wakes the last task that asked, only).
    read_queued: bool,
    /// Decrypted bytes, of which `taken` have been read.
    plain: Vec<u8>,
    taken: usize,
    /// The peer has said `close_notify`: nothing more will come.
    read_closed: bool,
    close_notify_sent: bool,
}

impl<IO> std::fmt::Debug for TlsStream<IO> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("filled", &self.filled)
            .field("queued", &(self.outgoing.len() - self.sent))
            .field("unread", &(self.plain.len() - self.taken))
            .field("read_closed", &self.read_closed)
            .finish_non_exhaustive()
    }
}

/// What the stream wants of rustls in one [`TlsStream::step`].
#[derive(Clone, Copy)]
enum Intent<'a> {
    /// Decrypt what has arrived.
    Read,
    /// Encrypt these bytes (once the records that arrived are decrypted).
    Write(&'a [u8]),
    /// Say `close_notify`.
    Close,
}

/// What one [`TlsStream::step`] did.
enum Step {
    /// Something: records decrypted, TLS bytes queued, the peer's `close_notify` noted. Step
    /// again.
    Progress,
    /// Nothing until more TLS bytes arrive.
    NeedsData,
    /// Encrypted and queued this many bytes of the intended write (or the `close_notify`).
    Done(usize),
}

impl<IO: AsyncRead + AsyncWrite + Unpin> TlsStream<IO> {
    /// Runs rustls once over the bytes read so far: keeps what it decrypts, queues what it has
    /// to send, and carries out `intent` when the connection allows it.
    fn step(&mut self, intent: Intent<'_>) -> io::Result<Step> {
        let Self { conn, incoming, filled, outgoing, read_queued, plain, read_closed, close_notify_sent, .. } = self;
        let status = conn.process_tls_records(&mut incoming[..*filled]);
        let discard = status.discard;
        let step = match status.state.map_err(invalid)? {
            ConnectionState::ReadTraffic(mut traffic) => {
                while let Some(record) = traffic.next_record() {
                    from_pool(plain);
                    plain.extend_from_slice(record.map_err(invalid)?.payload);
                }
                Step::Progress
            }
            ConnectionState::EncodeTlsData(mut data) => {
                queue(outgoing, 0, |room| Ok(data.encode(room)?))?;
                *read_queued |= matches!(intent, Intent::Read);
                Step::Progress
            }
            // What was encoded goes out, in order, before anything queued after it.
            ConnectionState::TransmitTlsData(data) => {
                data.done();
                Step::Progress
            }
            ConnectionState::PeerClosed => {
                *read_closed = true;
                Step::Progress
            }
            ConnectionState::BlockedHandshake => Step::NeedsData,
            ConnectionState::WriteTraffic(mut traffic) => match intent {
                Intent::Read => Step::NeedsData,
                Intent::Write(bytes) => Step::Done(encrypt(outgoing, &mut traffic, bytes)?),
                Intent::Close => {
                    queue(outgoing, RECORD_OVERHEAD, |room| Ok(traffic.queue_close_notify(room)?))?;
                    *close_notify_sent = true;
                    Step::Done(0)
                }
            },
            ConnectionState::Closed => match intent {
                Intent::Read | Intent::Close => {
                    *read_closed = true;
                    *close_notify_sent = true;
                    Step::Done(0)
                }
                Intent::Write(_) => return Err(io::ErrorKind::BrokenPipe.into()),
            },
            ConnectionState::ReadEarlyData(_) => return Err(invalid("early data, which the relay does not take")),
            _ => return Err(invalid("a TLS state this relay does not know")),
        };
        incoming.copy_within(discard..*filled, 0);
        *filled -= discard;
        Ok(step)
    }

    /// Sends what is queued; gives the buffer back once it is all out.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.outgoing.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.outgoing[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.sent = 0;
        self.read_queued = false;
        give_back(&mut self.outgoing);
        Poll::Ready(Ok(()))
    }

    /// Reads more TLS bytes; `Ok(0)` at the end of the stream. A read that has to wait with
    /// nothing kept gives the buffer back: an idle connection holds none.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.incoming.len() - self.filled < READ_CHUNK {
            from_pool(&mut self.incoming);
            // Room for the rest of the record being read, if longer.
            let record = match self.incoming[..self.filled] {
                [_, _, _, high, low, ..] => 5 + usize::from(u16::from_be_bytes([high, low])),
                _ => 0,
            };
            let room = (self.filled + READ_CHUNK).max(record);
            self.incoming.resize(room, 0);
        }
        let mut buf = ReadBuf::new(&mut self.incoming[self.filled..]);
        match Pin::new(&mut self.io).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len();
                self.filled += n;
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if self.filled == 0 {
                    give_back(&mut self.incoming);
                }
                Poll::Pending
            }
        }
    }

    /// Drives the handshake to its end: each flight goes out before the peer's next is awaited,
    /// and TLS 1.2's last one (the server's) before the handshake is done. What TLS 1.3 queues
    /// once it is done (session tickets) goes out with the first write or read: a client need
    /// not read it before it sends.
    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match self.step(Intent::Read)? {
                Step::Progress | Step::Done(_) if self.read_closed => return Poll::Ready(Err(eof_in_handshake())),
                Step::Progress | Step::Done(_) => {}
                // Done, and everything rustls had to say is queued.
                Step::NeedsData if !self.conn.is_handshaking() => {
                    if self.conn.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3) {
                        ready!(self.poll_send(cx))?;
                    } else if let Poll::Ready(Err(e)) = self.poll_send(cx) {
                        return Poll::Ready(Err(e));
                    }
                    return Poll::Ready(Ok(()));
                }
                Step::NeedsData => {
                    ready!(self.poll_send(cx))?;
                    if ready!(self.poll_fill(cx))? == 0 {
                        return Poll::Ready(Err(eof_in_handshake()));
                    }
                }
            }
        }
    }

    /// Copies decrypted bytes into `buf`; gives the buffer back once they are all read.
    fn take_plain(&mut self, buf: &mut ReadBuf<'_>) {
        let n = buf.remaining().min(self.plain.len() - self.taken);
        buf.put_slice(&self.plain[self.taken..self.taken + n]);
        self.taken += n;
        if self.taken == self.plain.len() {
            self.taken = 0;
            give_back(&mut self.plain);
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<IO> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.taken < this.plain.len() {
                this.take_plain(buf);
                return Poll::Ready(Ok(()));
            }
            if this.read_closed || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            match this.step(Intent::Read)? {
                Step::Progress | Step::Done(_) => {}
                Step::NeedsData => {
                    // What rustls queued on its own (tickets, a key update) goes out first.
                    if this.read_queued
                        && let Poll::Ready(Err(e)) = this.poll_send(cx)
                    {
                        return Poll::Ready(Err(e));
                    }
                    if ready!(this.poll_fill(cx))? == 0 {
                        // As rustls' own stream says it: the end of the socket is no clean end.
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "peer closed connection without sending TLS close_notify",
                        )));
                    }
                }
            }
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<IO> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if bytes.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.outgoing.len() - this.sent >= MAX_QUEUED {
            ready!(this.poll_send(cx))?;
        }
        loop {
            match this.step(Intent::Write(bytes))? {
                Step::Progress => {}
                Step::Done(n) => {
                    // Out now if the socket takes it; else with the flush.
                    if let Poll::Ready(Err(e)) = this.poll_send(cx) {
                        return Poll::Ready(Err(e));
                    }
                    return Poll::Ready(Ok(n));
                }
                Step::NeedsData => return Poll::Ready(Err(handshaking_again())),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while !this.close_notify_sent {
            match this.step(Intent::Close)? {
                Step::Progress | Step::Done(_) => {}
                Step::NeedsData => return Poll::Ready(Err(handshaking_again())),
            }
        }
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

/// Encrypts as much of `bytes` as one write takes into `outgoing`; how much that was.
fn encrypt(
    outgoing: &mut Vec<u8>,
    traffic: &mut WriteTraffic<'_, ServerConnectionData>,
    bytes: &[u8],
) -> io::Result<usize> {
    let bytes = &bytes[..bytes.len().min(MAX_WRITE)];
    let records = bytes.len().div_ceil(MAX_RECORD);
    queue(outgoing, bytes.len() + records * RECORD_OVERHEAD, |room| Ok(traffic.encrypt(bytes, room)?))?;
    Ok(bytes.len())
}

/// Why [`queue`]'s writer wrote nothing.
enum Unwritten {
    /// It needs this much room.
    Room(usize),
    Failed(io::Error),
}

impl From<EncryptError> for Unwritten {
    fn from(e: EncryptError) -> Self {
        match e {
            EncryptError::InsufficientSize(InsufficientSizeError { required_size }) => Self::Room(required_size),
            e => Self::Failed(io::Error::other(e)),
        }
    }
}

impl From<EncodeError> for Unwritten {
    fn from(e: EncodeError) -> Self {
        match e {
            EncodeError::InsufficientSize(InsufficientSizeError { required_size }) => Self::Room(required_size),
            e => Self::Failed(io::Error::other(e)),
        }
    }
}

/// Appends to `outgoing` what `write` writes into the room it is given: `room` bytes at first,
/// and as many as it asks for if that was too few.
fn queue(
    outgoing: &mut Vec<u8>,
    mut room: usize,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, Unwritten>,
) -> io::Result<usize> {
    from_pool(outgoing);
    let start = outgoing.len();
    loop {
        outgoing.resize(start + room, 0);
        let result = write(&mut outgoing[start..]);
        let written = match &result {
            Ok(n) => *n,
            Err(_) => 0,
        };
        outgoing.truncate(start + written);
        match result {
            Ok(n) => return Ok(n),
            Err(Unwritten::Room(required)) if required > room => room = required,
            Err(Unwritten::Room(_)) => return Err(invalid("rustls asked for no more room than it had")),
            Err(Unwritten::Failed(e)) => return Err(e),
        }
    }
}

fn invalid(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// rustls neither renegotiates (TLS 1.2) nor has a handshake after the first (TLS 1.3): a
/// connection that wants one again cannot be written to.
fn handshaking_again() -> io::Error {
    io::Error::other("the TLS connection is in a handshake again")
}

fn eof_in_handshake() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "the peer left during the TLS handshake")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::test_support::{client_config, development_identity};
    use std::time::Duration;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream};

    struct Pair {
        server: TlsStream<DuplexStream>,
        client: tokio_rustls::client::TlsStream<DuplexStream>,
    }

    /// A server and a client over a pipe of `pipe` bytes (small pipes make partial records).
    async fn pair(versions: &[&'static rustls::SupportedProtocolVersion], pipe: usize) -> Pair {
        let (identity, dir) = development_identity();
        let config = crate::tls::wss_config(&identity).expect("configuration");
        let connector = tokio_rustls::TlsConnector::from(client_config(&identity, versions));
        let (near, far) = tokio::io::duplex(pipe);
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
        let (server, client) = tokio::join!(accept(config, far), connector.connect(name, near));
        let _ = std::fs::remove_dir_all(&dir);
        Pair {
            server: server.map_err(|(e, _)| e).expect("server handshake"),
            client: client.expect("client handshake"),
        }
    }

    fn payload(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    /// `bytes` written on one side arrive whole on the other.
    async fn carries<A, B>(from: &mut A, to: &mut B, bytes: &[u8])
    where
        A: AsyncWrite + Unpin,
        B: AsyncRead + Unpin,
    {
        let send = async {
            from.write_all(bytes).await.expect("written");
            from.flush().await.expect("flushed");
        };
        let mut got = vec![0; bytes.len()];
        let (_, read) = tokio::join!(send, to.read_exact(&mut got));
        read.expect("read");
        assert!(got == bytes, "{} bytes came through changed", bytes.len());
    }

    #[tokio::test]
    async fn carries_every_size_both_ways_in_tls_13_and_12() {
        for versions in [&[&rustls::version::TLS13][..], &[&rustls::version::TLS12][..]] {
            for pipe in [64, 64 * 1024] {
                let Pair { mut server, mut client } = pair(versions, pipe).await;
                for len in [1, 64, 5_000, MAX_RECORD + 1, 3 * MAX_WRITE + 17, 1 << 20] {
                    let bytes = payload(len);
                    carries(&mut client, &mut server, &bytes).await;
                    carries(&mut server, &mut client, &bytes).await;
                }
            }
        }
    }

    #[tokio::test]
    async fn an_idle_connection_holds_no_buffer() {
        let Pair { mut server, mut client } = pair(&[&rustls::version::TLS13], 64 * 1024).await;
        carries(&mut client, &mut server, &payload(20_000)).await;
        carries(&mut server, &mut client, &payload(20_000)).await;
        // A read that waits: nothing has arrived.
        let mut byte = [0; 1];
        let waited = tokio::time::timeout(Duration::from_millis(20), server.read(&mut byte)).await;
        assert!(waited.is_err(), "nothing was sent");
        assert_eq!(
            (server.incoming.capacity(), server.outgoing.capacity(), server.plain.capacity()),
            (0, 0, 0),
            "{server:?}"
        );
    }

    #[tokio::test]
    async fn close_notify_ends_the_stream_cleanly_both_ways() {
        let Pair { mut server, mut client } = pair(&[&rustls::version::TLS13], 1024).await;
        client.write_all(b"last").await.expect("written");
        client.shutdown().await.expect("close_notify sent");
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.expect("a clean end");
        assert_eq!(got, b"last");
        server.write_all(b"bye").await.expect("written after the peer's close_notify");
        server.shutdown().await.expect("close_notify sent");
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.expect("a clean end");
        assert_eq!(got, b"bye");
    }

    #[tokio::test]
    async fn a_socket_that_ends_without_close_notify_is_an_unexpected_end() {
        let Pair { mut server, client } = pair(&[&rustls::version::TLS13], 1024).await;
        let (tcp, _) = client.into_inner();
        drop(tcp);
        let mut byte = [0; 1];
        let e = server.read(&mut byte).await.expect_err("no clean end");
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn a_handshake_that_fails_gives_the_socket_back() {
        let (identity, dir) = development_identity();
        let config = crate::tls::wss_config(&identity).expect("configuration");
        let _ = std::fs::remove_dir_all(&dir);
        let (mut near, far) = tokio::io::duplex(1024);
        near.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("written");
        let (e, _far) = accept(config, far).await.expect_err("not TLS");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        // A peer that leaves mid-handshake is an unexpected end.
        let (identity, dir) = development_identity();
        let config = crate::tls::wss_config(&identity).expect("configuration");
        let _ = std::fs::remove_dir_all(&dir);
        let (near, far) = tokio::io::duplex(1024);
        drop(near);
        let (e, _far) = accept(config, far).await.expect_err("no handshake");
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
    }
}
