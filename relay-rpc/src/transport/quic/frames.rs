//! A channel's frames over one QUIC stream, `u32` length-prefixed like handshake frames, moved
//! without buffers of their own: received chunks are cut into frames as quinn hands them over
//! ([`Deframer`]), and frames to send go to quinn as they are, small ones gathered into one
//! write ([`Framer`]). An idle channel holds no buffer at all.

use std::collections::VecDeque;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use futures::{Sink, Stream};
use quinn::{RecvStream, SendStream, Written};

use relay_proto::FRAME_HEADER_LEN;
use relay_proto::grant::OpenStream;

use super::{read_error, write_error};
use crate::channel::ChannelError;

/// Frames up to this size are copied, length and all, into the batch written at the next
/// flush; larger ones go to quinn as they are, without a copy.
const COPIED_FRAME: usize = 4 * 1024;
/// Bytes queued before a new frame waits until they are handed to quinn.
const QUEUED_BYTES: usize = 16 * 1024;

/// Received bytes in, whole frames out (sans-IO). Holds at most the chunk being cut and the
/// frame being assembled; a frame's buffer is made when its first body bytes arrive, not when
/// its length does.
#[derive(Debug)]
pub(super) struct Deframer {
    max: usize,
    header: [u8; FRAME_HEADER_LEN],
    header_len: usize,
    /// The frame being assembled: its length and what arrived of it.
    body: Option<(usize, BytesMut)>,
    /// What is left of the last chunk pushed.
    rest: Bytes,
}

impl Deframer {
    /// A deframer of frames of at most `max` bytes.
    pub(super) fn new(max: usize) -> Self {
        Self { max, header: [0; FRAME_HEADER_LEN], header_len: 0, body: None, rest: Bytes::new() }
    }

    /// Drops whatever was pushed and begun: after a failure, nothing more comes out.
    pub(super) fn reset(&mut self) {
        *self = Self::new(self.max);
    }

    /// Whether all that was pushed is taken: the next chunk may be pushed.
    pub(super) fn wants_more(&self) -> bool {
        self.rest.is_empty()
    }

    /// Takes a received chunk; only once [`wants_more`](Self::wants_more).
    pub(super) fn push(&mut self, chunk: Bytes) {
        debug_assert!(self.rest.is_empty(), "a chunk pushed over the rest of another");
        self.rest = chunk;
    }

    /// Whether a frame was begun and not finished: at the stream's end, a cut one.
    pub(super) fn mid_frame(&self) -> bool {
        self.header_len > 0 || self.body.is_some()
    }

    /// The next whole frame of what was pushed; `None` until more arrives. Once a chunk is
    /// all taken, nothing of it is kept: an empty slice of quinn's receive buffer would keep
    /// the whole buffer alive for as long as the channel sits idle.
    pub(super) fn next_frame(&mut self) -> Result<Option<BytesMut>, ChannelError> {
        let next = self.cut();
        if self.rest.is_empty() {
            self.rest = Bytes::new();
        }
        next
    }

    fn cut(&mut self) -> Result<Option<BytesMut>, ChannelError> {
        if self.body.is_none() {
            let take = (FRAME_HEADER_LEN - self.header_len).min(self.rest.len());
            self.header[self.header_len..self.header_len + take].copy_from_slice(&self.rest[..take]);
            self.rest.advance(take);
            self.header_len += take;
            if self.header_len < FRAME_HEADER_LEN {
                return Ok(None);
            }
            self.header_len = 0;
            let len = relay_proto::decode_frame_len(self.header, self.max)
                .map_err(|_| ChannelError::FrameTooLarge { max: self.max })?;
            if self.rest.len() >= len {
                return Ok(Some(BytesMut::from(&self.rest.split_to(len)[..])));
            }
            self.body = Some((len, BytesMut::new()));
        }
        let Some((len, body)) = self.body.as_mut() else { return Ok(None) };
        if self.rest.is_empty() {
            return Ok(None);
        }
        if body.capacity() == 0 {
            body.reserve(*len);
        }
        let take = (*len - body.len()).min(self.rest.len());
        body.extend_from_slice(&self.rest.split_to(take));
        if body.len() < *len {
            return Ok(None);
        }
        Ok(self.body.take().map(|(_, body)| body))
    }
}

/// Frames in, chunks for quinn out (sans-IO): small frames copied into one batch, larger ones
/// queued as they are behind their length.
#[derive(Debug, Default)]
pub(super) struct Framer {
    batch: BytesMut,
    queue: VecDeque<Bytes>,
    queued: usize,
}

