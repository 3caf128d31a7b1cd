//! Where Hybrid Connections WebSockets go, sans-IO: the relay's listen and connect targets, and
//! the rendezvous URLs the relay hands a listener to accept or reject a sender on.

use crate::url::{RelayUrl, Scheme};
use relay_proto::ErrorCode;
use relay_proto::auth::percent::encode_component as percent_encode;
use relay_proto::hc::{self, HC_PREFIX};

/// One WebSocket to open: over TLS or not, to which host and port, with which request target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// `wss` (true) or `ws`.
    pub(crate) tls: bool,
    /// The host name or IP address, without brackets.
    pub(crate) host: String,
    /// The TCP port.
    pub(crate) port: u16,
    /// The request target: path and query.
    pub(crate) target: String,
}

impl Endpoint {
    /// `target` on the relay at `relay`.
    pub(crate) fn on_relay(relay: &RelayUrl, target: String) -> Self {
        Self { tls: relay.scheme() != Scheme::Ws, host: relay.host().to_owned(), port: relay.port(), target }
    }

    /// Parses an absolute `wss://` or `ws://` URL, such as the rendezvous address of an `accept`
    /// message. Refuses anything a request line could not carry verbatim.
    pub(crate) fn parse(url: &str) -> Result<Self, String> {
        let (scheme, rest) = url.split_once("://").ok_or("not an absolute url")?;
        let (authority, target) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('?') => (&rest[..i], format!("/{}", &rest[i..])),
            Some(i) => (&rest[..i], rest[i..].to_owned()),
            None => (rest, "/".to_owned()),
        };
        let relay: RelayUrl = format!("{scheme}://{authority}").parse().map_err(|e| format!("{e}"))?;
        if !relay.is_websocket() {
            return Err(format!("scheme {scheme:?} is not ws or wss"));
        }
        if !target.starts_with('/') || !target.bytes().all(|b| b.is_ascii_graphic()) || target.contains('#') {
            return Err("malformed request target".into());
        }
        Ok(Self::on_relay(&relay, target))
    }

    /// The `Host` header: `host:port`, brackets around an IPv6 address.
    pub(crate) fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A listener's control channel on `address` (a validated address needs no escaping).
pub(crate) fn listen_target(address: &str) -> String {
    format!("{HC_PREFIX}{address}?sb-hc-action=listen")
}

/// A sender's connection to `address`.
pub(crate) fn connect_target(address: &str) -> String {
    format!("{HC_PREFIX}{address}?sb-hc-action=connect")
}

/// The longest status description sent, in bytes, so that the URL stays well within limits.
const MAX_DESCRIPTION: usize = 512;

/// The rendezvous URL that rejects a sender: `accept` with the HTTP status and description
/// the sender is to get appended.
pub(crate) fn reject_url(accept: &str, code: ErrorCode, detail: &str) -> String {
    let (status, _) = hc::http_status(code);
    let mut description = hc::status_description(code, detail);
    if description.len() > MAX_DESCRIPTION {
        let mut end = MAX_DESCRIPTION;
        while !description.is_char_boundary(end) {
            end -= 1;
        }
        description.truncate(end);
    }
    let separator = if accept.contains('?') { '&' } else { '?' };
    format!("{accept}{separator}sb-hc-statusCode={status}&sb-hc-statusDescription={}", percent_encode(&description))
}

/// A channel id for logs from the relay's connection id: the id itself if it is a number, else a
/// hash of it (FNV-1a).
pub(crate) fn channel_id(id: &str) -> u64 {
    id.parse().unwrap_or_else(|_| {
        id.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, b| (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_proto::hc::{Action, Target};

    #[test]
    fn targets_parse_as_the_relay_reads_them() {
        let listen = Target::parse(&listen_target("eu/calc")).unwrap();
        assert_eq!((listen.path.as_str(), listen.action), ("eu/calc", Action::Listen));
        let connect = Target::parse(&connect_target("calc")).unwrap();
        assert_eq!((connect.path.as_str(), connect.action), ("calc", Action::Connect));
    }

    #[test]
    fn reject_urls_carry_status_and_description() {
        let accept = "wss://127.0.0.1:7443/$hc/calc?sb-hc-action=accept&sb-hc-id=7&sb-hc-rendezvous=r1";
        let url = reject_url(accept, ErrorCode::ContractMismatch, "the listener's `Calc` has no method `neg` & more");
        let endpoint = Endpoint::parse(&url).unwrap();
        let target = Target::parse(&endpoint.target).unwrap();
        assert_eq!(target.action, Action::Accept);
        assert_eq!(target.status_code, Some(409));
        assert_eq!(target.status_description.as_deref(), Some("the listener's `Calc` has no method `neg` & more"));
        assert_eq!(Target::raw_param(&endpoint.target, "sb-hc-rendezvous"), Some("r1"));

        let url = reject_url("ws://h:1/$hc/a?sb-hc-action=accept", ErrorCode::Busy, "listener is busy");
        assert!(url.ends_with("&sb-hc-statusCode=503&sb-hc-statusDescription=listener%20is%20busy"), "{url}");
        assert!(reject_url("ws://h/x", ErrorCode::Rejected, "no").contains("/x?sb-hc-statusCode=403&"));
        let long = reject_url("ws://h/x", ErrorCode::Rejected, &"ü".repeat(1000));
        assert_eq!(long.matches("%C3%BC").count(), MAX_DESCRIPTION / 2);
    }

    #[test]
    fn endpoints_parse_rendezvous_urls_and_refuse_garbage() {
        let e = Endpoint::parse("wss://relay.example/$hc/calc?sb-hc-action=accept").unwrap();
        assert_eq!(
            e,
            Endpoint {
                tls: true,
                host: "relay.example".into(),
                port: 443,
                target: "/$hc/calc?sb-hc-action=accept".into()
            }
        );
        assert_eq!(e.authority(), "relay.example:443");
        let e = Endpoint::parse("ws://[::1]:9000?x").unwrap();
        assert_eq!((e.tls, e.host.as_str(), e.port, e.target.as_str()), (false, "::1", 9000, "/?x"));
        assert_eq!(e.authority(), "[::1]:9000");
        for bad in [
            "quic://h:1/$hc/a",
            "https://h/$hc/a",
            "wss:/h/a",
            "wss://h/a b",
            "wss://h/a\r\nX-Evil: 1",
            "wss://u@h/a",
            "wss://h:0/a",
            "wss://h/a#frag",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn channel_ids_are_numbers_or_hashes() {
        assert_eq!(channel_id("42"), 42);
        assert_eq!(channel_id("8c1e5b1e-7f1a"), channel_id("8c1e5b1e-7f1a"));
        assert_ne!(channel_id("a"), channel_id("b"));
    }
}
