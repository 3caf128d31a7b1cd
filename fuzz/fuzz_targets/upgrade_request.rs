//! The relay's reading of a WebSocket upgrade request head: no panic; nothing past the head is
//! taken and nothing past the limit looked at; a head parses the same cut where it ends, with
//! more bytes after it, and written out again; the upgrade checks never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relay_proto::http::{MAX_HEAD, MAX_HEADERS, RequestHead, parse_request};

/// The head as a client would write it.
fn write(head: &RequestHead) -> Vec<u8> {
    let mut out = format!("{} {} HTTP/1.1\r\n", head.method, head.target);
    for (name, value) in &head.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

fuzz_target!(|data: &[u8]| {
    let parsed = parse_request(data);
    // Nothing past MAX_HEAD bytes changes the answer.
    if data.len() > MAX_HEAD {
        assert_eq!(parse_request(&data[..MAX_HEAD]), parsed);
    }
    let Ok(Some((head, used))) = parsed else { return };
    assert!(used <= data.len() && used <= MAX_HEAD && head.headers.len() <= MAX_HEADERS);
    let whole = Ok(Some((head.clone(), used)));
    assert_eq!(parse_request(&data[..used]), whole);
    assert_eq!(parse_request(&[&data[..used], b"\r\n\r\nGET / HTTP/1.1\r\n\r\n"].concat()), whole);
    let written = write(&head);
    if written.len() <= MAX_HEAD {
        assert_eq!(parse_request(&written), Ok(Some((head.clone(), written.len()))));
    }
    if let Ok(key) = head.websocket_key() {
        assert!(!key.is_empty() && head.method == "GET");
    }
    let _ = head.first_protocol();
});
