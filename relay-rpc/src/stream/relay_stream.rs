//! [`RelayStream`]: a channel read and written as a byte stream, with the end-of-stream mark.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures::{Sink, SinkExt, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::channel::{Channel, ChannelError};

/// The largest frame a write becomes; longer writes are split.
pub const MAX_CHUNK: usize = 64 * 1024;

/// How long a stream whose two directions both ended may take to close its channel cleanly
/// after it is dropped.
const LINGER: Duration = Duration::from_secs(5);

/// An untyped, two-way byte stream through the relay: [`AsyncRead`] + [`AsyncWrite`] over a
/// [`Channel`].
///
/// Open one with [`connect`](super::connect), take one with [`accept`](super::accept) or
/// [`accept_channel`](super::accept_channel). See [the module docs](super) for how bytes,
/// half-close and aborts map onto the channel.
///
/// - A write sends one frame of at most [`MAX_CHUNK`] bytes (longer writes are split); like a
///   socket's, it may sit in a bounded buffer until [`flush`](tokio::io::AsyncWriteExt::flush).
/// - [`shutdown`](tokio::io::AsyncWriteExt::shutdown) ends the sending direction: the peer
///   reads the end of the stream and may still write back. Writing afterwards fails with
///   [`io::ErrorKind::BrokenPipe`].
/// - A read returns the bytes of received frames; `Ok(0)` once the peer shut down.
/// - Dropping the stream after both directions ended closes the channel cleanly in the
///   background. Dropping it earlier, or without a shutdown, aborts: the peer's reads fail
///   instead of seeing the end of the stream, as with a TCP reset.
///
/// Errors are [`io::Error`]s whose [`get_ref`](io::Error::get_ref) is the [`ChannelError`]:
/// [`ConnectionReset`](io::ErrorKind::ConnectionReset) when the peer went away,
/// [`ConnectionAborted`](io::ErrorKind::ConnectionAborted) when the relay connection was lost
/// or the relay shut down, [`UnexpectedEof`](io::ErrorKind::UnexpectedEof) when the channel
/// ended without the peer's end-of-stream mark (it aborted, or does not speak this convention).
pub struct RelayStream {
    /// `None` only while dropping.
    channel: Option<Channel>,
    /// The rest of the frame being read.
    pending: BytesMut,
    read: ReadState,
    write: WriteState,
}

/// What the receiving direction has seen.
#[derive(Debug)]
enum ReadState {
    Open,
    /// The peer's end-of-stream mark.
    Eof,
    /// The channel ended without the mark.
    Truncated,
    Failed(ChannelError),
}

/// How far the sending direction is.
#[derive(Debug)]
enum WriteState {
    Open,
    /// The end-of-stream mark is queued, not yet flushed.
    Ending,
    /// The end-of-stream mark is flushed.
    Ended,
    Failed(ChannelError),
}

impl RelayStream {
    /// A byte stream over `channel`, whose peer speaks this module's convention (a
    /// [`RelayStream`] on the other end, or any peer that marks its end with an empty frame).
    pub fn new(channel: Channel) -> Self {
        Self { channel: Some(channel), pending: BytesMut::new(), read: ReadState::Open, write: WriteState::Open }
    }

    /// The address this stream's channel was opened to.
    pub fn address(&self) -> &str {
        self.channel().address()
    }

    /// The relay's id for this stream's channel (0 on the caller side).
    pub fn id(&self) -> u64 {
        self.channel().id()
    }

    fn channel(&self) -> &Channel {
        self.channel.as_ref().expect("the channel is only taken on drop")
    }

    fn channel_mut(&mut self) -> Pin<&mut Channel> {
        Pin::new(self.channel.as_mut().expect("the channel is only taken on drop"))
    }

    /// Records a sending failure and turns it into an `io::Error`.
    fn write_failed(&mut self, e: ChannelError) -> io::Error {
        self.write = WriteState::Failed(e.clone());
        io_error(e)
    }

