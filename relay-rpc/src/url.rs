//! Relay URLs: `quic://host:port`, `wss://host:port` or, explicitly unencrypted, `ws://host:port`.

use std::fmt;
use std::str::FromStr;

/// The port a relay listens on when a `quic://` URL names none.
pub const DEFAULT_PORT: u16 = 7443;

/// The transport a relay URL selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scheme {
    /// `quic://`: QUIC with TLS 1.3 (default port 7443).
    Quic,
    /// `wss://`: WebSocket over TLS, speaking Azure Relay's Hybrid Connections protocol
    /// (default port 443).
    Wss,
    /// `ws://`: WebSocket over plain TCP, unencrypted; only when a URL asks for it (default port 80).
    Ws,
}

impl Scheme {
    /// The scheme as written in URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Quic => "quic",
            Self::Wss => "wss",
            Self::Ws => "ws",
        }
    }

    /// The port a URL of this scheme means when it names none.
    pub fn default_port(self) -> u16 {
        match self {
            Self::Quic => DEFAULT_PORT,
            Self::Wss => 443,
            Self::Ws => 80,
        }
    }
}

/// Why a string is not a relay URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// The URL has no `scheme://`.
    #[error("relay url {0:?} has no scheme; expected quic://host:port or wss://host:port")]
    MissingScheme(String),
    /// The scheme is not one this build supports.
    #[error("unsupported relay url scheme {0:?}; expected quic, wss or ws")]
    UnsupportedScheme(String),
    /// The host is empty or malformed.
    #[error("relay url {0:?} has no valid host")]
    InvalidHost(String),
    /// The port is not a number from 1 to 65535.
    #[error("relay url {0:?} has an invalid port")]
    InvalidPort(String),
    /// The URL has a path, query or credentials, which relay URLs do not take.
    #[error("relay url {0:?} may hold only scheme, host and port")]
    Unexpected(String),
    /// A list of relay URLs ([`RelayUrls`]) is empty.
    #[error("no relay url given")]
    Empty,
}

/// One relay URL or several: the nodes of a cluster a host that keeps itself online
/// ([`Host::serve_all_online`](crate::Host::serve_all_online)) may register on. Each time it
/// connects, it tries them in a random order and stays with the first that takes it, so hosts
/// spread over the nodes, and re-home to another node when theirs dies.
///
/// ```
/// use relay_rpc::RelayUrls;
///
/// let one = RelayUrls::from("quic://relay.example:7443");
/// let two = RelayUrls::from("quic://a.example:7443, quic://b.example:7443");
/// assert_eq!((one.len(), two.len()), (1, 2));
/// assert_eq!(two, RelayUrls::new(["quic://a.example:7443", "quic://b.example:7443"]));
/// two.check()?;
/// assert!(RelayUrls::from("").check().is_err());
/// # Ok::<(), relay_rpc::UrlError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayUrls(Vec<String>);

impl RelayUrls {
    /// These URLs, in this order.
    pub fn new(urls: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self(urls.into_iter().map(Into::into).collect())
    }

    /// How many URLs there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The URLs, in the order given.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// Checks that there is at least one URL and that every one is a relay URL.
    pub fn check(&self) -> Result<(), UrlError> {
        if self.0.is_empty() {
            return Err(UrlError::Empty);
        }
        self.0.iter().try_for_each(|url| url.parse::<RelayUrl>().map(drop))
    }

    /// The order to try the URLs in when connecting: a random one (each order as likely as any
    /// other, so that clients spread over a cluster's nodes), but with `lost` (the relay just
    /// lost, dead or draining, if any and if listed) last. Hosts that keep themselves online
    /// ([`Host::serve_all_online`](crate::Host::serve_all_online)) connect in this order, and so
    /// should any client that moves to another relay when its own is gone.
    ///
    /// ```
    /// use relay_rpc::RelayUrls;
    ///
    /// let urls = RelayUrls::from("quic://a.example:7443,quic://b.example:7443,quic://c.example:7443");
    /// let order = urls.try_order(Some("quic://b.example:7443"));
    /// assert_eq!(order.len(), 3);
    /// assert_eq!(order[2], "quic://b.example:7443", "the relay just lost comes last");
    /// assert_eq!(RelayUrls::from("quic://a.example:7443").try_order(None), ["quic://a.example:7443"]);
    /// ```
    pub fn try_order(&self, lost: Option<&str>) -> Vec<&str> {
        self.try_order_with(lost, crate::backoff::random)
    }

    /// [`try_order`](Self::try_order), shuffled with `random` (a source of random numbers).
    fn try_order_with(&self, lost: Option<&str>, random: impl FnMut() -> u64) -> Vec<&str> {
        let mut order = self.shuffled(random);
        if let Some(lost) = lost
            && let Some(i) = order.iter().position(|url| *url == lost)
        {
            let url = order.remove(i);
            order.push(url);
        }
        order
    }