impl Framer {
    /// Queues `frame` behind its length.
    pub(super) fn push(&mut self, frame: Bytes) {
        let header = u32::try_from(frame.len()).unwrap_or(u32::MAX).to_be_bytes();
        self.queued += FRAME_HEADER_LEN + frame.len();
        if frame.len() <= COPIED_FRAME {
            self.batch.extend_from_slice(&header);
            self.batch.extend_from_slice(&frame);
        } else {
            self.batch.extend_from_slice(&header);
            self.seal();
            self.queue.push_back(frame);
        }
    }

    /// Whether enough is queued that a new frame should wait.
    pub(super) fn is_full(&self) -> bool {
        self.queued >= QUEUED_BYTES
    }

    /// Whether nothing is left to hand to quinn.
    pub(super) fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// Everything queued, in order, for quinn's `write_chunks`.
    pub(super) fn chunks(&mut self) -> &mut [Bytes] {
        self.seal();
        self.queue.make_contiguous()
    }

    /// Takes note of what quinn took of [`chunks`](Self::chunks) (whole chunks taken are
    /// emptied, a chunk taken in part is cut in place).
    pub(super) fn written(&mut self, written: Written) {
        self.queue.drain(..written.chunks.min(self.queue.len()));
        self.queued = self.queued.saturating_sub(written.bytes);
        if self.queue.is_empty() {
            // Nothing stays allocated between bursts.
            self.batch = BytesMut::new();
        }
    }

    fn seal(&mut self) {
        if !self.batch.is_empty() {
            self.queue.push_back(self.batch.split().freeze());
        }
    }
}

/// A channel's frames over one QUIC stream.
pub(super) struct QuicFrames {
    recv: RecvStream,
    send: SendStream,
    max_frame: usize,
    deframer: Deframer,
    framer: Framer,
    /// The peer finished its side, or reading failed: no more frames.
    read_ended: bool,
    /// A stream the relay opened to a host counts against the host's grant while it lives.
    _open: Option<OpenStream>,
}

impl QuicFrames {
    pub(super) fn new(send: SendStream, recv: RecvStream, max_frame: usize, open: Option<OpenStream>) -> Self {
        Self {
            recv,
            send,
            max_frame,
            deframer: Deframer::new(max_frame),
            framer: Framer::default(),
            read_ended: false,
            _open: open,
        }
    }

    /// Hands quinn everything queued.
    fn poll_write_queued(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ChannelError>> {
        while !self.framer.is_empty() {
            let chunks = self.framer.chunks();
            let written = ready!(pin!(self.send.write_chunks(chunks)).poll(cx)).map_err(|e| write_error(&e))?;
            self.framer.written(written);
        }
        Poll::Ready(Ok(()))
    }
}

impl Stream for QuicFrames {
    type Item = Result<BytesMut, ChannelError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            match this.deframer.next_frame() {
                Ok(Some(frame)) => return Poll::Ready(Some(Ok(frame))),
                Ok(None) => {}
                Err(e) => {
                    this.read_ended = true;
                    this.deframer.reset();
                    return Poll::Ready(Some(Err(e)));
                }
            }
            if this.read_ended {
                if this.deframer.mid_frame() {
                    this.deframer.reset();
                    return Poll::Ready(Some(Err(ChannelError::Protocol("the stream ended inside a frame".into()))));
                }
                return Poll::Ready(None);
            }
            debug_assert!(this.deframer.wants_more());
            match ready!(pin!(this.recv.read_chunk(usize::MAX, true)).poll(cx)) {
                Ok(Some(chunk)) => this.deframer.push(chunk.bytes),
                Ok(None) => this.read_ended = true,
                Err(e) => {
                    this.read_ended = true;
                    this.deframer.reset();
                    return Poll::Ready(Some(Err(read_error(&e))));
                }
            }
        }
    }
}