    /// Waits until the channel takes a frame, then queues `frame`.
    fn poll_send(&mut self, cx: &mut Context<'_>, frame: impl FnOnce() -> Bytes) -> Poll<io::Result<()>> {
        if let Err(e) = ready!(self.channel_mut().poll_ready(cx)) {
            return Poll::Ready(Err(self.write_failed(e)));
        }
        if let Err(e) = self.channel_mut().start_send(frame()) {
            return Poll::Ready(Err(self.write_failed(e)));
        }
        Poll::Ready(Ok(()))
    }
}

impl From<Channel> for RelayStream {
    fn from(channel: Channel) -> Self {
        Self::new(channel)
    }
}

impl fmt::Debug for RelayStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayStream")
            .field("channel", &self.channel)
            .field("read", &self.read)
            .field("write", &self.write)
            .finish_non_exhaustive()
    }
}

/// The `io::Error` for a channel error, keeping it as the source.
fn io_error(e: ChannelError) -> io::Error {
    let kind = match &e {
        ChannelError::Closed => io::ErrorKind::BrokenPipe,
        ChannelError::ListenerGone | ChannelError::CallerGone => io::ErrorKind::ConnectionReset,
        ChannelError::RelayShutdown | ChannelError::ConnectionLost(_) => io::ErrorKind::ConnectionAborted,
        ChannelError::Protocol(_) | ChannelError::FrameTooLarge { .. } => io::ErrorKind::InvalidData,
        ChannelError::Io(e) => e.kind(),
    };
    io::Error::new(kind, e)
}

impl RelayStream {
    /// Reads the next bytes received as they arrived, without copying them into a buffer of
    /// the reader's: `Ok(Some(chunk))` (never empty), `Ok(None)` once the peer shut its
    /// direction down. Errors as for [`AsyncRead`]. For forwarding loops that hand the bytes on
    /// as they are, as `relay connect` and `relay forward` do; it may be mixed with reads.
    ///
    /// ```no_run
    /// use relay_rpc::stream::RelayStream;
    ///
    /// # async fn run(mut stream: RelayStream) -> std::io::Result<()> {
    /// while let Some(chunk) = std::future::poll_fn(|cx| stream.poll_read_chunk(cx)).await? {
    ///     println!("{} bytes", chunk.len());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn poll_read_chunk(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Bytes>>> {
        Poll::Ready(match ready!(self.poll_fill(cx)) {
            Ok(true) => Ok(Some(std::mem::take(&mut self.pending).freeze())),
            Ok(false) => Ok(None),
            Err(e) => Err(e),
        })
    }

    /// Sends the front of `chunk` (at most [`MAX_CHUNK`] bytes) as one frame, taking those bytes
    /// out of it without copying them; call again while it is not empty. An empty `chunk` sends
    /// nothing (the end of the stream is [`shutdown`](tokio::io::AsyncWriteExt::shutdown)).
    /// Like a write, the frame may sit in a bounded buffer until a flush. Errors as for
    /// [`AsyncWrite`].
    pub fn poll_write_chunk(&mut self, cx: &mut Context<'_>, chunk: &mut Bytes) -> Poll<io::Result<()>> {
        self.writable()?;
        if chunk.is_empty() {
            return Poll::Ready(Ok(()));
        }
        let n = chunk.len().min(MAX_CHUNK);
        self.poll_send(cx, || chunk.split_to(n))
    }

    /// Whether writing may go on: an error once the stream was shut down or failed.
    fn writable(&self) -> io::Result<()> {
        match &self.write {
            WriteState::Open => Ok(()),
            WriteState::Ending | WriteState::Ended => {
                Err(io::Error::new(io::ErrorKind::BrokenPipe, "the stream was shut down"))
            }
            WriteState::Failed(e) => Err(io_error(e.clone())),
        }
    }

    /// Waits until received bytes are pending (`true`) or the peer's end of the stream was
    /// read (`false`).
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        loop {
            if !self.pending.is_empty() {
                return Poll::Ready(Ok(true));
            }
            match &self.read {
                ReadState::Open => {}
                ReadState::Eof => return Poll::Ready(Ok(false)),
                ReadState::Truncated => return Poll::Ready(Err(io_error_truncated())),
                ReadState::Failed(e) => return Poll::Ready(Err(io_error(e.clone()))),
            }
            self.read = match ready!(self.channel_mut().poll_next(cx)) {
                Some(Ok(frame)) if frame.is_empty() => ReadState::Eof,
                Some(Ok(frame)) => {
                    self.pending = frame;
                    continue;
                }
                Some(Err(e)) => ReadState::Failed(e),
                None => ReadState::Truncated,
            };
        }
    }
}

