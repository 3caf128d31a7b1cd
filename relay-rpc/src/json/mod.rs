//! Typed contracts called as JSON over HTTP, the [Connect](https://connectrpc.com/docs/protocol)
//! way.
//!
//! A host that receives an HTTP request for an address it serves hands it to [`answer`], with the
//! same dispatcher (a generated `ServeFoo`) that answers bincode calls; [`answer`] decodes the
//! arguments, runs the method through [`Dispatch::dispatch`] and encodes the result. No schema
//! lives in the relay: it forwards HTTP unchanged.
//!
//! # Requests
//! - `POST /{address}/{Contract}/{method}` (the contract's name exactly as
//!   [`ContractDescriptor::name`] gives it, case-sensitive), or `POST /{address}/{method}`.
//! - `Content-Type: application/json` (parameters such as `; charset=utf-8` are allowed).
//! - The body is a JSON object of the method's *named* arguments, `{"a":2,"b":3}`, even for one
//!   argument; an empty body is `{}`. Unknown fields are ignored, so callers may send arguments
//!   a newer version of the contract has.
//! - `Connect-Timeout-Ms: 500` sets the call's deadline; without it the deadline is
//!   [`DEFAULT_CALL_TIMEOUT`].
//! - `GET /{address}/` describes the contract: its name, fingerprint and methods, with their
//!   paths.
//!
//! # Responses
//! - `200`, `application/json`: the bare result, `5` or `{"x":1}`; a method returning `()`
//!   gives `{}`.
//! - `202`, empty, for a `#[oneway]` method, as soon as its arguments decode; the method then runs
//!   in the background, without a deadline.
//! - Otherwise an error, `{"code":"<connect code>","message":"…"}`, with the status Connect gives
//!   its [`ConnectCode`]. A method returning `Result<T, E>` that returns `Err(e)` gives `400
//!   failed_precondition`, with `E`'s name as the message and `e` itself under `serviceError`:
//!   `{"code":"failed_precondition","message":"MathError","serviceError":"DivisionByZero"}`.
//!   Implement [`HttpErrorCode`] for `E` to answer with another code.
//!
//! | what went wrong | status | code |
//! |---|---|---|
//! | another contract's name in the path | 404 | `not_found` |
//! | a method the contract lacks | 501 | `unimplemented` |
//! | a call that is not a `POST` (or a description that is not a `GET`) | 405 | `unimplemented` |
//! | a content type other than JSON | 415 | `invalid_argument` |
//! | bad JSON, a missing argument, a wrong type, a bad `Connect-Timeout-Ms` | 400 | `invalid_argument` |
//! | the method's own `Err(e)` | 400 (or per [`HttpErrorCode`]) | `failed_precondition` |
//! | the deadline passed (the method is cancelled) | 504 | `deadline_exceeded` |
//! | the method panicked, or its result cannot be written as JSON | 500 | `internal` |
//!
//! # Known limits
//! - Arguments and results use their plain serde JSON form: a `Vec<u8>` is an array of numbers,
//!   not a base64 string as in proto3's JSON; `i64`/`u64` beyond 2^53 lose precision in
//!   JavaScript; map keys must be strings.
//!
//! ```
//! use relay_rpc::json::{JsonRequest, answer};
//!
//! #[relay_rpc::relay_service(name = "example.Calculator")]
//! pub trait Calculator {
//!     async fn add(a: i64, b: i64) -> i64;
//! }
//!
//! struct Calc;
//!
//! impl Calculator for Calc {
//!     async fn add(&self, a: i64, b: i64) -> i64 {
//!         a + b
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let headers = [("content-type".to_owned(), "application/json".to_owned())];
//! let request = JsonRequest {
//!     method: "POST",
//!     address: "calc",
//!     procedure: "example.Calculator/add",
//!     headers: &headers,
//!     body: br#"{"a":2,"b":3}"#,
//! };
//! let reply = answer(&ServeCalculator::new(Calc), request).await;
//! assert_eq!((reply.status, reply.content_type), (200, Some("application/json")));
//! assert_eq!(&reply.body[..], b"5");
//! # }
//! ```

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;

use crate::DEFAULT_CALL_TIMEOUT;
use crate::contract::{ContractDescriptor, Dispatch, DispatchError, MAX_DEADLINE, MethodDescriptor};

