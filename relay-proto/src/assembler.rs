//! One length-prefixed frame assembled from bytes as they arrive, without trusting its length.

use crate::frame::{FRAME_HEADER_LEN, ProtoError, decode_frame_len};

/// Assembles one frame (a `u32` big-endian length, then that many bytes) from chunks of any size,
/// sans-IO: a driver asks [`wanted`](Self::wanted) how many bytes to read, reads at most that
/// many, and [`push`](Self::push)es them.
///
/// The body's buffer grows with the bytes that arrive, never with the length the peer claims:
/// a peer that announces 64 KiB and sends nothing more costs nothing but this struct. And since
/// it never asks for more than the frame, nothing past the frame is consumed: the bytes after a
/// handshake belong to the channel.
///
/// ```
/// use relay_proto::{FrameAssembler, encode_frame};
///
/// let frame = encode_frame(b"hello");
/// let mut assembler = FrameAssembler::new(64);
/// let mut body = None;
/// for byte in &frame {
///     assert!(assembler.wanted() >= 1);
///     body = assembler.push(std::slice::from_ref(byte)).unwrap();
/// }
/// assert_eq!(body.as_deref(), Some(&b"hello"[..]));
/// ```
#[derive(Debug, Clone)]
pub struct FrameAssembler {
    max: usize,
    header: [u8; FRAME_HEADER_LEN],
    header_len: usize,
    /// The body's length, once the header is complete.
    len: Option<usize>,
    body: Vec<u8>,
}

impl FrameAssembler {
    /// An assembler for one frame whose body may be at most `max` bytes.
    pub fn new(max: usize) -> Self {
        Self { max, header: [0; FRAME_HEADER_LEN], header_len: 0, len: None, body: Vec::new() }
    }

    /// How many more bytes the frame needs; at least 1 until the frame is complete. A driver
    /// reads at most this many, so it never reads past the frame.
    pub fn wanted(&self) -> usize {
        match self.len {
            None => FRAME_HEADER_LEN - self.header_len,
            Some(len) => len - self.body.len(),
        }
    }

    /// Takes bytes that arrived (at most [`wanted`](Self::wanted)); returns the body once the
    /// frame is complete. Refuses a length above the maximum as soon as the header is complete,
    /// and more bytes than wanted.
    pub fn push(&mut self, mut bytes: &[u8]) -> Result<Option<Vec<u8>>, ProtoError> {
        if bytes.len() > self.wanted() {
            return Err(ProtoError::TrailingBytes(bytes.len() - self.wanted()));
        }
        if self.len.is_none() {
            let take = bytes.len().min(FRAME_HEADER_LEN - self.header_len);
            self.header[self.header_len..self.header_len + take].copy_from_slice(&bytes[..take]);
            self.header_len += take;
            bytes = &bytes[take..];
            if self.header_len < FRAME_HEADER_LEN {
                return Ok(None);
            }
            self.len = Some(decode_frame_len(self.header, self.max)?);
        }
        self.body.extend_from_slice(bytes);
        Ok((self.wanted() == 0).then(|| std::mem::take(&mut self.body)))
    }

    /// Starts over for the next frame, keeping the maximum.
    pub fn reset(&mut self) {
        *self = Self::new(self.max);
    }

    /// Bytes held so far (header included): what this frame costs its reader now.
    pub fn held(&self) -> usize {
        self.header_len + self.body.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{encode_frame, split_frame};

    /// Feeds `input` in chunks cut at `cuts` (each at most what is wanted), as a driver would.
    fn assemble(input: &[u8], max: usize, chunk: usize) -> (Result<Option<Vec<u8>>, ProtoError>, usize, usize) {
        let mut assembler = FrameAssembler::new(max);
        let (mut at, mut most_held) = (0, 0);
        loop {
            let take = assembler.wanted().min(chunk).min(input.len() - at);
            if take == 0 {
                return (Ok(None), at, most_held);
            }
            let result = assembler.push(&input[at..at + take]);
            at += take;
            most_held = most_held.max(assembler.held());
            match result {
                Ok(None) => {}
                done => return (done, at, most_held),
            }
        }
    }

    #[test]
    fn any_chunking_gives_what_split_frame_gives_and_reads_no_further() {
        let mut inputs = vec![encode_frame(b""), encode_frame(b"x"), encode_frame(&[7; 300]), vec![0, 0], vec![]];
        let mut trailing = encode_frame(b"hello");
        trailing.extend_from_slice(b"channel bytes");
        inputs.push(trailing);
        inputs.push(vec![0, 0, 1, 0, 1, 2, 3]);
        inputs.push(u32::MAX.to_be_bytes().to_vec());
        for input in &inputs {
            let expected = split_frame(input, 256).map(|f| f.map(|(body, used)| (body.to_vec(), used)));
            for chunk in 1..=input.len().max(1) + 1 {
                let (got, used, most_held) = assemble(input, 256, chunk);
                match (&expected, got) {
                    (Ok(Some((body, len))), Ok(Some(got))) => {
                        assert_eq!((&got, used), (body, *len), "{input:?} in chunks of {chunk}");
                    }
                    (Ok(None), Ok(None)) => assert_eq!(used, input.len()),
                    (Err(e), Err(got)) => assert_eq!(e, &got),
                    (expected, got) => panic!("{input:?} in chunks of {chunk}: {expected:?} vs {got:?}"),
                }
                assert!(most_held <= FRAME_HEADER_LEN + used.saturating_sub(FRAME_HEADER_LEN) * 2 + 8);
            }
        }
    }

    #[test]
    fn a_claimed_length_costs_nothing_until_its_bytes_arrive() {
        let mut assembler = FrameAssembler::new(64 * 1024);
        assert_eq!(assembler.push(&[0, 1, 0, 0]), Ok(None));
        assert_eq!(assembler.wanted(), 65_536);
        assert!(assembler.held() <= FRAME_HEADER_LEN, "held {}", assembler.held());
        assert_eq!(assembler.push(&[1; 10]), Ok(None));
        assert!(assembler.held() < 64, "held {}", assembler.held());
    }

    #[test]
    fn refuses_an_oversized_length_and_more_than_wanted() {
        let mut assembler = FrameAssembler::new(16);
        assert_eq!(assembler.push(&[0, 0, 0, 17]), Err(ProtoError::FrameTooLarge { len: 17, max: 16 }));
        let mut assembler = FrameAssembler::new(16);
        assert!(
            matches!(assembler.push(&[0, 0, 0, 1, 9, 9]), Err(ProtoError::TrailingBytes(2))),
            "6 bytes where 4 are wanted"
        );
    }
}