    /// The URLs in an order drawn with `random` (a source of random numbers): each order is as
    /// likely as any other.
    fn shuffled(&self, mut random: impl FnMut() -> u64) -> Vec<&str> {
        let mut urls: Vec<&str> = self.iter().collect();
        // Fisher-Yates; the modulo's bias is nil for lists this short.
        for i in (1..urls.len()).rev() {
            let j = (random() % (i as u64 + 1)) as usize;
            urls.swap(i, j);
        }
        urls
    }
}

/// A comma-separated list, checked ([`check`](RelayUrls::check)): what a command line's
/// `--relay URL1,URL2` should be parsed with, so that a bad list is refused at once.
///
/// ```
/// use relay_rpc::{RelayUrls, UrlError};
///
/// let urls: RelayUrls = "quic://a.example:7443,wss://b.example".parse()?;
/// assert_eq!(urls.len(), 2);
/// assert_eq!("".parse::<RelayUrls>(), Err(UrlError::Empty));
/// assert!("quic://a.example:7443,b.example".parse::<RelayUrls>().is_err());
/// # Ok::<(), UrlError>(())
/// ```
impl FromStr for RelayUrls {
    type Err = UrlError;

    fn from_str(list: &str) -> Result<Self, UrlError> {
        let urls = Self::from(list);
        urls.check()?;
        Ok(urls)
    }
}

/// The URLs as a comma-separated list; one URL as itself.
impl fmt::Display for RelayUrls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(","))
    }
}

/// A comma-separated list (as `--relay URL1,URL2` gives it); one URL is a list of one.
impl From<&str> for RelayUrls {
    fn from(list: &str) -> Self {
        Self::new(list.split(',').map(str::trim).filter(|url| !url.is_empty()))
    }
}

impl From<&String> for RelayUrls {
    fn from(list: &String) -> Self {
        Self::from(list.as_str())
    }
}

impl From<String> for RelayUrls {
    fn from(list: String) -> Self {
        Self::from(list.as_str())
    }
}

impl From<Vec<String>> for RelayUrls {
    fn from(urls: Vec<String>) -> Self {
        Self(urls)
    }
}

impl From<&[&str]> for RelayUrls {
    fn from(urls: &[&str]) -> Self {
        Self::new(urls.iter().copied())
    }
}

impl<const N: usize> From<[&str; N]> for RelayUrls {
    fn from(urls: [&str; N]) -> Self {
        Self::new(urls)
    }
}

/// A parsed relay URL.
///
/// ```
/// use relay_rpc::RelayUrl;
/// let url: RelayUrl = "quic://127.0.0.1:7443".parse()?;
/// assert_eq!(url.host(), "127.0.0.1");
/// assert_eq!(url.port(), 7443);
/// # Ok::<(), relay_rpc::UrlError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayUrl {
    scheme: Scheme,
    host: String,
    port: u16,
}

impl RelayUrl {
    /// The transport.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// Whether the transport is a WebSocket (`wss://` or `ws://`).
    pub(crate) fn is_websocket(&self) -> bool {
        matches!(self.scheme, Scheme::Wss | Scheme::Ws)
    }

