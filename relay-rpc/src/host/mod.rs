//! The host side: connect outbound to a relay, listen on addresses, serve channels.

mod connection;
mod json_calls;
mod link;
mod listener;
mod online;
mod serve;

pub use crate::transport::IncomingChannel;
pub use connection::Host;
pub use listener::Listener;
pub use online::{HostStatus, OnlineError, Services};
#[cfg(test)]
#[cfg(test)]
pub(crate) use serve::serve_channel;
