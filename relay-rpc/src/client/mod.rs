//! The caller side: connect to a relay, open channels, call typed stubs.

mod connection;
mod failover;
mod stub;

pub use connection::Connection;
#[doc(hidden)]
pub use failover::ClientStub;
#[doc(hidden)]
pub use stub::unexpected_response;