mod reply;
#[cfg(test)]
mod tests;

pub use reply::{ConnectCode, DefaultErrorCode, HttpErrorCode, ImplementedErrorCode, JsonReply};

/// The content type of every JSON request and of every reply with a body.
pub const JSON_CONTENT_TYPE: &str = "application/json";

/// The header that carries a call's timeout, in milliseconds.
pub const TIMEOUT_HEADER: &str = "connect-timeout-ms";

/// One HTTP request for a contract served as JSON, as the host received it.
///
/// ```
/// use relay_rpc::json::JsonRequest;
///
/// let headers = [("content-type".to_owned(), "application/json".to_owned())];
/// let request = JsonRequest { method: "POST", address: "calc", procedure: "add", headers: &headers, body: b"{}" };
/// assert_eq!(request.header("Content-Type"), Some("application/json"));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct JsonRequest<'a> {
    /// The HTTP method, e.g. "POST".
    pub method: &'a str,
    /// The address the host listens on, e.g. "calc" or "eu/calc".
    pub address: &'a str,
    /// The request path after the address, without leading '/' and without the query:
    /// "Calculator/add", "add", or "" (the address itself: describe the contract).
    pub procedure: &'a str,
    /// The request's headers (names lower-case).
    pub headers: &'a [(String, String)],
    /// The whole request body.
    pub body: &'a [u8],
}

impl<'a> JsonRequest<'a> {
    /// The value of the first header called `name` (compared without regard to case).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }
}

/// Why a JSON call could not be turned into a request; what
/// [`Dispatch::json_request`] returns.
///
/// ```
/// use relay_rpc::json::JsonCallError;
///
/// let error = JsonCallError::unknown_method("sub");
/// assert_eq!(error.to_string(), "the contract has no method `sub`");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JsonCallError {
    /// The contract has no method of that name.
    #[error("the contract has no method `{method}`")]
    UnknownMethod {
        /// The name the call gave.
        method: String,
    },
    /// The body is not a JSON object of the method's arguments.
    #[error("invalid arguments: {detail}")]
    InvalidArguments {
        /// What the JSON decoder said.
        detail: String,
    },
}

impl JsonCallError {
    /// The contract has no method called `method`.
    pub fn unknown_method(method: &str) -> Self {
        Self::UnknownMethod { method: method.to_owned() }
    }

    /// The reply that tells the caller: `501 unimplemented` or `400 invalid_argument`.
    pub fn reply(&self) -> JsonReply {
        let code = match self {
            Self::UnknownMethod { .. } => ConnectCode::Unimplemented,
            Self::InvalidArguments { .. } => ConnectCode::InvalidArgument,
        };
        JsonReply::error(code, self.to_string())
    }
}

/// Decodes a body of named arguments into `T` (the generated per-method arguments struct). The
/// body must be a JSON object; an empty body is `{}`.
///
/// ```
/// #[derive(serde::Deserialize)]
/// struct Add { a: i64, b: i64 }
///
/// let add: Add = relay_rpc::json::decode_arguments(br#"{"a":2,"b":3,"c":4}"#).unwrap();
/// assert_eq!((add.a, add.b), (2, 3));
/// assert!(relay_rpc::json::decode_arguments::<Add>(b"[2,3]").is_err());
/// assert!(relay_rpc::json::decode_arguments::<Add>(br#"{"a":2}"#).is_err());
/// ```
pub fn decode_arguments<T: DeserializeOwned>(body: &[u8]) -> Result<T, JsonCallError> {
    let body = match body.trim_ascii() {
        b"" => &b"{}"[..],
        object @ [b'{', ..] => object,
        _ => {
            return Err(JsonCallError::InvalidArguments {
                detail: "the body must be a JSON object of named arguments".into(),
            });
        }
    };
    serde_json::from_slice(body).map_err(|error| JsonCallError::InvalidArguments { detail: error.to_string() })
}

