//! A host's answer to a JSON call from any sender (`json::answer`, which a host runs for every
//! HTTP request to a served contract): bytes as the body of a call to each method of a contract
//! with arguments of assorted types, to a name that is no method and to the address itself, by
//! `POST` or `GET`, with or without a `Connect-Timeout-Ms` of any text. No panic; every answer has
//! a status the Connect protocol uses, and a body, when it has one, that is JSON.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use relay_rpc::json::{JsonRequest, answer};

mod shapes;

use shapes::{Idle, ServeShapes};

/// What the calls ask for: each method, by its full and its short path, and none.
const PROCEDURES: [&str; 10] =
    ["Shapes/add", "add", "greet", "Shapes/draw", "upload", "tally", "log", "Other/add", "nope", ""];

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_time().build().expect("a runtime"))
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, body)) = data.split_first() else { return };
    let procedure = PROCEDURES[usize::from(choice & 0x0F) % PROCEDURES.len()];
    let method = if choice & 0x40 != 0 { "GET" } else { "POST" };
    let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    if choice & 0x80 != 0 {
        // The timeout's text is the body's first bytes, whatever they are.
        let text = String::from_utf8_lossy(&body[..body.len().min(12)]).into_owned();
        headers.push(("connect-timeout-ms".to_owned(), text));
    }
    let request = JsonRequest { method, address: "shapes", procedure, headers: &headers, body };
    let reply = runtime().block_on(answer(&ServeShapes::new(Idle), request));
    assert!(matches!(reply.status, 200 | 202 | 400..=599), "status {}", reply.status);
    if reply.content_type.is_some() && !reply.body.is_empty() {
        let parsed = serde_json::from_slice::<serde_json::Value>(&reply.body);
        assert!(parsed.is_ok(), "not JSON: {:?}", String::from_utf8_lossy(&reply.body));
    }
});
