//! The caller side: connect to a relay ([`Connection`]), open channels, call typed stubs.
//!
//! # When a channel breaks
//!
//! (The one description of it: the docs of every generated `FooClient` point here.)
//!
//! A stub made by `FooClient::connect` knows its connection, address and contract. When its
//! channel breaks because the listener went away, the calls in flight on it fail with
//! [`CallError::Disconnected`], and the next call opens a new channel to the address (the relay
//! picks the listener) before it is sent: up to [`REOPEN_ATTEMPTS`] tries, with exponential
//! backoff and full jitter between them ([`REOPEN_BACKOFF`]), all within the call's deadline. If
//! no listener is there the call fails with [`CallError::Open`] ([`OpenError::NoListener`]).
//!
//! A channel that broke because the relay shut down or the connection was lost is reopened too,
//! but only after a call has failed with that reason ([`ChannelError::RelayShutdown`],
//! [`ChannelError::ConnectionLost`]), so that the caller learns the relay went away. The next
//! call opens a new channel the same way, on a [`Connection`] that connects to the relay again
//! if it has to; while the relay is still down, that call fails with the typed error of its last
//! try.
//!
//! No call runs twice unless its method says it may: a call in flight when the channel breaks is
//! retried on a new channel (up to [`IDEMPOTENT_ATTEMPTS`] sends in all) only if its method is
//! `#[idempotent]`. One-way calls are never retried.
//!
//! Clones of a stub share one state: one current channel, and one reopen at a time: the first
//! call that finds the channel broken reopens it, the rest use the channel it opened, or fail
//! with the error it failed with.
//!
//! A stub made by `FooClient::new(channel)` knows no address: it never reopens, and once its
//! channel has broken every call fails with [`CallError::Disconnected`].
//!
//! [`CallError::Disconnected`]: crate::CallError::Disconnected
//! [`CallError::Open`]: crate::CallError::Open
//! [`OpenError::NoListener`]: crate::OpenError::NoListener
//! [`ChannelError::RelayShutdown`]: crate::ChannelError::RelayShutdown
//! [`ChannelError::ConnectionLost`]: crate::ChannelError::ConnectionLost

mod connection;
mod failover;
mod stub;

pub use connection::Connection;
#[doc(hidden)]
pub use failover::ClientStub;
pub use failover::{IDEMPOTENT_ATTEMPTS, REOPEN_ATTEMPTS, REOPEN_BACKOFF};
#[doc(hidden)]
pub use stub::{undecodable_response, unexpected_response};