impl Sink<Bytes> for QuicFrames {
    type Error = ChannelError;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), ChannelError>> {
        if self.framer.is_full() {
            ready!(self.poll_write_queued(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    fn start_send(mut self: Pin<&mut Self>, item: Bytes) -> Result<(), ChannelError> {
        if item.len() > self.max_frame {
            return Err(ChannelError::FrameTooLarge { max: self.max_frame });
        }
        self.framer.push(item);
        Ok(())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), ChannelError>> {
        self.poll_write_queued(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), ChannelError>> {
        ready!(self.poll_write_queued(cx))?;
        // Finishing twice (a close polled again) is no error.
        let _ = self.send.finish();
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(bodies: &[&[u8]]) -> Vec<u8> {
        bodies.iter().flat_map(|body| relay_proto::encode_frame(body)).collect()
    }

    /// Cuts `wire` into chunks of `size` and deframes them as the stream would.
    fn deframe(wire: &[u8], size: usize, max: usize) -> (Result<Vec<Vec<u8>>, ChannelError>, bool) {
        let mut deframer = Deframer::new(max);
        let mut frames = Vec::new();
        for chunk in wire.chunks(size) {
            deframer.push(Bytes::copy_from_slice(chunk));
            loop {
                match deframer.next_frame() {
                    Ok(Some(frame)) => frames.push(frame.to_vec()),
                    Ok(None) => break,
                    Err(e) => return (Err(e), deframer.mid_frame()),
                }
            }
            assert!(deframer.wants_more());
        }
        (Ok(frames), deframer.mid_frame())
    }

    #[test]
    fn frames_come_out_whole_however_the_bytes_are_cut() {
        let big = vec![9; 70_000];
        let bodies: [&[u8]; 5] = [b"", b"x", &[7; 300], &big, b"end"];
        let wire = framed(&bodies);
        for size in [1, 2, 3, 4, 5, 7, 1200, 4096, 65_536, wire.len()] {
            let (frames, mid) = deframe(&wire, size, 100_000);
            let frames = frames.unwrap();
            assert_eq!(frames.len(), bodies.len(), "chunks of {size}");
            for (frame, body) in frames.iter().zip(bodies) {
                assert_eq!(frame, body, "chunks of {size}");
            }
            assert!(!mid);
        }
    }

    #[test]
    fn a_length_over_the_limit_is_refused_before_its_body_and_a_cut_frame_is_seen() {
        let wire = framed(&[&[1; 65]]);
        assert!(matches!(deframe(&wire, 3, 64).0, Err(ChannelError::FrameTooLarge { max: 64 })));
        assert!(matches!(deframe(&wire[..4], 1, 64).0, Err(ChannelError::FrameTooLarge { max: 64 })));
        let (frames, mid) = deframe(&wire[..10], 4, 100);
        assert_eq!(frames.unwrap().len(), 0);
        assert!(mid, "a frame whose body was cut");
        let (_, mid) = deframe(&wire[..2], 1, 100);
        assert!(mid, "a frame whose length was cut");
    }

    #[test]
    fn nothing_of_a_chunk_is_kept_once_it_is_all_taken() {
        let wire = Bytes::from(framed(&[b"one", b"two"]));
        let mut deframer = Deframer::new(64);
        deframer.push(wire.clone());
        assert_eq!(&deframer.next_frame().unwrap().unwrap()[..], b"one");
        assert!(!wire.is_unique(), "the rest of the chunk is still to cut");
        assert_eq!(&deframer.next_frame().unwrap().unwrap()[..], b"two");
        assert!(wire.is_unique(), "the deframer let go of the chunk");
    }

    #[test]
    fn a_claimed_length_costs_nothing_until_its_body_arrives() {
        let mut deframer = Deframer::new(1 << 20);
        deframer.push(Bytes::copy_from_slice(&(1u32 << 20).to_be_bytes()));
        assert!(deframer.next_frame().unwrap().is_none());
        assert_eq!(deframer.body.as_ref().map(|(_, body)| body.capacity()), Some(0));
    }

    /// Everything `framer` queued, as quinn would be handed it, taken in steps of `step` bytes.
    fn drain(framer: &mut Framer, step: usize) -> Vec<u8> {
        let mut wire = Vec::new();
        while !framer.is_empty() {
            let chunks = framer.chunks();
            let (mut bytes, mut whole) = (0, 0);
            for chunk in chunks.iter_mut() {
                let take = chunk.len().min(step - bytes);
                wire.extend_from_slice(&chunk.split_to(take));
                bytes += take;
                if chunk.is_empty() {
                    whole += 1;
                } else {
                    break;
                }
            }
            framer.written(Written { bytes, chunks: whole });
        }
        wire
    }

    #[test]
    fn queued_frames_go_out_in_order_with_their_lengths_whatever_quinn_takes() {
        let big = Bytes::from(vec![3; 10_000]);
        let bodies = [Bytes::from_static(b"a"), big.clone(), Bytes::new(), Bytes::from_static(b"tail"), big];
        let expected = framed(&bodies.iter().map(|b| &b[..]).collect::<Vec<_>>());
        for step in [1, 5, 4096, 1 << 20] {
            let mut framer = Framer::default();
            for body in &bodies {
                framer.push(body.clone());
            }
            assert!(framer.is_full(), "20 KB queued");
            assert_eq!(drain(&mut framer, step), expected, "steps of {step}");
            assert!(!framer.is_full() && framer.is_empty());
            assert_eq!(framer.batch.capacity(), 0, "nothing kept once written");
        }
    }

    #[test]
    fn large_frames_are_handed_over_without_a_copy() {
        let big = Bytes::from(vec![5; COPIED_FRAME + 1]);
        let mut framer = Framer::default();
        framer.push(Bytes::from_static(b"small"));
        framer.push(big.clone());
        let chunks = framer.chunks();
        assert_eq!(chunks.len(), 2, "the small frame and the big one's length, then the big one");
        assert_eq!(chunks[1].as_ptr(), big.as_ptr());
    }
}
