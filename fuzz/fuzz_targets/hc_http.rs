//! Hybrid Connections HTTP mode's inputs from the network: a sender's request target and
//! headers, a listener's `response` message and headers. No panics; what the relay passes on
//! holds none of its own parameters, no line breaks in headers, and printable reason phrases.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relay_proto::hc::ControlMessage;
use relay_proto::hc_http::{
    listener_headers, listener_target, reason_phrase, sender_headers, sender_status, sender_token,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // The first line is a request target, the others `name: value` headers.
    let mut lines = text.split('\n');
    let target = lines.next().unwrap_or_default();
    let headers: Vec<(&str, &str)> = lines.filter_map(|line| line.split_once(':')).collect();
    let _ = sender_token(target, &headers);
    let passed = listener_target(target);
    if let Some((_, query)) = passed.split_once('?') {
        for param in query.split('&') {
            if let Some((name, _)) = param.split_once('=') {
                let decoded = relay_proto::auth::percent::decode_lenient(name);
                assert!(!decoded.to_ascii_lowercase().starts_with(b"sb-hc-"), "{param}");
            }
        }
    }
    let to_listener = listener_headers(&headers, true, "relay.example");
    assert!(to_listener.keys().all(|name| !name.eq_ignore_ascii_case("servicebusauthorization")));
    let owned: Vec<(String, String)> = headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
    for (name, value) in sender_headers(&owned) {
        assert!(!name.is_empty() && !value.contains(['\r', '\n', '\0']), "{name}: {value:?}");
    }
    if let Some(reason) = reason_phrase(Some(text)) {
        assert!(reason.bytes().all(|b| b == b'\t' || (0x20..=0x7e).contains(&b)));
    }
    if let Ok(ControlMessage::Response(response)) = serde_json::from_str::<ControlMessage>(text) {
        assert!((200..=599).contains(&sender_status(response.status_code)) || sender_status(response.status_code) == 502);
        let json = serde_json::to_string(&ControlMessage::Response(response)).expect("serializable");
        assert!(serde_json::from_str::<ControlMessage>(&json).is_ok(), "{json}");
    }
});
