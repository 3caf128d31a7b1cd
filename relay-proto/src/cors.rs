//! CORS for browser senders, sans-IO: which origins an address allows, and the headers of the
//! relay's answers to them (the Fetch standard's preflight and response headers).
//!
//! ```
//! use relay_proto::cors;
//!
//! let allowed = vec!["https://app.example".to_owned()];
//! assert!(cors::allows(&allowed, "https://APP.example"));
//! assert!(!cors::allows(&allowed, "https://evil.example"));
//! let headers = cors::preflight_headers("https://app.example", Some("content-type, x-trace"));
//! assert!(headers.contains(&("access-control-allow-headers", "content-type, x-trace".to_owned())));
//! ```

/// The methods a preflight allows.
pub const ALLOW_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE";

/// The request headers a preflight allows when the page asks for none, or for some that are
/// not header names: the token headers and Connect's.
pub const ALLOW_HEADERS: &str =
    "Content-Type, Connect-Protocol-Version, Connect-Timeout-Ms, ServiceBusAuthorization, Authorization";

/// How long a browser may keep a preflight's answer, in seconds.
pub const MAX_AGE_SECS: u32 = 7200;

/// Whether `text` is an origin an address may allow: `http` or `https`, `://`, a host (and a
/// port), nothing else: no path, query, user or wildcard.
pub fn is_origin(text: &str) -> bool {
    let Some((scheme, authority)) = text.split_once("://") else { return false };
    let scheme_ok = scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https");
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => match port.parse::<u16>() {
            Ok(_) if !host.is_empty() => (host, true),
            _ => return false,
        },
        _ => (authority, true),
    };
    let host_ok = !host.is_empty()
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b".-[]:".contains(&b))
        && (host.starts_with('[') || !host.contains(':'));
    scheme_ok && port && host_ok
}

/// Whether `origin` (a request's `Origin` header) is one of `allowed` (compared ignoring ASCII
/// case, as origins are).
pub fn allows(allowed: &[String], origin: &str) -> bool {
    allowed.iter().any(|a| a.eq_ignore_ascii_case(origin))
}

/// The headers of the relay's `204` to an allowed `origin`'s preflight. The headers the page
/// asked for (`Access-Control-Request-Headers`) are allowed as asked when each is a header
/// name; otherwise the default list.
pub fn preflight_headers(origin: &str, requested_headers: Option<&str>) -> Vec<(&'static str, String)> {
    let requested = requested_headers
        .map(str::trim)
        .filter(|r| !r.is_empty() && r.len() <= 1024 && r.split(',').all(|name| is_token(name.trim())));
    vec![
        ("access-control-allow-origin", origin.to_owned()),
        ("access-control-allow-methods", ALLOW_METHODS.to_owned()),
        ("access-control-allow-headers", requested.unwrap_or(ALLOW_HEADERS).to_owned()),
        ("access-control-max-age", MAX_AGE_SECS.to_string()),
        ("vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers".to_owned()),
    ]
}

/// The headers an answer to an allowed `origin` carries (added only when the listener set no
/// `Access-Control-Allow-Origin` itself: a repeated one fails the request in the browser).
pub fn response_headers(origin: &str) -> [(&'static str, String); 2] {
    [("access-control-allow-origin", origin.to_owned()), ("vary", "Origin".to_owned())]
}

/// Whether `name` is an HTTP token (RFC 9110 §5.6.2), as header names are.
fn is_token(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_scheme_host_and_port_only() {
        for good in ["https://app.example", "http://127.0.0.1:8080", "HTTPS://App.Example:443", "http://[::1]:3000"] {
            assert!(is_origin(good), "{good}");
        }
        for bad in [
            "*",
            "null",
            "app.example",
            "ftp://app.example",
            "https://app.example/",
            "https://app.example/path",
            "https://user@app.example",
            "https://app.example:99999",
            "https://app.example:",
            "https://",
            "https://a b",
        ] {
            assert!(!is_origin(bad), "{bad}");
        }
    }

    #[test]
    fn allowed_origins_match_ignoring_case_and_nothing_else() {
        let allowed = vec!["https://app.example".to_owned()];
        assert!(allows(&allowed, "https://app.example"));
        assert!(allows(&allowed, "HTTPS://APP.EXAMPLE"));
        assert!(!allows(&allowed, "https://app.example:8443"));
        assert!(!allows(&allowed, "http://app.example"));
        assert!(!allows(&[], "https://app.example"));
    }

    #[test]
    fn preflights_allow_the_headers_asked_for_when_they_are_names() {
        let allowed = |headers: Vec<(&'static str, String)>| {
            headers.into_iter().find(|(name, _)| *name == "access-control-allow-headers").map(|(_, v)| v)
        };
        assert_eq!(allowed(preflight_headers("https://a", Some(" x-a, content-type "))).unwrap(), "x-a, content-type");
        assert_eq!(allowed(preflight_headers("https://a", Some("x-a\r\nevil: 1"))).unwrap(), ALLOW_HEADERS);
        assert_eq!(allowed(preflight_headers("https://a", None)).unwrap(), ALLOW_HEADERS);
        let headers = preflight_headers("https://a", None);
        assert!(headers.contains(&("access-control-allow-origin", "https://a".to_owned())));
        assert!(headers.contains(&("access-control-max-age", "7200".to_owned())));
        assert_eq!(response_headers("https://a")[1], ("vary", "Origin".to_owned()));
    }
}
