//! Where a channel end's byte stream is in its framing, sans-IO: fed the bytes as they are read,
//! it says how many bytes the frame (or fragmented message) in progress still commits the relay
//! to hold, and where each unit the reader above will yield (a message, a control frame) ends.
//!
//! The relay reserves buffer budget from this before reading, so a frame's payload is reserved
//! whole as soon as its header has passed, and never read on credit: reservations are all or
//! nothing per frame, which is what keeps channels that wait for budget from deadlocking on
//! half-read messages.

use std::collections::VecDeque;

use relay_proto::ws_frame;

/// The framing of one end.
#[derive(Debug)]
pub(crate) enum Framing {
    /// WebSocket frames (RFC 6455, section 5.2).
    Ws(WsFraming),
    /// 4-byte big-endian length, then that many bytes (a QUIC channel's frames).
    Prefixed(Prefixed),
}

impl Framing {
    /// Feeds `bytes`, read at stream position `pos`; pushes the position just past each unit that
    /// ends in them.
    pub(crate) fn observe(&mut self, bytes: &[u8], pos: u64, ends: &mut VecDeque<u64>) {
        match self {
            Framing::Ws(ws) => ws.observe(bytes, pos, ends),
            Framing::Prefixed(prefixed) => prefixed.observe(bytes, pos, ends),
        }
    }

    /// Bytes still to come that the unit in progress has committed to (its declared payload, or
    /// a fragmented message's bound); 0 between frames, or inside a header.
    pub(crate) fn committed(&self) -> u64 {
        match self {
            Framing::Ws(ws) => ws.committed(),
            Framing::Prefixed(prefixed) => prefixed.committed(),
        }
    }
}

/// Bytes reserved for a fragmented message beyond its bound on payload: room for the headers of
/// its frames and of control frames interleaved with them.
const FRAGMENT_SLACK: u64 = 64 * 1024;

/// WebSocket framing.
#[derive(Debug)]
pub(crate) struct WsFraming {
    header: [u8; 14],
    have: usize,
    /// Payload bytes left in the current frame, once its header is complete.
    left: Option<u64>,
    /// Whether the current frame ends a unit (a control frame, or a data frame with FIN).
    ends_unit: bool,
    /// Inside a fragmented message: what its reservation still covers.
    fragmented: Option<u64>,
    /// The bound on a message's payload, reserved whole for a fragmented message, whose length no
    /// header declares.
    max_message: u64,
}

impl WsFraming {
    pub(crate) fn new(max_message: usize) -> Self {
        Self {
            header: [0; 14],
            have: 0,
            left: None,
            ends_unit: false,
            fragmented: None,
            max_message: max_message as u64,
        }
    }

    /// The header's full length, once its first two bytes are known.
    fn header_len(&self) -> usize {
        if self.have < 2 { 2 } else { ws_frame::header_len(self.header[1]) }
    }

    fn observe(&mut self, mut bytes: &[u8], mut pos: u64, ends: &mut VecDeque<u64>) {
        while !bytes.is_empty() {
            // A fragmented message's reservation covers what follows its first header.
            let was_fragmented = self.fragmented.is_some();
            let taken = match self.left {
                None => {
                    let take = (self.header_len() - self.have).min(bytes.len());
                    self.header[self.have..self.have + take].copy_from_slice(&bytes[..take]);
                    self.have += take;
                    if self.have == self.header_len() {
                        self.start_frame();
                    }
                    take
                }
                Some(left) => {
                    let take = left.min(bytes.len() as u64);
                    self.left = Some(left - take);
                    take as usize
                }
            };
            if let Some(covered) = self.fragmented.as_mut().filter(|_| was_fragmented) {
                *covered = covered.saturating_sub(taken as u64);
            }
            bytes = &bytes[taken..];
            pos += taken as u64;
            if self.left == Some(0) {
                self.end_frame(pos, ends);
            }
        }
    }

    fn start_frame(&mut self) {
        let fin = self.header[0] & 0x80 != 0;
        let opcode = self.header[0] & 0x0F;
        let control = opcode & 0x08 != 0;
        self.left = Some(ws_frame::declared_len(&self.header[..self.have]));
        self.ends_unit = control || fin;
        if !control && !fin && self.fragmented.is_none() {
            self.fragmented = Some(self.max_message.saturating_add(FRAGMENT_SLACK));
        }
    }

    fn end_frame(&mut self, pos: u64, ends: &mut VecDeque<u64>) {
        let control = self.header[0] & 0x08 != 0;
        if self.ends_unit {
            ends.push_back(pos);
            if !control {
                self.fragmented = None;
            }
        }
        self.have = 0;
        self.left = None;
    }

    fn committed(&self) -> u64 {
        let frame = self.left.unwrap_or(0);
        self.fragmented.map_or(frame, |covered| covered.max(frame))
    }
}

