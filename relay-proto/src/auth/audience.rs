//! The audience of a token: which host and which address path it was signed for.

use super::percent;
use crate::address::validate_address;

/// The host and path a token was signed for, canonical: host in lower case without port,
/// path a valid address or empty (the whole namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audience {
    /// The host name or IP address, lower case, without brackets or port.
    pub host: String,
    /// The address path, without leading `/` or Azure's `$hc/`; empty for the whole host.
    pub path: String,
}

impl Audience {
    /// Parses a token's `sr` field as it appears in the token (URL-encoded once). The scheme and
    /// port are ignored; `.`/`..` segments, empty segments (`sb://host//`, a bare `sb://host/$hc/`),
    /// escapes left after the one decoding, NUL and over-long paths are refused, never normalised.
    pub fn parse_encoded(sr: &str) -> Option<Self> {
        Self::parse(&percent::decode(sr)?)
    }

    /// Parses a decoded resource URI such as `sb://relay.example/calc`.
    pub fn parse(uri: &str) -> Option<Self> {
        let (scheme, rest) = uri.split_once("://")?;
        if scheme.is_empty() || !scheme.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')) {
            return None;
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        if authority.contains(['@', '?', '#']) || path.contains(['?', '#']) {
            return None;
        }
        let host = if let Some(v6) = authority.strip_prefix('[') {
            v6.split_once(']')?.0
        } else {
            authority.rsplit_once(':').map_or(authority, |(host, _port)| host)
        };
        if host.is_empty() || !host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':' | b'_'))
        {
            return None;
        }
        // Only the namespace root itself (`sb://host`, `sb://host/`) is the empty path, which
        // covers every address. Anything after that `/` must name an address: `sb://host//` or
        // `sb://host/$hc/` would otherwise strip down to the empty path and cover everything.
        let path = if path.is_empty() {
            path
        } else {
            let path = path.strip_prefix("$hc/").unwrap_or(path);
            let path = path.strip_suffix('/').unwrap_or(path);
            validate_address(path).ok()?;
            path
        };
        Some(Self { host: host.to_ascii_lowercase(), path: path.to_owned() })
    }

    /// Whether this audience covers `address`: the same path, or a path below it on a segment
    /// boundary (`calc` covers `calc/eu`, not `calculator`).
    pub fn covers(&self, address: &str) -> bool {
        path_covers(&self.path, address)
    }
}

/// Whether the path prefix `scope` covers `address` on a segment boundary; empty covers all.
pub fn path_covers(scope: &str, address: &str) -> bool {
    scope.is_empty()
        || address == scope
        || (address.len() > scope.len() && address.starts_with(scope) && address.as_bytes()[scope.len()] == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_and_port_do_not_matter() {
        for uri in [
            "sb://Relay.Example/calc",
            "http://relay.example:7443/calc",
            "quic://relay.example:1/calc/",
            "wss://relay.example/$hc/calc",
        ] {
            assert_eq!(
                Audience::parse(uri),
                Some(Audience { host: "relay.example".into(), path: "calc".into() }),
                "{uri}"
            );
        }
        assert_eq!(Audience::parse("sb://[::1]:7443/a").unwrap().host, "::1");
        assert_eq!(Audience::parse("sb://h").unwrap().path, "");
        assert_eq!(Audience::parse("sb://h/").unwrap().path, "");
        assert_eq!(Audience::parse("http://h:7443/").unwrap().path, "");
        assert_eq!(Audience::parse("sb://h/$hc/calc/").unwrap().path, "calc");
    }

    #[test]
    fn empty_segments_never_widen_to_the_whole_namespace() {
        // Regression (issue 19): each of these once parsed to the empty path, which covers every
        // address. Only the namespace root itself (`sb://h`, `sb://h/`) may mean everything.
        for uri in [
            "sb://h//",
            "sb://h///",
            "sb://h/$hc/",
            "sb://h/$hc//",
            "sb://h/$hc",
            "wss://h:9443/$hc/",
            "sb://h/calc//",
            "sb://h/calc//eu",
            "sb://h/$hc//calc",
        ] {
            assert_eq!(Audience::parse(uri), None, "{uri:?}");
        }
        assert_eq!(Audience::parse_encoded("sb%3A%2F%2Fh%2F%24hc%2F"), None);
        assert_eq!(Audience::parse_encoded("sb%3A%2F%2Fh%2F%2F"), None);
    }

    #[test]
    fn tricks_are_refused_not_normalised() {
        for uri in [
            "sb://h/calc/../admin",
            "sb://h/./calc",
            "sb://h//calc",
            "sb://h/calc%2F..%2Fadmin",
            "sb://h/%2e%2e/admin",
            "sb://h/ca\0lc",
            "sb://user@h/calc",
            "sb://h/calc?x=1",
            "h/calc",
            "sb:///calc",
        ] {
            assert_eq!(Audience::parse(uri), None, "{uri:?}");
        }
        let long = format!("sb://h/{}", "a".repeat(300));
        assert_eq!(Audience::parse(&long), None);
        // Encoded once in the token, then decoded once: a double-encoded dot stays an escape and is refused.
        assert_eq!(Audience::parse_encoded("sb%3A%2F%2Fh%2F%252e%252e%2Fadmin"), None);
        assert_eq!(Audience::parse_encoded("sb%3A%2F%2Fh%2Fcalc%2F..%2Fadmin"), None);
        assert!(Audience::parse_encoded("sb%3A%2F%2Fh%2Fcalc").is_some());
    }

    #[test]
    fn covers_on_segment_boundaries() {
        assert!(path_covers("calc", "calc"));
        assert!(path_covers("calc", "calc/eu"));
        assert!(!path_covers("calc", "calculator"));
        assert!(!path_covers("calc", "calc-evil"));
        assert!(!path_covers("calc/eu", "calc"));
        assert!(path_covers("", "anything/at/all"));
    }
}
