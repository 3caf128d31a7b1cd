//! A client's reading of the relay's answer to its upgrade request: no panic; nothing past the
//! head is taken and nothing past the limit looked at; a head parses the same cut where it ends,
//! with more bytes after it, and written out again; an answer still arriving is never refused
//! for what it may yet become, and the acceptance check never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relay_proto::http::{AcceptError, MAX_HEAD, MAX_HEADERS, ResponseHead, parse_response};

/// The head as a server would write it.
fn write(head: &ResponseHead) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {:03} {}\r\n", head.status, head.reason);
    for (name, value) in &head.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

fuzz_target!(|data: &[u8]| {
    let parsed = parse_response(data);
    if data.len() > MAX_HEAD {
        assert_eq!(parse_response(&data[..MAX_HEAD]), parsed);
    }
    // A prefix of something still incomplete is incomplete too.
    if let Ok(None) = parsed {
        let cut = data.len() / 2;
        assert_eq!(parse_response(&data[..cut]), Ok(None));
    }
    let Ok(Some((head, used))) = parsed else { return };
    assert!(used <= data.len() && used <= MAX_HEAD && head.headers.len() <= MAX_HEADERS);
    assert!(head.status <= 999);
    let whole = Ok(Some((head.clone(), used)));
    assert_eq!(parse_response(&data[..used]), whole);
    assert_eq!(parse_response(&[&data[..used], b"HTTP/1.1 200 OK\r\n\r\n"].concat()), whole);
    let written = write(&head);
    if written.len() <= MAX_HEAD {
        assert_eq!(parse_response(&written), Ok(Some((head.clone(), written.len()))));
    }
    let _ = head.content_length();
    let accept = head.header("Sec-WebSocket-Accept").unwrap_or_default().trim().to_owned();
    match head.check_accept(&accept) {
        Ok(()) => assert_eq!(head.status, 101),
        Err(AcceptError::NotSwitching(status)) => assert_ne!(status, 101),
        Err(AcceptError::WrongAccept) => assert!(head.header("Sec-WebSocket-Accept").is_none()),
        Err(_) => {}
    }
});
