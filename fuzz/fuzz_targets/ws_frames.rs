//! The WebSocket frame reader every WebSocket channel end reads through (the relay's, a client's):
//! fed a client's or a server's bytes in any chunking (the first byte of the input says which
//! side's reader, in its top bit, and chooses the chunk sizes), it never panics, reads the same
//! messages and fails with the same error as when fed everything at once, uses all of its input
//! whenever it has no event, and never holds more than a header, a control frame and the text
//! message in progress.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relay_proto::ws_frame::{MessageReader, WsEvent, WsFrameError};

/// The longest text message taken.
const MAX_TEXT: usize = 256;

/// What a reader made of some bytes: its events (a binary message's pieces joined into one),
/// then how it stopped.
#[derive(Debug, PartialEq)]
struct Reading {
    events: Vec<Seen>,
    error: Option<WsFrameError>,
}

#[derive(Debug, PartialEq)]
enum Seen {
    Binary(Vec<u8>),
    Other(WsEvent),
}

fn read(input: &[u8], of_server: bool, chunk_sizes: impl Fn(usize) -> usize) -> Reading {
    let mut reader = if of_server { MessageReader::of_server(MAX_TEXT) } else { MessageReader::new(MAX_TEXT) };
    let (mut events, mut binary) = (Vec::new(), Vec::new());
    let (mut at, mut step) = (0, 0);
    while at < input.len() {
        let size = chunk_sizes(step).min(input.len() - at);
        step += 1;
        let mut chunk = input[at..at + size].to_vec();
        at += size;
        let mut used = 0;
        while used < chunk.len() {
            match reader.read(&mut chunk[used..]) {
                Err(error) => return Reading { events, error: Some(error) },
                Ok((n, None)) => {
                    assert_eq!(used + n, chunk.len(), "no event, yet not all the input used");
                    used += n;
                }
                Ok((n, Some(WsEvent::Binary { range, last }))) => {
                    assert!(range.end <= n, "a piece outside what was used");
                    binary.extend_from_slice(&chunk[used..][range]);
                    if last {
                        events.push(Seen::Binary(std::mem::take(&mut binary)));
                    }
                    used += n;
                }
                Ok((n, Some(event))) => {
                    events.push(Seen::Other(event));
                    used += n;
                }
            }
        }
    }
    Reading { events, error: None }
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, input)) = data.split_first() else { return };
    let of_server = seed & 0x80 != 0;
    let most = usize::from(seed & 0x7F) + 1;
    let whole = read(input, of_server, |_| usize::MAX);
    let chunked = read(input, of_server, |step| 1 + step % most);
    // A message still in progress at the end is not in either reading's events.
    assert_eq!(whole, chunked);
});
