//! The host side: connect outbound to a relay, listen on addresses, serve channels.

mod connection;
mod incoming;
mod listener;
mod online;
mod serve;

pub use connection::Host;
pub(crate) use connection::Routes;
pub use incoming::IncomingChannel;
pub use listener::Listener;
pub use online::{Backoff, HostStatus, OnlineError, Services};
pub use serve::TarpcServe;
