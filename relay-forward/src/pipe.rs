//! Joining a TCP connection to a stream channel, both ways, half-close included.
//!
//! Unlike `tokio::io::copy_bidirectional`, the pipe holds no buffer of its own: bytes read from
//! TCP go through one scratch buffer per thread into a frame of exactly their size, and each
//! frame received is written to TCP as it arrived. An idle connection costs what its socket and
//! its channel do, not two copy buffers.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use relay_rpc::stream::{MAX_CHUNK, RelayStream};

thread_local! {
    /// What TCP reads land in before they become a frame: one per thread, not per connection.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; MAX_CHUNK].into_boxed_slice());
}

/// Copies between `tcp` and `stream` both ways until both directions ended: the end of one
/// side's data shuts the other side's sending direction down, and copying goes on the other
/// way. Returns the bytes copied from TCP to the stream and back.
///
/// When either side fails, both are cut: the stream is dropped without its end-of-stream mark
/// (its peer's reads fail) and the TCP connection is reset rather than closed, so that neither
/// end mistakes a broken connection for a complete one.
pub(super) async fn pipe(mut tcp: TcpStream, mut stream: RelayStream) -> io::Result<(u64, u64)> {
    let _ = tcp.set_nodelay(true);
    let (mut up, mut down) = (ToStream::Reading { unflushed: false }, ToTcp::Receiving);
    let (mut sent, mut received) = (0u64, 0u64);
    let copied = poll_fn(|cx| {
        let up_done = up.poll(cx, &mut tcp, &mut stream, &mut sent)?.is_ready();
        let down_done = down.poll(cx, &mut tcp, &mut stream, &mut received)?.is_ready();
        if up_done && down_done { Poll::Ready(Ok((sent, received))) } else { Poll::Pending }
    })
    .await;
    if copied.is_err() {
        reset(&tcp);
    }
    copied
}

/// Makes dropping `tcp` reset the connection instead of closing it.
pub(super) fn reset(tcp: &TcpStream) {
    let _ = tcp.set_zero_linger();
}

/// TCP to the stream.
enum ToStream {
    /// Waiting for bytes from TCP; `unflushed` when frames were queued since the last flush.
    Reading {
        unflushed: bool,
    },
    /// Queueing what was read as frames.
    Sending(Bytes),
    /// TCP has nothing more for now: pushing the queued frames out.
    Flushing,
    /// TCP ended: ending the stream's sending direction.
    ShuttingDown,
    Done,
}

impl ToStream {
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        tcp: &mut TcpStream,
        stream: &mut RelayStream,
        copied: &mut u64,
    ) -> Poll<io::Result<()>> {
        loop {
            *self = match self {
                Self::Reading { unflushed } => match read_chunk(cx, tcp) {
                    Poll::Ready(Ok(Some(chunk))) => {
                        *copied += chunk.len() as u64;
                        Self::Sending(chunk)
                    }
                    Poll::Ready(Ok(None)) => Self::ShuttingDown,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending if *unflushed => Self::Flushing,
                    Poll::Pending => return Poll::Pending,
                },
                Self::Sending(chunk) => {
                    while !chunk.is_empty() {
                        ready!(stream.poll_write_chunk(cx, chunk))?;
                    }
                    Self::Reading { unflushed: true }
                }
                Self::Flushing => {
                    ready!(Pin::new(&mut *stream).poll_flush(cx))?;
                    Self::Reading { unflushed: false }
                }
                Self::ShuttingDown => {
                    ready!(Pin::new(&mut *stream).poll_shutdown(cx))?;
                    Self::Done
                }
                Self::Done => return Poll::Ready(Ok(())),
            };
        }
    }
}

/// Reads what TCP has, up to a chunk, into a `Bytes` of its size; `None` at its end.
fn read_chunk(cx: &mut Context<'_>, tcp: &mut TcpStream) -> Poll<io::Result<Option<Bytes>>> {
    SCRATCH.with_borrow_mut(|scratch| {
        let mut buf = ReadBuf::new(scratch);
        ready!(Pin::new(tcp).poll_read(cx, &mut buf))?;
        let read = buf.filled();
        Poll::Ready(Ok((!read.is_empty()).then(|| Bytes::copy_from_slice(read))))
    })
}

/// The stream to TCP.
enum ToTcp {
    /// Waiting for a frame.
    Receiving,
    /// Writing the rest of one to TCP.
    Writing(Bytes),
    /// The stream ended: ending TCP's sending direction.
    ShuttingDown,
    Done,
}

impl ToTcp {
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        tcp: &mut TcpStream,
        stream: &mut RelayStream,
        copied: &mut u64,
    ) -> Poll<io::Result<()>> {
        loop {
            *self = match self {
                Self::Receiving => match ready!(stream.poll_read_chunk(cx))? {
                    Some(chunk) => Self::Writing(chunk),
                    None => Self::ShuttingDown,
                },
                Self::Writing(chunk) => {
                    while !chunk.is_empty() {
                        let n = ready!(Pin::new(&mut *tcp).poll_write(cx, chunk))?;
                        if n == 0 {
                            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                        }
                        chunk.advance(n);
                        *copied += n as u64;
                    }
                    Self::Receiving
                }
                Self::ShuttingDown => {
                    ready!(Pin::new(&mut *tcp).poll_shutdown(cx))?;
                    Self::Done
                }
                Self::Done => return Poll::Ready(Ok(())),
            };
        }
    }
}