/// Answers one request by running it through `dispatcher` (the same `Dispatch::dispatch` that
/// bincode calls use). Never fails: every problem is an error reply (see the
/// [module documentation](self) for which). Runs the method in a task of its own, so it must be
/// called within a Tokio runtime; dropping the returned future cancels a two-way call. A one-way
/// call is answered `202` at once and runs on in a task nothing waits for: a host that keeps
/// track of its tasks (to drain them) uses [`answer_deferring`].
///
/// ```
/// # async fn run<D: relay_rpc::contract::Dispatch>(dispatcher: D) {
/// use relay_rpc::json::{JsonRequest, answer};
///
/// let request = JsonRequest { method: "GET", address: "calc", procedure: "", headers: &[], body: b"" };
/// let description = answer(&dispatcher, request).await;
/// assert_eq!(description.status, 200);
/// # }
/// ```
pub async fn answer<D: Dispatch>(dispatcher: &D, request: JsonRequest<'_>) -> JsonReply {
    let (reply, one_way) = answer_deferring(dispatcher, request).await;
    if let Some(call) = one_way {
        tokio::spawn(call);
    }
    reply
}

/// A one-way call answered `202`, to be run by whoever sent the answer.
pub type OneWayCall = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// As [`answer`], but a one-way call is given back, to run once its `202` is sent, instead of
/// being spawned: the Rust host runs it in the request's own task, which it waits for when it
/// drains.
///
/// ```
/// # async fn run<D: relay_rpc::contract::Dispatch>(dispatcher: D) {
/// use relay_rpc::json::{JsonRequest, answer_deferring};
///
/// let request = JsonRequest { method: "GET", address: "calc", procedure: "", headers: &[], body: b"" };
/// let (description, one_way) = answer_deferring(&dispatcher, request).await;
/// assert!(one_way.is_none(), "a description runs nothing after it");
/// assert_eq!(description.status, 200);
/// # }
/// ```
pub async fn answer_deferring<D: Dispatch>(
    dispatcher: &D,
    request: JsonRequest<'_>,
) -> (JsonReply, Option<OneWayCall>) {
    if request.procedure.is_empty() {
        return (describe(D::CONTRACT, &request), None);
    }
    match prepare::<D>(&request) {
        Ok(Call { request, oneway: true, .. }) => {
            let call = dispatcher.dispatch(request);
            (
                JsonReply::accepted(),
                Some(Box::pin(async move {
                    let _ = call.await;
                })),
            )
        }
        Ok(Call { request, timeout, .. }) => (run(dispatcher, request, timeout).await, None),
        Err(reply) => (reply, None),
    }
}

/// A decoded two-way or one-way call.
struct Call<R> {
    request: R,
    oneway: bool,
    timeout: Duration,
}

/// Checks the request and decodes its arguments, or gives the error reply.
fn prepare<D: Dispatch>(request: &JsonRequest<'_>) -> Result<Call<D::Request>, JsonReply> {
    let method = route(D::CONTRACT, request.procedure)?;
    if request.method != "POST" {
        return Err(JsonReply::error(
            ConnectCode::Unimplemented,
            format!("call `{}` with POST, not {}", method.name, request.method),
        )
        .with_status(405));
    }
    if !is_json(request.header("content-type")) {
        return Err(JsonReply::error(
            ConnectCode::InvalidArgument,
            format!("the content type must be {JSON_CONTENT_TYPE}"),
        )
        .with_status(415));
    }
    let timeout = timeout(request.header(TIMEOUT_HEADER))?;
    let arguments = D::json_request(method.name, request.body).map_err(|error| error.reply())?;
    Ok(Call { request: arguments, oneway: method.oneway, timeout })
}

impl JsonReply {
    /// The same reply with another status.
    fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }
}

/// The method `procedure` names, `{Contract}/{method}` or `{method}`: `404` for another
/// contract, `501` for a method this one lacks.
fn route<'c>(contract: &'c ContractDescriptor, procedure: &str) -> Result<&'c MethodDescriptor, JsonReply> {
    let method = match procedure.rsplit_once('/') {
        None => procedure,
        Some((name, method)) if name == contract.name => method,
        Some((name, _)) => {
            return Err(JsonReply::error(
                ConnectCode::NotFound,
                format!("this address serves the contract `{}`, not `{name}`", contract.name),
            ));
        }
    };
    contract.method(method).ok_or_else(|| JsonCallError::unknown_method(method).reply())
}

/// Whether a `content-type` header says JSON, with or without parameters.
fn is_json(content_type: Option<&str>) -> bool {
    content_type
        .is_some_and(|value| value.split(';').next().unwrap_or_default().trim().eq_ignore_ascii_case(JSON_CONTENT_TYPE))
}