impl AsyncRead for RelayStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return match &this.read {
                ReadState::Truncated if this.pending.is_empty() => Poll::Ready(Err(io_error_truncated())),
                ReadState::Failed(e) if this.pending.is_empty() => Poll::Ready(Err(io_error(e.clone()))),
                _ => Poll::Ready(Ok(())),
            };
        }
        if ready!(this.poll_fill(cx))? {
            let n = this.pending.len().min(buf.remaining());
            buf.put_slice(&this.pending[..n]);
            this.pending.advance(n);
            if this.pending.is_empty() {
                // An empty view of a frame keeps all of it allocated while the stream is idle.
                this.pending = BytesMut::new();
            }
        }
        Poll::Ready(Ok(()))
    }
}

fn io_error_truncated() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, ChannelError::Closed)
}

impl AsyncWrite for RelayStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.writable()?;
        // An empty frame is the end-of-stream mark: an empty write sends nothing.
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = buf.len().min(MAX_CHUNK);
        ready!(this.poll_send(cx, || Bytes::copy_from_slice(&buf[..n])))?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let WriteState::Failed(e) = &this.write {
            return Poll::Ready(Err(io_error(e.clone())));
        }
        match ready!(this.channel_mut().poll_flush(cx)) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(this.write_failed(e))),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match &this.write {
            WriteState::Open => {
                ready!(this.poll_send(cx, Bytes::new))?;
                this.write = WriteState::Ending;
            }
            WriteState::Ending => {}
            WriteState::Ended => return Poll::Ready(Ok(())),
            WriteState::Failed(e) => return Poll::Ready(Err(io_error(e.clone()))),
        }
        match ready!(this.channel_mut().poll_flush(cx)) {
            Ok(()) => {
                this.write = WriteState::Ended;
                Poll::Ready(Ok(()))
            }
            Err(e) => Poll::Ready(Err(this.write_failed(e))),
        }
    }
}

impl Drop for RelayStream {
    fn drop(&mut self) {
        let both_ended =
            matches!(self.read, ReadState::Eof) && matches!(self.write, WriteState::Ending | WriteState::Ended);
        let Some(channel) = self.channel.take() else { return };
        if !both_ended {
            // An abort: dropping the channel cuts it (over WebSocket) or ends it without the
            // mark (over QUIC); either way the peer's reads fail.
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(linger(channel));
        }
    }
}