/// Length-prefixed framing.
#[derive(Debug, Default)]
pub(crate) struct Prefixed {
    prefix: [u8; 4],
    have: usize,
    left: Option<u64>,
}

impl Prefixed {
    fn observe(&mut self, mut bytes: &[u8], mut pos: u64, ends: &mut VecDeque<u64>) {
        while !bytes.is_empty() {
            let taken = match self.left {
                None => {
                    let take = (4 - self.have).min(bytes.len());
                    self.prefix[self.have..self.have + take].copy_from_slice(&bytes[..take]);
                    self.have += take;
                    if self.have == 4 {
                        self.left = Some(u64::from(u32::from_be_bytes(self.prefix)));
                    }
                    take
                }
                Some(left) => {
                    let take = left.min(bytes.len() as u64);
                    self.left = Some(left - take);
                    take as usize
                }
            };
            bytes = &bytes[taken..];
            pos += taken as u64;
            if self.left == Some(0) {
                ends.push_back(pos);
                self.have = 0;
                self.left = None;
            }
        }
    }

    fn committed(&self) -> u64 {
        self.left.unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame: FIN or not, `opcode`, `len` payload bytes.
    fn frame(fin: bool, opcode: u8, len: usize) -> Vec<u8> {
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        match len {
            0..=125 => out.push(0x80 | len as u8),
            126..=0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&[1, 2, 3, 4]);
        out.extend(std::iter::repeat_n(7, len));
        out
    }

    /// Feeds `stream` in pieces of `step` bytes; returns the unit ends.
    fn ends_of(framing: &mut Framing, stream: &[u8], step: usize) -> Vec<u64> {
        let mut ends = VecDeque::new();
        for (i, piece) in stream.chunks(step).enumerate() {
            framing.observe(piece, (i * step) as u64, &mut ends);
        }
        ends.into()
    }

    #[test]
    fn every_unit_ends_where_its_last_frame_ends_however_the_bytes_arrive() {
        let units = [frame(true, 2, 5), frame(true, 9, 0), frame(true, 1, 300), frame(true, 2, 70_000)];
        let stream: Vec<u8> = units.concat();
        let mut expected = Vec::new();
        let mut pos = 0;
        for unit in &units {
            pos += unit.len() as u64;
            expected.push(pos);
        }
        for step in [1, 2, 3, 7, 4096, stream.len()] {
            let mut framing = Framing::Ws(WsFraming::new(1 << 20));
            assert_eq!(ends_of(&mut framing, &stream, step), expected, "in pieces of {step}");
            assert_eq!(framing.committed(), 0);
        }
    }

    #[test]
    fn a_frame_commits_its_whole_payload_once_its_header_has_passed() {
        let big = frame(true, 2, 70_000);
        let mut framing = Framing::Ws(WsFraming::new(1 << 20));
        let mut ends = VecDeque::new();
        framing.observe(&big[..3], 0, &mut ends);
        assert_eq!(framing.committed(), 0, "inside the header nothing is declared yet");
        framing.observe(&big[3..14], 3, &mut ends);
        assert_eq!(framing.committed(), 70_000);
        framing.observe(&big[14..1014], 14, &mut ends);
        assert_eq!(framing.committed(), 69_000);
    }

    #[test]
    fn a_fragmented_message_commits_the_message_bound_until_its_last_fragment() {
        let stream = [frame(false, 2, 10), frame(true, 9, 3), frame(false, 0, 10), frame(true, 0, 10)].concat();
        let mut framing = Framing::Ws(WsFraming::new(1000));
        let mut ends = VecDeque::new();
        let first = frame(false, 2, 10).len();
        framing.observe(&stream[..first], 0, &mut ends);
        assert_eq!(framing.committed(), 1000 + FRAGMENT_SLACK - 10, "the bound, less the payload read");
        framing.observe(&stream[first..], first as u64, &mut ends);
        assert_eq!(framing.committed(), 0, "released once the message is whole");
        // The ping interleaved in the message is a unit of its own, and comes first.
        let ping_end = (first + frame(true, 9, 3).len()) as u64;
        assert_eq!(Vec::from(ends), [ping_end, stream.len() as u64]);
    }

    #[test]
    fn length_prefixed_frames_end_after_their_declared_length() {
        let stream: Vec<u8> = [&[0, 0, 0, 3, 1, 2, 3][..], &[0, 0, 0, 0], &[0, 1, 0, 0]].concat();
        for step in [1, 2, 5, 100] {
            let mut framing = Framing::Prefixed(Prefixed::default());
            assert_eq!(ends_of(&mut framing, &stream, step), [7, 11], "in pieces of {step}");
            assert_eq!(framing.committed(), 65_536, "a declared frame commits its length");
        }
    }
}
