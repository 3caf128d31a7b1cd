use super::*;

const MASK: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];

/// A client's frame.
fn frame(fin: bool, opcode: Opcode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(fin, opcode, Some(MASK), payload, &mut out);
    out
}

/// What `reader` reads from `input` fed `chunk` bytes at a time: binary pieces gathered per
/// message as `Bin(bytes)`, other events as they come.
fn read_all(reader: &mut MessageReader, input: &[u8], chunk: usize) -> Result<Vec<Seen>, WsFrameError> {
    let mut seen = Vec::new();
    let mut binary = Vec::new();
    for piece in input.chunks(chunk) {
        let mut piece = piece.to_vec();
        let mut at = 0;
        while at < piece.len() {
            let (used, event) = reader.read(&mut piece[at..])?;
            match event {
                Some(WsEvent::Binary { range, last }) => {
                    binary.extend_from_slice(&piece[at..][range]);
                    if last {
                        seen.push(Seen::Bin(std::mem::take(&mut binary)));
                    }
                }
                Some(other) => seen.push(Seen::Other(other)),
                None => assert_eq!(at + used, piece.len(), "used all the input without an event"),
            }
            at += used;
        }
    }
    Ok(seen)
}

#[derive(Debug, PartialEq)]
enum Seen {
    Bin(Vec<u8>),
    Other(WsEvent),
}

#[test]
fn headers_round_trip_at_every_length_form() {
    for len in [0, 1, 125, 126, 65_535, 65_536, 1 << 40] {
        for mask in [None, Some(MASK)] {
            let header = FrameHeader { fin: len % 2 == 0, opcode: Opcode::Binary, mask, len };
            let mut bytes = Vec::new();
            header.encode(&mut bytes);
            assert_eq!(FrameHeader::parse(&bytes), Ok(Some((header, bytes.len()))));
            for short in 0..bytes.len() {
                assert_eq!(FrameHeader::parse(&bytes[..short]), Ok(None), "{len} cut at {short}");
            }
        }
    }
}

#[test]
fn bad_headers_are_refused() {
    assert_eq!(FrameHeader::parse(&[0xC2, 0x80]), Err(WsFrameError::Reserved));
    assert_eq!(FrameHeader::parse(&[0x83, 0x80]), Err(WsFrameError::UnknownOpcode(3)));
    assert_eq!(FrameHeader::parse(&[0x09, 0x80]), Err(WsFrameError::BadControl), "a fragmented ping");
    assert_eq!(FrameHeader::parse(&[0x89, 0xFE, 0, 126]), Err(WsFrameError::BadControl), "a long ping");
    let mut long = vec![0x82, 0xFF];
    long.extend(u64::MAX.to_be_bytes());
    assert_eq!(FrameHeader::parse(&long), Err(WsFrameError::BadLength));
}