/// Closes a channel whose two directions both ended: flushes what is queued, ends the channel,
/// and reads until the peer's end too, so that nothing in flight is cut (a WebSocket dropped
/// with unread data resets its TCP connection, which may discard what it still had to send).
async fn linger(mut channel: Channel) {
    let close = async {
        if SinkExt::<Bytes>::close(&mut channel).await.is_ok() {
            while let Some(Ok(_)) = channel.next().await {}
        }
    };
    if tokio::time::timeout(LINGER, close).await.is_err() {
        tracing::debug!(address = %channel.address(), id = channel.id(), "stream channel did not close in time");
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{Context, Poll};

    use bytes::{Bytes, BytesMut};
    use futures::channel::mpsc;
    use futures::{Sink, Stream};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// One end of an in-memory channel: bounded queues of frames both ways. A dropped end reads
    /// as the channel's end, without a mark, as a QUIC stream finished on drop does.
    struct MemFrames {
        tx: mpsc::Sender<Bytes>,
        rx: mpsc::Receiver<Bytes>,
    }

    fn pair() -> (RelayStream, RelayStream) {
        let (a_tx, a_rx) = mpsc::channel(4);
        let (b_tx, b_rx) = mpsc::channel(4);
        let a = Channel::new(MemFrames { tx: a_tx, rx: b_rx }, Arc::from("mem"), 1, "memory");
        let b = Channel::new(MemFrames { tx: b_tx, rx: a_rx }, Arc::from("mem"), 1, "memory");
        (RelayStream::new(a), RelayStream::new(b))
    }

    impl Stream for MemFrames {
        type Item = Result<BytesMut, ChannelError>;

        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            Pin::new(&mut self.rx).poll_next(cx).map(|frame| frame.map(|f| Ok(BytesMut::from(f))))
        }
    }

    impl Sink<Bytes> for MemFrames {
        type Error = ChannelError;

        fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), ChannelError>> {
            self.tx.poll_ready(cx).map_err(|_| ChannelError::CallerGone)
        }

        fn start_send(mut self: Pin<&mut Self>, frame: Bytes) -> Result<(), ChannelError> {
            self.tx.start_send(frame).map_err(|_| ChannelError::CallerGone)
        }

        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), ChannelError>> {
            Poll::Ready(Ok(()))
        }

        fn poll_close(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), ChannelError>> {
            self.tx.close_channel();
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn a_stream_can_move_between_tasks() {
        fn assert_send_unpin<T: AsyncRead + AsyncWrite + Send + Unpin + 'static>() {}
        assert_send_unpin::<RelayStream>();
    }

    #[tokio::test]
    async fn writes_become_frames_of_at_most_a_chunk_and_the_end_an_empty_frame() {
        let (mut a, mut b) = pair();
        let writer = tokio::spawn(async move {
            a.write_all(&vec![7; 3 * MAX_CHUNK + 5]).await.unwrap();
            a.write_all(b"").await.unwrap();
            a.shutdown().await.unwrap();
            a
        });
        let channel = b.channel.as_mut().unwrap();
        let mut sizes = Vec::new();
        while let Some(frame) = channel.next().await {
            let len = frame.unwrap().len();
            sizes.push(len);
            if len == 0 {
                break;
            }
        }
        assert_eq!(sizes, [MAX_CHUNK, MAX_CHUNK, MAX_CHUNK, 5, 0]);
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn bytes_go_both_ways_and_a_direction_ends_alone() {
        let (mut a, mut b) = pair();
        let big: Vec<u8> = (0..3 * MAX_CHUNK + 5).map(|i| (i % 253) as u8).collect();
        let writer = {
            let big = big.clone();
            tokio::spawn(async move {
                a.write_all(&big).await.unwrap();
                a.write_all(b"").await.unwrap();
                a.shutdown().await.unwrap();
                a
            })
        };
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, big);
        assert_eq!(b.read(&mut [0; 8]).await.unwrap(), 0, "the end stays the end");
        let mut a = writer.await.unwrap();
        b.write_all(b"reply after the peer's end").await.unwrap();
        b.shutdown().await.unwrap();
        let mut reply = String::new();
        a.read_to_string(&mut reply).await.unwrap();
        assert_eq!(reply, "reply after the peer's end");
    }

    #[tokio::test]
    async fn writing_after_shutdown_is_a_broken_pipe() {
        let (mut a, _b) = pair();
        a.shutdown().await.unwrap();
        a.shutdown().await.unwrap();
        assert_eq!(a.write(b"x").await.unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    }

    #[tokio::test]
    async fn a_peer_that_drops_without_shutdown_is_an_unexpected_end() {
        let (mut a, mut b) = pair();
        a.write_all(b"partial").await.unwrap();
        drop(a);
        let mut buf = [0; 7];
        b.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"partial");
        let err = b.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(err.get_ref().is_some_and(|e| e.is::<ChannelError>()));
        assert_eq!(b.read(&mut buf).await.unwrap_err().kind(), io::ErrorKind::UnexpectedEof, "stays failed");
        let err = b.write_all(b"anyone?").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}");
    }

    #[tokio::test]
    async fn a_stream_ended_both_ways_closes_its_channel_when_dropped() {
        let (mut a, mut b) = pair();
        a.shutdown().await.unwrap();
        assert_eq!(b.read(&mut [0; 1]).await.unwrap(), 0);
        b.shutdown().await.unwrap();
        assert_eq!(a.read(&mut [0; 1]).await.unwrap(), 0);
        drop(a);
        // The lingering close ends a's sending queue: b's channel sees its end.
        let mut channel = b.channel.take().unwrap();
        let next = tokio::time::timeout(Duration::from_secs(5), channel.next()).await.unwrap();
        assert!(next.is_none(), "{next:?}");
    }
}
