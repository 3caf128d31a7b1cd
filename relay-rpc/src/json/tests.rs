//! `answer` end to end, in process, against a generated dispatcher.

use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::*;

/// The service's own error.
#[derive(Debug, Serialize, Deserialize)]
pub enum MathError {
    DivisionByZero,
}

#[crate::relay_service(name = "example.Calculator")]
pub trait Calculator {
    /// Adds.
    async fn add(a: i64, b: i64) -> i64;
    #[idempotent]
    async fn divide(a: i64, b: i64) -> Result<i64, MathError>;
    async fn reset();
    async fn unit_result(fail: bool) -> Result<(), String>;
    async fn greet(name: String, title: Option<String>) -> String;
    #[oneway]
    async fn log(line: String);
    async fn sleep(ms: u64) -> u64;
    async fn panic();
}

struct Calc {
    logged: mpsc::UnboundedSender<String>,
    resets: Mutex<u32>,
}

impl Calculator for Calc {
    async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }

    async fn divide(&self, a: i64, b: i64) -> Result<i64, MathError> {
        a.checked_div(b).ok_or(MathError::DivisionByZero)
    }

    async fn reset(&self) {
        *self.resets.lock().unwrap() += 1;
    }

    async fn unit_result(&self, fail: bool) -> Result<(), String> {
        if fail { Err("failed".into()) } else { Ok(()) }
    }

    async fn greet(&self, name: String, title: Option<String>) -> String {
        match title {
            Some(title) => format!("{title} {name}"),
            None => name,
        }
    }

    async fn log(&self, line: String) {
        self.logged.send(line).unwrap();
    }

    async fn sleep(&self, ms: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        ms
    }

    async fn panic(&self) {
        panic!("the handler panicked on purpose");
    }
}

fn calc() -> (ServeCalculator<Calc>, mpsc::UnboundedReceiver<String>) {
    let (logged, lines) = mpsc::unbounded_channel();
    (ServeCalculator::new(Calc { logged, resets: Mutex::new(0) }), lines)
}

fn json_headers() -> Vec<(String, String)> {
    vec![("content-type".into(), "application/json".into())]
}

/// POSTs `body` to `procedure` with a JSON content type and `extra` headers.
async fn post(procedure: &str, body: &str, extra: &[(&str, &str)]) -> JsonReply {
    let (dispatcher, _lines) = calc();
    post_to(&dispatcher, procedure, body, extra).await
}

async fn post_to(dispatcher: &ServeCalculator<Calc>, procedure: &str, body: &str, extra: &[(&str, &str)]) -> JsonReply {
    let mut headers = json_headers();
    headers.extend(extra.iter().map(|(name, value)| (name.to_string(), value.to_string())));
    let request = JsonRequest { method: "POST", address: "calc", procedure, headers: &headers, body: body.as_bytes() };
    answer(dispatcher, request).await
}

fn body_json(reply: &JsonReply) -> Value {
    serde_json::from_slice(&reply.body).unwrap_or_else(|e| panic!("{e}: {:?}", reply.body))
}

/// Checks an error reply's status, content type and code; gives its message.
fn assert_error(reply: &JsonReply, status: u16, code: &str) -> String {
    assert_eq!(reply.status, status, "{reply:?}");
    assert_eq!(reply.content_type, Some("application/json"));
    let body = body_json(reply);
    assert_eq!(body["code"], code, "{body}");
    body["message"].as_str().expect("a message").to_owned()
}

