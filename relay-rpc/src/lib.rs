//! Host and call typed RPC services through a relay.
//!
//! A service behind a firewall connects **outbound** to a relay and registers an address;
//! callers connect to the relay, name the address, and call the service through a typed client
//! stub generated from a trait. Nobody opens an inbound port, and the caller never learns where
//! the service runs.
//!
//! ```no_run
//! use relay_rpc::auth::SharedAccessKey;
//! use relay_rpc::{CallContext, ConnectOptions, Connection, Host};
//!
//! #[relay_rpc::relay_service]
//! pub trait Calculator {
//!     /// Adds two numbers.
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
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // Trust the relay's certificate; sign tokens with a key that grants listen and send.
//! let key = SharedAccessKey::from_file("relay-data/root.key")?;
//! let options = ConnectOptions::new().trust_pem_file("relay-data/cert.pem")?.with_shared_access_key(key);
//!
//! // The host, behind the firewall:
//! let host = Host::connect("quic://127.0.0.1:7443", options.clone()).await?;
//! let listener = host.listen("calc").await?;
//! tokio::spawn(listener.serve(ServeCalculator::new(Calc)));
//!
//! // The caller, anywhere:
//! let relay = Connection::connect("quic://127.0.0.1:7443", options).await?;
//! let calc = CalculatorClient::connect(&relay, "calc").await?;
//! assert_eq!(calc.add(CallContext::default(), 2, 3).await?, 5);
//! # Ok(()) }
//! ```
//!
//! # Transports
//! The relay URL picks the transport; nothing else changes:
//!
//! | URL | transport |
//! |---|---|
//! | `quic://host:port` | QUIC with TLS 1.3: one connection, one stream per channel (default port 7443) |
//! | `wss://host:port` | WebSocket over TLS speaking Azure Relay's Hybrid Connections protocol: one WebSocket per channel, one message per frame (default port 443) |
//! | `ws://host:port` | the same without TLS, only where the relay explicitly serves it (default port 80) |
//!
//! Over `wss://` hosts and callers work with Azure's own relay service too, and with Azure's
//! official clients (such as the Node `hyco-ws` package) on the other end.
//!
//! # What `#[relay_service]` generates for `trait Foo`
//! - `trait Foo` itself, with a `&self` receiver added to each method and `Send` futures;
//! - `FooClient`: the typed stub; each method takes a [`CallContext`] first and returns
//!   `Result<T, CallError>`. A method returning `Result<T, E>` gives `Result<Result<T, E>, CallError>`:
//!   the service's own error stays distinct from relay and transport errors.
//! - `ServeFoo<S>`: the host-side dispatcher for any `S: Foo`, for [`Listener::serve`].
//! - `FooClient::CONTRACT`: the [`ContractDescriptor`](contract::ContractDescriptor) (name,
//!   fingerprint, methods), checked by the host when a channel opens.
//! - `FooRequest` / `FooResponse`: the messages.
//!
//! `ServeFoo` answers JSON too: on a listener from [`Host::listen_http`] (and in
//! [`Host::serve_online`] and [`Host::serve_all_online`], which register that way), a
//! `POST https://{relay}/{address}/Foo/{method}` with a JSON object of named arguments is
//! answered with the result as JSON, through the same dispatch as calls from a `FooClient`; see
//! [`json`].
//!
//! Methods may be marked `#[oneway]` (the client returns once the request is queued) or
//! `#[idempotent]`; see [`contract`] for one-way semantics and how contracts evolve.
//!
//! # Raw streams, HTTP requests and the `relay` tool
//! [`stream`] carries protocols that are not ours as byte streams; the `relay` binary (crate
//! `relay-forward`) forwards TCP ports through a relay with them. [`http`] gives a host the HTTP
//! requests senders make to its address (`relay http` sends them on to a local web server).
#![deny(missing_docs)]

// The code `#[relay_service]` generates names `::relay_rpc`; this crate's own tests use it too.
#[cfg(test)]
extern crate self as relay_rpc;