#[test]
fn a_fragmented_binary_message_with_a_ping_inside_reads_the_same_in_any_chunking() {
    let body: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    let mut input = frame(true, Opcode::Text, br#"{"response":{}}"#);
    input.extend(frame(false, Opcode::Binary, &body[..1000]));
    input.extend(frame(true, Opcode::Ping, b"are you there"));
    input.extend(frame(false, Opcode::Continuation, &body[1000..66_000]));
    input.extend(frame(false, Opcode::Continuation, b""));
    input.extend(frame(true, Opcode::Continuation, &body[66_000..]));
    input.extend(frame(true, Opcode::Binary, b""));
    input.extend(frame(true, Opcode::Close, &[0x03, 0xE8, b'b', b'y', b'e']));
    let expected = vec![
        Seen::Other(WsEvent::Text(r#"{"response":{}}"#.into())),
        Seen::Other(WsEvent::Ping(b"are you there".to_vec())),
        Seen::Bin(body.clone()),
        Seen::Bin(Vec::new()),
        Seen::Other(WsEvent::Close(Some((1000, "bye".into())))),
    ];
    for chunk in [1, 2, 3, 7, 13, 1000, 4096, input.len()] {
        let mut reader = MessageReader::new(100);
        assert_eq!(read_all(&mut reader, &input, chunk).unwrap(), expected, "chunks of {chunk}");
    }
}

#[test]
fn a_binary_piece_is_passed_on_before_its_frame_ends() {
    let body = vec![9u8; 10_000];
    let mut input = frame(true, Opcode::Binary, &body);
    let mut reader = MessageReader::new(100);
    let (used, event) = reader.read(&mut input[..100]).unwrap();
    assert_eq!(used, 100);
    let Some(WsEvent::Binary { range, last: false }) = event else { panic!("{event:?}") };
    assert_eq!(range, 8..100, "after the header (2 bytes, a 2-byte length, the mask)");
    assert!(input[range].iter().all(|&b| b == 9), "unmasked in place");
}

#[test]
fn broken_message_sequences_are_refused() {
    let refused = |input: Vec<u8>| read_all(&mut MessageReader::new(10), &input, input.len()).unwrap_err();
    assert_eq!(refused(frame(true, Opcode::Continuation, b"x")), WsFrameError::StrayContinuation);
    let mut interleaved = frame(false, Opcode::Binary, b"x");
    interleaved.extend(frame(true, Opcode::Text, b"y"));
    assert_eq!(refused(interleaved), WsFrameError::Interleaved);
    assert_eq!(refused(frame(true, Opcode::Text, b"eleven char")), WsFrameError::TextTooLong { max: 10 });
    assert_eq!(refused(frame(true, Opcode::Text, &[0xFF])), WsFrameError::NotUtf8);
    let mut unmasked = Vec::new();
    FrameHeader { fin: true, opcode: Opcode::Binary, mask: None, len: 0 }.encode(&mut unmasked);
    assert_eq!(refused(unmasked), WsFrameError::Unmasked);
}

#[test]
fn a_text_message_may_be_fragmented_and_a_close_may_be_bare() {
    let mut input = frame(false, Opcode::Text, b"hel");
    input.extend(frame(true, Opcode::Pong, b""));
    input.extend(frame(true, Opcode::Continuation, b"lo"));
    input.extend(frame(true, Opcode::Close, b""));
    let seen = read_all(&mut MessageReader::new(10), &input, 1).unwrap();
    assert_eq!(
        seen,
        vec![Seen::Other(WsEvent::Pong), Seen::Other(WsEvent::Text("hello".into())), Seen::Other(WsEvent::Close(None))]
    );
}

#[test]
fn a_bound_on_binary_messages_counts_every_fragment_and_refuses_at_the_header() {
    let mut input = frame(false, Opcode::Binary, &[1; 600]);
    input.extend(frame(true, Opcode::Continuation, &[2; 400]));
    let seen = read_all(&mut MessageReader::new(10).max_binary(1000), &input, 7).unwrap();
    assert_eq!(seen, vec![Seen::Bin([vec![1; 600], vec![2; 400]].concat())], "exactly the bound is taken");

    let mut over = frame(false, Opcode::Binary, &[1; 600]);
    let second = frame(true, Opcode::Continuation, &[2; 401]);
    let header_end = over.len() + 4 + 4;
    over.extend(&second);
    let mut reader = MessageReader::new(10).max_binary(1000);
    let (used, _) = reader.read(&mut over[..header_end - 1]).unwrap();
    let (rest, event) = reader.read(&mut over[used..header_end - 1]).unwrap();
    assert_eq!((used + rest, event), (header_end - 1, None), "a header short of a byte");
    let error = reader.read(&mut over[header_end - 1..header_end]).unwrap_err();
    assert_eq!(error, WsFrameError::BinaryTooLong { max: 1000 }, "refused once the header is whole");
}

#[test]
fn binary_left_says_what_the_binary_frame_in_progress_still_holds() {
    let mut input = frame(true, Opcode::Binary, &[5; 300]);
    let mut reader = MessageReader::new(10);
    assert_eq!(reader.binary_left(), None);
    reader.read(&mut input[..8 + 100]).unwrap();
    assert_eq!(reader.binary_left(), Some(200));
    let mut ping = frame(true, Opcode::Ping, b"p");
    let mut reader = MessageReader::new(10);
    reader.read(&mut ping[..6]).unwrap();
    assert_eq!(reader.binary_left(), None, "not in a control frame");
}

#[test]
fn close_frames_carry_a_sendable_code_and_a_utf8_reason() {
    let close = |payload: &[u8]| read_all(&mut MessageReader::new(10), &frame(true, Opcode::Close, payload), 3);
    assert_eq!(close(&[0x0F, 0xA0, b'o', b'k']).unwrap(), vec![Seen::Other(WsEvent::Close(Some((4000, "ok".into()))))]);
    assert_eq!(close(&[0x03]), Err(WsFrameError::BadClose), "one byte");
    assert_eq!(close(&1005u16.to_be_bytes()), Err(WsFrameError::BadClose), "1005 is never sent");
    assert_eq!(close(&999u16.to_be_bytes()), Err(WsFrameError::BadClose));
    assert_eq!(close(&[0x03, 0xE8, 0xFF]), Err(WsFrameError::BadClose), "a reason that is not UTF-8");
    assert!(is_sendable_close_code(1011) && is_sendable_close_code(3000) && !is_sendable_close_code(1015));
}

#[test]
fn masking_matches_the_byte_by_byte_definition_at_every_offset_and_length() {
    let mask = [0x12, 0x34, 0x56, 0x78];
    for offset in 0..8u64 {
        for len in 0..40 {
            let original: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let mut fast = original.clone();
            apply_mask(&mut fast, mask, offset);
            // RFC 6455, section 5.3: byte i of the payload is XORed with mask[i mod 4].
            let slow: Vec<u8> = original.iter().enumerate().map(|(i, b)| b ^ mask[(offset as usize + i) % 4]).collect();
            assert_eq!(fast, slow, "offset {offset}, {len} bytes");
        }
    }
}