#[tokio::test]
async fn add_with_named_arguments() {
    let reply = post("example.Calculator/add", r#"{"a":2,"b":3}"#, &[]).await;
    assert_eq!(reply, JsonReply { status: 200, content_type: Some("application/json"), body: "5".into() });
}

#[tokio::test]
async fn short_path_and_extra_fields() {
    let reply = post("add", r#"{"b":3,"a":2,"c":"ignored"}"#, &[]).await;
    assert_eq!((reply.status, &reply.body[..]), (200, &b"5"[..]));
}

#[tokio::test]
async fn optional_arguments_may_be_left_out() {
    let reply = post("greet", r#"{"name":"Ada"}"#, &[]).await;
    assert_eq!(body_json(&reply), json!("Ada"));
    let reply = post("greet", r#"{"name":"Ada","title":"Countess"}"#, &[]).await;
    assert_eq!(body_json(&reply), json!("Countess Ada"));
}

#[tokio::test]
async fn wrong_contract_is_not_found() {
    let reply = post("Calculator/add", r#"{"a":2,"b":3}"#, &[]).await;
    let message = assert_error(&reply, 404, "not_found");
    assert!(message.contains("example.Calculator"), "{message}");
}

#[tokio::test]
async fn unknown_method_is_unimplemented() {
    let message = assert_error(&post("example.Calculator/sub", "{}", &[]).await, 501, "unimplemented");
    assert!(message.contains("`sub`"), "{message}");
    // Method names are case-sensitive.
    assert_error(&post("Add", r#"{"a":2,"b":3}"#, &[]).await, 501, "unimplemented");
}

#[tokio::test]
async fn bad_bodies_are_invalid_arguments() {
    let message = assert_error(&post("add", r#"{"a":2,"b":"#, &[]).await, 400, "invalid_argument");
    assert!(message.contains("EOF"), "{message}");
    let message = assert_error(&post("add", r#"{"a":2}"#, &[]).await, 400, "invalid_argument");
    assert!(message.contains("missing field `b`"), "{message}");
    let message = assert_error(&post("add", r#"{"a":2,"b":"3"}"#, &[]).await, 400, "invalid_argument");
    assert!(message.contains("invalid type"), "{message}");
    // Positional arguments are not named ones.
    assert_error(&post("add", "[2,3]", &[]).await, 400, "invalid_argument");
    assert_error(&post("add", "", &[]).await, 400, "invalid_argument");
}

#[tokio::test]
async fn content_type_must_be_json() {
    let (dispatcher, _lines) = calc();
    let call = |headers: Vec<(String, String)>| {
        let dispatcher = dispatcher.clone();
        async move {
            let request = JsonRequest {
                method: "POST",
                address: "calc",
                procedure: "add",
                headers: &headers,
                body: br#"{"a":2,"b":3}"#,
            };
            answer(&dispatcher, request).await
        }
    };
    let header = |value: &str| vec![("content-type".to_owned(), value.to_owned())];
    assert_error(&call(header("text/plain")).await, 415, "invalid_argument");
    assert_error(&call(Vec::new()).await, 415, "invalid_argument");
    assert_eq!(call(header("application/json; charset=utf-8")).await.status, 200);
    assert_eq!(call(vec![("Content-Type".into(), "Application/JSON".into())]).await.status, 200);
}

#[tokio::test]
async fn calls_are_posts() {
    let (dispatcher, _lines) = calc();
    let headers = json_headers();
    let request = JsonRequest { method: "GET", address: "calc", procedure: "add", headers: &headers, body: b"" };
    assert_error(&answer(&dispatcher, request).await, 405, "unimplemented");
}

#[tokio::test]
async fn the_address_describes_the_contract() {
    let (dispatcher, _lines) = calc();
    let request = JsonRequest { method: "GET", address: "eu/calc", procedure: "", headers: &[], body: b"" };
    let reply = answer(&dispatcher, request).await;
    assert_eq!((reply.status, reply.content_type), (200, Some("application/json")));
    let description = body_json(&reply);
    assert_eq!(description["contract"], "example.Calculator");
    let fingerprint = CalculatorClient::CONTRACT.fingerprint();
    assert_eq!(description["fingerprint"], format!("{fingerprint:016x}"));
    assert_eq!(description["methods"].as_array().unwrap().len(), CalculatorClient::CONTRACT.methods.len());
    assert_eq!(
        description["methods"][1],
        json!({
            "name": "divide",
            "path": "/eu/calc/example.Calculator/divide",
            "signature": "divide(i64,i64)->Result<i64,MathError>",
            "oneway": false,
            "idempotent": true,
        })
    );
    let log = description["methods"].as_array().unwrap().iter().find(|m| m["name"] == "log").unwrap();
    assert_eq!(log["oneway"], true);

    let request = JsonRequest { method: "POST", address: "calc", procedure: "", headers: &[], body: b"" };
    assert_error(&answer(&dispatcher, request).await, 405, "unimplemented");
}

#[tokio::test]
async fn the_service_error_is_a_failed_precondition() {
    let reply = post("divide", r#"{"a":7,"b":0}"#, &[]).await;
    assert_error(&reply, 400, "failed_precondition");
    assert_eq!(
        body_json(&reply),
        json!({"code": "failed_precondition", "message": "MathError", "serviceError": "DivisionByZero"})
    );
    assert_eq!(&post("divide", r#"{"a":7,"b":2}"#, &[]).await.body[..], b"3");
}

#[tokio::test]
async fn unit_results_are_empty_objects() {
    let (dispatcher, _lines) = calc();
    let reply = post_to(&dispatcher, "reset", "", &[]).await;
    assert_eq!((reply.status, &reply.body[..]), (200, &b"{}"[..]));
    let reply = post_to(&dispatcher, "reset", " {} ", &[]).await;
    assert_eq!((reply.status, &reply.body[..]), (200, &b"{}"[..]));
    assert_eq!(*dispatcher.service.resets.lock().unwrap(), 2);
    let reply = post("unit_result", r#"{"fail":false}"#, &[]).await;
    assert_eq!((reply.status, &reply.body[..]), (200, &b"{}"[..]));
    let reply = post("unit_result", r#"{"fail":true}"#, &[]).await;
    assert_eq!(body_json(&reply)["serviceError"], "failed");
}

#[tokio::test]
async fn one_way_calls_are_accepted_and_run() {
    let (dispatcher, mut lines) = calc();
    let reply = post_to(&dispatcher, "example.Calculator/log", r#"{"line":"hello"}"#, &[]).await;
    assert_eq!(reply, JsonReply { status: 202, content_type: None, body: Bytes::new() });
    let line = tokio::time::timeout(Duration::from_secs(5), lines.recv()).await;
    assert_eq!(line.unwrap().as_deref(), Some("hello"));
    // Arguments are still checked before the call is accepted.
    assert_error(&post_to(&dispatcher, "log", "{}", &[]).await, 400, "invalid_argument");
}

#[tokio::test(start_paused = true)]
async fn the_deadline_cancels_the_call() {
    let (dispatcher, _lines) = calc();
    let started = tokio::time::Instant::now();
    let reply = post_to(&dispatcher, "sleep", r#"{"ms":60000}"#, &[("connect-timeout-ms", "50")]).await;
    let message = assert_error(&reply, 504, "deadline_exceeded");
    assert!(message.contains("50 ms"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    let reply = post_to(&dispatcher, "sleep", r#"{"ms":10}"#, &[("connect-timeout-ms", "50")]).await;
    assert_eq!(&reply.body[..], b"10");
    // Without the header the default deadline applies.
    let reply = post_to(&dispatcher, "sleep", r#"{"ms":60000}"#, &[]).await;
    assert_error(&reply, 504, "deadline_exceeded");
    assert!(started.elapsed() >= DEFAULT_CALL_TIMEOUT);
    let reply = post_to(&dispatcher, "sleep", r#"{"ms":1}"#, &[("connect-timeout-ms", "soon")]).await;
    assert_error(&reply, 400, "invalid_argument");
}

#[tokio::test]
async fn a_panicking_method_is_an_internal_error() {
    let (dispatcher, _lines) = calc();
    assert_error(&post_to(&dispatcher, "panic", "{}", &[]).await, 500, "internal");
    assert_eq!(&post_to(&dispatcher, "add", r#"{"a":1,"b":1}"#, &[]).await.body[..], b"2");
}

#[test]
fn connect_codes_have_connect_statuses() {
    let expected = [
        (ConnectCode::InvalidArgument, 400),
        (ConnectCode::FailedPrecondition, 400),
        (ConnectCode::Unauthenticated, 401),
        (ConnectCode::NotFound, 404),
        (ConnectCode::Aborted, 409),
        (ConnectCode::ResourceExhausted, 429),
        (ConnectCode::Unimplemented, 501),
        (ConnectCode::Unavailable, 503),
        (ConnectCode::DeadlineExceeded, 504),
        (ConnectCode::Internal, 500),
    ];
    for (code, status) in expected {
        assert_eq!(code.http_status(), status, "{code}");
    }
    assert_eq!(ConnectCode::ResourceExhausted.to_string(), "resource_exhausted");
}

#[test]
fn unencodable_results_are_internal_errors() {
    let map = std::collections::HashMap::from([((1, 2), 3)]);
    assert_error(&JsonReply::value(&map), 500, "internal");
}

/// The host's serve loop spawns `answer`'s future, so it must be `Send`.
#[test]
fn answering_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let (dispatcher, _lines) = calc();
    let request = JsonRequest { method: "GET", address: "calc", procedure: "", headers: &[], body: b"" };
    assert_send(&answer(&dispatcher, request));
}

/// A service error that picks its own Connect code.
#[derive(Debug, Serialize, Deserialize)]
pub struct NoSuchAccount(u64);

impl HttpErrorCode for NoSuchAccount {
    fn connect_code(&self) -> ConnectCode {
        ConnectCode::NotFound
    }
}

#[crate::relay_service]
pub trait Bank {
    async fn balance(account: u64) -> Result<u64, NoSuchAccount>;
}

struct OneAccount;

impl Bank for OneAccount {
    async fn balance(&self, account: u64) -> Result<u64, NoSuchAccount> {
        if account == 1 { Ok(100) } else { Err(NoSuchAccount(account)) }
    }
}

#[tokio::test]
async fn service_errors_may_pick_their_code() {
    let headers = json_headers();
    let call = |body: &'static str| {
        let headers = headers.clone();
        async move {
            let request = JsonRequest {
                method: "POST",
                address: "bank",
                procedure: "balance",
                headers: &headers,
                body: body.as_bytes(),
            };
            answer(&ServeBank::new(OneAccount), request).await
        }
    };
    assert_eq!(&call(r#"{"account":1}"#).await.body[..], b"100");
    let reply = call(r#"{"account":2}"#).await;
    assert_eq!(body_json(&reply), json!({"code": "not_found", "message": "NoSuchAccount", "serviceError": 2}));
    assert_eq!(reply.status, 404);
}