pub mod auth;
mod backoff;
mod byte_payload;
mod call;
mod channel;
pub mod client;
pub mod contract;
mod error;
mod host;
pub mod http;
pub mod json;
mod options;
mod replaceable;
pub mod stream;
mod tls;
mod transport;
mod url;

pub use backoff::Backoff;
pub use call::{CallContext, DEFAULT_CALL_TIMEOUT};
pub use channel::{Channel, ChannelError};
pub use client::Connection;
pub use error::{CallError, ConnectError, ListenError, MessagePart, OpenError};
pub use host::{Host, HostStatus, IncomingChannel, Listener, OnlineError, Services};
pub use options::{ConnectOptions, DEFAULT_IDLE_TIMEOUT, DEFAULT_KEEP_ALIVE};
/// Why a relay or a listener refused a channel, and why a channel was cut: the protocol's codes,
/// as [`OpenError::Refused`] and [`ChannelError`] carry them.
pub use relay_proto::{ErrorCode, StreamCode};
/// Turns a trait of `async fn`s into a relayed service contract.
///
/// ```
/// use relay_rpc::{CallContext, CallError};
///
/// #[derive(Debug, serde::Serialize, serde::Deserialize)]
/// pub enum MathError { DivisionByZero }
///
/// #[relay_rpc::relay_service]
/// pub trait Calculator {
///     /// Adds two numbers.
///     async fn add(a: i64, b: i64) -> i64;
///     /// Divides, or fails with the service's own error.
///     async fn divide(a: i64, b: i64) -> Result<i64, MathError>;
/// }
///
/// struct Calc;
///
/// impl Calculator for Calc {
///     async fn add(&self, a: i64, b: i64) -> i64 { a + b }
///     async fn divide(&self, a: i64, b: i64) -> Result<i64, MathError> {
///         a.checked_div(b).ok_or(MathError::DivisionByZero)
///     }
/// }
///
/// // The host side serves `ServeCalculator::new(Calc)`; callers use `CalculatorClient`:
/// async fn call(calc: &CalculatorClient) -> Result<i64, CallError> {
///     calc.add(CallContext::default(), 2, 3).await
/// }
/// assert_eq!(CalculatorClient::CONTRACT.name, "Calculator");
/// assert_eq!(CalculatorClient::CONTRACT.methods[1].signature, "divide(i64,i64)->Result<i64,MathError>");
/// # let _ = ServeCalculator::new(Calc);
/// ```
///
/// Mistakes give one spanned compile error each: a method that is not `async`, a `self`
/// receiver (the macro adds `&self`), generic methods, borrowed argument types, default bodies,
/// a `#[oneway]` method with a return value, and method names that clash with the client's own
/// (`new`, `connect`, `clone`, `CONTRACT`).
///
/// Method attributes: `#[oneway]` (the client method returns `Ok(())` once the request is queued;
/// the host runs one-way requests in order) and `#[idempotent]` (safe to retry); see
/// [`contract`] for the rules by which contracts may evolve.
pub use service_macros::relay_service;
pub use tls::TlsError;
pub use url::{RelayUrl, RelayUrls, Scheme, UrlError};

/// Support for code generated by `#[relay_service]`; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::byte_payload::{AsBytes, ByteBuf};
    pub use crate::client::{ClientStub, undecodable_response, unexpected_response};
    pub use crate::contract::{
        ContractDescriptor, Dispatch, DispatchError, MethodDescriptor, MethodShapes, Undecodable, method_id,
        undecodable,
    };
    pub use crate::json::{
        DefaultErrorCode, ImplementedErrorCode, JsonCallError, JsonReply, decode_arguments as json_arguments,
        unexpected_response as json_unexpected,
    };
    pub use serde;
    pub use serde_json;
    pub use std::string::String;
    pub use std::sync::Arc;
    pub use tarpc::RequestName;
}
