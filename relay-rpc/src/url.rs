//! Relay URLs: `quic://host:port`.

use std::fmt;
use std::str::FromStr;

/// The port a relay listens on when a URL names none.
pub const DEFAULT_PORT: u16 = 7443;

/// The transport a relay URL selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scheme {
    /// `quic://`: QUIC with TLS 1.3.
    Quic,
}

/// Why a string is not a relay URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// The URL has no `scheme://`.
    #[error("relay url {0:?} has no scheme; expected quic://host:port")]
    MissingScheme(String),
    /// The scheme is not one this build supports.
    #[error("unsupported relay url scheme {0:?}; expected quic")]
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

    fn from_str(s: &str) -> Result<Self, UrlError> {
        let (scheme, rest) = s.split_once("://").ok_or_else(|| UrlError::MissingScheme(s.to_owned()))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "quic" => Scheme::Quic,
            _ => return Err(UrlError::UnsupportedScheme(scheme.to_owned())),
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#', '@']) {
            return Err(UrlError::Unexpected(s.to_owned()));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| UrlError::InvalidHost(s.to_owned()))?;
            match after {
                "" => (host, None),
                _ => (host, Some(after.strip_prefix(':').ok_or_else(|| UrlError::InvalidHost(s.to_owned()))?)),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(UrlError::InvalidHost(s.to_owned()));
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => p.parse().ok().filter(|&p| p != 0).ok_or_else(|| UrlError::InvalidPort(s.to_owned()))?,
        };
        Ok(Self { scheme, host: host.to_owned(), port })
    }
}

impl fmt::Display for RelayUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            Scheme::Quic => "quic",
        };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
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
        assert!(matches!("quic://h:0".parse::<RelayUrl>(), Err(UrlError::InvalidPort(_))));
        assert!(matches!("quic://h:x".parse::<RelayUrl>(), Err(UrlError::InvalidPort(_))));
        assert!(matches!("quic://:1".parse::<RelayUrl>(), Err(UrlError::InvalidHost(_))));
        assert!(matches!("quic://h:1/calc".parse::<RelayUrl>(), Err(UrlError::Unexpected(_))));
    }
}
