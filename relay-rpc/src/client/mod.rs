//! The caller side: connect to a relay, open channels, call typed stubs.

mod connection;
mod stub;

pub use connection::Connection;
#[doc(hidden)]
pub use stub::{ClientStub, unexpected_response};
