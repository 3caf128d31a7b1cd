//! What a host's connection to a relay holds, shared by the [`Host`](super::Host) handles and its
//! listeners, which keep it alive.

use tokio::task::JoinHandle;

use crate::options::ConnectOptions;
use crate::transport::{Link, Routes};
use crate::url::RelayUrl;

/// A host's link to a relay, with the routes of its listeners. Dropping the last handle closes it.
#[derive(Debug)]
pub(crate) struct HostLink {
    pub(crate) url: RelayUrl,
    pub(crate) link: Link,
    pub(crate) options: ConnectOptions,
    pub(crate) routes: Routes,
    /// Routes the channels of a QUIC connection to their listeners.
    pub(crate) router: Option<JoinHandle<()>>,
}

impl Drop for HostLink {
    fn drop(&mut self) {
        if let Some(router) = &self.router {
            router.abort();
        }
        self.link.close();
    }
}