    /// `host:port` as an HTTP `Host` header writes it, with brackets around an IPv6 address.
    pub(crate) fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The host name or IP address, without brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl FromStr for RelayUrl {
    type Err = UrlError;

    /// Parsed by the `url` crate (WHATWG URL rules), then held to what a relay URL may be.
    fn from_str(s: &str) -> Result<Self, UrlError> {
        // Without `://`, `relay:1` would be a URL of scheme `relay`: say what is missing instead.
        if !s.contains("://") {
            return Err(UrlError::MissingScheme(s.to_owned()));
        }
        let url = url::Url::parse(s).map_err(|e| match e {
            url::ParseError::InvalidPort => UrlError::InvalidPort(s.to_owned()),
            url::ParseError::RelativeUrlWithoutBase => UrlError::MissingScheme(s.to_owned()),
            _ => UrlError::InvalidHost(s.to_owned()),
        })?;
        let scheme = match url.scheme() {
            "quic" => Scheme::Quic,
            "wss" => Scheme::Wss,
            "ws" => Scheme::Ws,
            other => return Err(UrlError::UnsupportedScheme(other.to_owned())),
        };
        let bare = matches!(url.path(), "" | "/") && url.query().is_none() && url.fragment().is_none();
        if !bare || !url.username().is_empty() || url.password().is_some() {
            return Err(UrlError::Unexpected(s.to_owned()));
        }
        let host = url.host_str().map(|h| h.trim_start_matches('[').trim_end_matches(']'));
        let host = host.filter(|h| !h.is_empty()).ok_or_else(|| UrlError::InvalidHost(s.to_owned()))?;
        let port = match url.port() {
            None => scheme.default_port(),
            Some(0) => return Err(UrlError::InvalidPort(s.to_owned())),
            Some(port) => port,
        };
        Ok(Self { scheme, host: host.to_owned(), port })
    }
}

impl fmt::Display for RelayUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = self.scheme.as_str();
        write!(f, "{scheme}://{}", self.authority())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        let url: RelayUrl = "quic://[::1]:9000/".parse().unwrap();
        assert_eq!((url.host(), url.port()), ("::1", 9000));
        assert_eq!(url.to_string(), "quic://[::1]:9000");
        assert_eq!("QUIC://relay.example".parse::<RelayUrl>().unwrap().port(), DEFAULT_PORT);
        assert!(matches!("relay:1".parse::<RelayUrl>(), Err(UrlError::MissingScheme(_))));
        assert!(matches!("http://h:1".parse::<RelayUrl>(), Err(UrlError::UnsupportedScheme(_))));
        let wss: RelayUrl = "WSS://relay.example".parse().unwrap();
        assert_eq!((wss.scheme(), wss.port(), wss.to_string().as_str()), (Scheme::Wss, 443, "wss://relay.example:443"));
        let ws: RelayUrl = "ws://127.0.0.1:7443".parse().unwrap();
        assert_eq!((ws.scheme(), ws.authority().as_str()), (Scheme::Ws, "127.0.0.1:7443"));
        assert_eq!("ws://h".parse::<RelayUrl>().unwrap().port(), 80);
        assert!(matches!("wss://h:1/$hc/calc".parse::<RelayUrl>(), Err(UrlError::Unexpected(_))));
        assert!(matches!("quic://h:0".parse::<RelayUrl>(), Err(UrlError::InvalidPort(_))));
        assert!(matches!("quic://h:x".parse::<RelayUrl>(), Err(UrlError::InvalidPort(_))));
        assert!(matches!("quic://:1".parse::<RelayUrl>(), Err(UrlError::InvalidHost(_))));
        assert!(matches!("quic://h:1/calc".parse::<RelayUrl>(), Err(UrlError::Unexpected(_))));
        for unexpected in ["quic://u:p@h:1", "quic://h:1?x", "quic://h:1#f", "ws://h/?x"] {
            assert!(matches!(unexpected.parse::<RelayUrl>(), Err(UrlError::Unexpected(_))), "{unexpected}");
        }
        assert!(matches!("quic://h st:1".parse::<RelayUrl>(), Err(UrlError::InvalidHost(_))));
        assert!(matches!("quic://[::1:1".parse::<RelayUrl>(), Err(UrlError::InvalidHost(_))));
        assert_eq!("wss://[2001:db8::1]".parse::<RelayUrl>().unwrap().host(), "2001:db8::1");
    }

    #[test]
    fn relay_lists_are_shuffled_into_every_order() {
        let urls = RelayUrls::from("quic://a:1,quic://b:2, quic://c:3");
        assert_eq!(urls.iter().collect::<Vec<_>>(), ["quic://a:1", "quic://b:2", "quic://c:3"]);
        let mut seen = std::collections::HashSet::new();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..200 {
            let order = urls.shuffled(|| {
                // xorshift: deterministic, and every order comes up.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state
            });
            let mut sorted = order.clone();
            sorted.sort();
            assert_eq!(sorted, ["quic://a:1", "quic://b:2", "quic://c:3"], "a permutation");
            seen.insert(order);
        }
        assert_eq!(seen.len(), 6, "all six orders");
        assert_eq!(RelayUrls::from(" , ").check(), Err(UrlError::Empty));
        assert!(matches!(RelayUrls::from("quic://a:1,nope").check(), Err(UrlError::MissingScheme(_))));
        assert_eq!(urls.to_string(), "quic://a:1,quic://b:2,quic://c:3");
    }

    #[test]
    fn the_relay_just_lost_is_tried_last() {
        let urls = RelayUrls::from("quic://a:1,quic://b:2,quic://c:3");
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut firsts = std::collections::HashSet::new();
        for _ in 0..100 {
            let order = urls.try_order_with(Some("quic://b:2"), || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state
            });
            assert_eq!(order.len(), 3);
            assert_eq!(order[2], "quic://b:2");
            firsts.insert(order[0]);
        }
        assert_eq!(firsts.len(), 2, "the others in a random order");
        let unlisted = urls.try_order_with(Some("quic://z:9"), || 0);
        assert_eq!(unlisted.len(), 3, "a relay not in the list changes nothing");
        assert_eq!(RelayUrls::from("quic://a:1").try_order(Some("quic://a:1")), ["quic://a:1"]);
    }
}
