//! The byte stream under a WebSocket to the relay: TCP, with TLS unless the URL said `ws://`,
//! remembering when it last heard from the relay.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;

/// TCP, or TLS over TCP.
#[derive(Debug)]
pub(crate) enum MaybeTls {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// A stream that notes when it last heard from the relay: any byte from it, a whole message or a
/// part of a large one, and a write that goes on after the stream would take no more (the
/// relay's side took some of what waited). A channel held back by a slow reader on the other
/// side sends its pings behind what it cannot send yet, so their answers come late; that its
/// bytes move at all says the relay is there.
#[derive(Debug)]
pub(crate) struct Heard<S> {
    inner: S,
    last_read: Instant,
    /// The last write found the stream full.
    write_blocked: bool,
}

impl<S> Heard<S> {
    pub(crate) fn new(inner: S) -> Self {
        Self { inner, last_read: Instant::now(), write_blocked: false }
    }

    /// When the relay was last heard from (or when the stream was made).
    pub(crate) fn last_read(&self) -> Instant {
        self.last_read
    }

    /// Notes how a write went: progress after the stream was full is news from the relay.
    fn wrote<T>(&mut self, result: Poll<io::Result<T>>, progress: impl FnOnce(&T) -> bool) -> Poll<io::Result<T>> {
        match &result {
            Poll::Pending => self.write_blocked = true,
            Poll::Ready(Ok(value)) if progress(value) => {
                if std::mem::take(&mut self.write_blocked) {
                    self.last_read = Instant::now();
                }
            }
            Poll::Ready(_) => {}
        }
        result
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Heard<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.last_read = Instant::now();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Heard<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(result, |&n| n > 0)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(result, |&n| n > 0)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        self.wrote(result, |()| true)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl AsyncRead for MaybeTls {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MaybeTls {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn reads_and_writes_that_go_on_after_a_full_stream_are_news_from_the_relay() {
        let (ours, mut relay) = tokio::io::duplex(16);
        let mut stream = Heard::new(ours);
        let made = stream.last_read();
        tokio::time::advance(Duration::from_secs(1)).await;
        stream.write_all(&[0; 16]).await.unwrap();
        assert_eq!(stream.last_read(), made, "writes into room say nothing");

        // Full: the next write waits until the relay reads.
        let write = tokio::spawn(async move {
            stream.write_all(&[0; 8]).await.unwrap();
            stream
        });
        tokio::time::advance(Duration::from_secs(1)).await;
        tokio::task::yield_now().await;
        relay.read_exact(&mut [0; 16]).await.unwrap();
        let mut stream = write.await.unwrap();
        assert_eq!(stream.last_read(), made + Duration::from_secs(2), "it went on");

        tokio::time::advance(Duration::from_secs(1)).await;
        relay.write_all(b"x").await.unwrap();
        stream.read_exact(&mut [0; 1]).await.unwrap();
        assert_eq!(stream.last_read(), made + Duration::from_secs(3), "a byte read");
    }
}