/// The call's timeout from its `connect-timeout-ms` header, or [`DEFAULT_CALL_TIMEOUT`].
fn timeout(header: Option<&str>) -> Result<Duration, JsonReply> {
    let Some(value) = header else { return Ok(DEFAULT_CALL_TIMEOUT) };
    match value.trim().parse::<u64>() {
        Ok(millis) => Ok(Duration::from_millis(millis).min(MAX_DEADLINE)),
        Err(_) => Err(JsonReply::error(
            ConnectCode::InvalidArgument,
            format!("{TIMEOUT_HEADER} must be a whole number of milliseconds, not `{value}`"),
        )),
    }
}

/// Runs a two-way call in a task of its own, cancelled when `timeout` passes or when this future
/// is dropped.
async fn run<D: Dispatch>(dispatcher: &D, request: D::Request, timeout: Duration) -> JsonReply {
    let mut task = AbortOnDrop(tokio::spawn(dispatcher.dispatch(request)));
    match tokio::time::timeout(timeout, &mut task.0).await {
        Ok(Ok(Ok(response))) => D::json_response(response),
        Ok(Ok(Err(error))) => dispatch_error(error),
        Ok(Err(error)) if error.is_panic() => {
            tracing::warn!(contract = D::CONTRACT.name, "a JSON call's method panicked");
            JsonReply::error(ConnectCode::Internal, "the method panicked")
        }
        Ok(Err(_)) => JsonReply::error(ConnectCode::Unavailable, "the host is shutting down"),
        Err(_) => JsonReply::error(
            ConnectCode::DeadlineExceeded,
            format!("the call did not finish within {} ms", timeout.as_millis()),
        ),
    }
}

/// A task that is aborted when this is dropped, whether it finished or not.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The reply to a request the dispatcher refused.
fn dispatch_error(error: DispatchError) -> JsonReply {
    match error {
        DispatchError::UnknownMethod { .. } => JsonReply::error(ConnectCode::Unimplemented, error.to_string()),
        DispatchError::Undecodable { .. } => JsonReply::error(ConnectCode::InvalidArgument, error.to_string()),
    }
}

/// `GET /{address}/`: the contract's name, fingerprint and methods; `405` for other methods.
fn describe(contract: &ContractDescriptor, request: &JsonRequest<'_>) -> JsonReply {
    match request.method {
        "GET" => {
            let description = Description::of(contract, request.address);
            let body = serde_json::to_vec(&description).expect("a description is always valid JSON");
            JsonReply::json(200, body)
        }
        "HEAD" => JsonReply::json(200, Bytes::new()),
        other => JsonReply::error(
            ConnectCode::Unimplemented,
            format!("GET the address to describe its contract, not {other}"),
        )
        .with_status(405),
    }
}

/// What `GET /{address}/` answers.
#[derive(Serialize)]
struct Description<'a> {
    contract: &'a str,
    /// The contract's fingerprint, in hex: JavaScript cannot hold a `u64` as a number.
    fingerprint: String,
    methods: Vec<MethodDescription<'a>>,
}

/// One method of a [`Description`].
#[derive(Serialize)]
struct MethodDescription<'a> {
    name: &'a str,
    /// Where to `POST` a call: `/{address}/{Contract}/{method}`.
    path: String,
    signature: &'a str,
    oneway: bool,
    idempotent: bool,
}

impl<'a> Description<'a> {
    fn of(contract: &'a ContractDescriptor, address: &str) -> Self {
        let address = address.trim_matches('/');
        let methods = contract
            .methods
            .iter()
            .map(|m| MethodDescription {
                name: m.name,
                path: format!("/{address}/{}/{}", contract.name, m.name),
                signature: m.signature,
                oneway: m.oneway,
                idempotent: m.idempotent,
            })
            .collect();
        Description { contract: contract.name, fingerprint: format!("{:016x}", contract.fingerprint()), methods }
    }
}

/// The reply to a response variant a host never produces (an unknown or undecodable one).
#[doc(hidden)]
pub fn unexpected_response(what: &str) -> JsonReply {
    JsonReply::error(ConnectCode::Internal, format!("the dispatcher produced {what}"))
}
