//! The opening handshake's request head, as a relay reads it.

use super::{HeadError, MAX_HEAD, MAX_HEADERS, first_header, lists_token, owned_headers};

/// A request head: its request line and headers, in the order sent (repeated headers included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The method, e.g. `GET`.
    pub method: String,
    /// The request target as sent, e.g. `/$hc/calc?sb-hc-action=connect`.
    pub target: String,
    /// The headers, names as sent.
    pub headers: Vec<(String, String)>,
}

/// Why a request head is not a WebSocket upgrade request. The descriptions are what a relay
/// answers `400` with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpgradeError {
    /// The method is not `GET`.
    #[error("method must be GET")]
    NotGet,
    /// `Upgrade` does not list `websocket`, or `Connection` does not list `upgrade`.
    #[error("not a WebSocket upgrade")]
    NotUpgrade,
    /// `Sec-WebSocket-Version` is missing or not `13`.
    #[error("Sec-WebSocket-Version must be 13")]
    Version,
    /// `Sec-WebSocket-Key` is missing or empty.
    #[error("missing Sec-WebSocket-Key")]
    MissingKey,
}

/// Parses the request head at the start of `bytes`: `Ok(None)` until it is complete, then the
/// head and the number of bytes it took.
///
/// A head ends at its first CR LF CR LF, which must come within [`MAX_HEAD`] bytes, and only
/// then is it parsed: a head is refused whole, once its sender is done sending it, never while
/// it is still arriving. A blank line of bare LFs before that does not end it; it makes it
/// malformed ([`HeadError::LineEnding`]).
///
/// ```
/// use relay_proto::http::{HeadError, MAX_HEAD, parse_request};
///
/// let (head, used) = parse_request(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")?.expect("complete");
/// assert_eq!((head.header("host"), used), (Some("a"), 28));
/// assert_eq!(parse_request(b"GET /x HTTP/1.1\r\nHost: a\r\n")?, None);
/// assert_eq!(parse_request(&vec![b'a'; MAX_HEAD]), Err(HeadError::TooLarge));
/// # Ok::<(), HeadError>(())
/// ```
pub fn parse_request(bytes: &[u8]) -> Result<Option<(RequestHead, usize)>, HeadError> {
    let window = &bytes[..bytes.len().min(MAX_HEAD)];
    let Some(end) = window.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4) else {
        return if bytes.len() >= MAX_HEAD { Err(HeadError::TooLarge) } else { Ok(None) };
    };
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(&window[..end])? {
        httparse::Status::Complete(len) if len == end => {}
        // Ended earlier, at a blank line of bare LFs.
        httparse::Status::Complete(_) => return Err(HeadError::LineEnding),
        // Nothing but blank lines before the end: no request line.
        httparse::Status::Partial => return Err(HeadError::StartLine),
    }
    let head = RequestHead {
        method: request.method.unwrap_or_default().to_owned(),
        target: request.path.unwrap_or_default().to_owned(),
        headers: owned_headers(request.headers),
    };
    Ok(Some((head, end)))
}

impl RequestHead {
    /// The value of the first header named `name`, in any letter case.
    pub fn header(&self, name: &str) -> Option<&str> {
        first_header(&self.headers, name)
    }

    /// The `Sec-WebSocket-Key` of a valid WebSocket upgrade request (RFC 6455 §4.2.1), or why
    /// this is not one.
    ///
    /// ```
    /// use relay_proto::http::{UpgradeError, parse_request};
    ///
    /// let (head, _) = parse_request(b"GET / HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n")?.unwrap();
    /// assert_eq!(head.websocket_key(), Err(UpgradeError::NotUpgrade));
    /// # Ok::<(), relay_proto::http::HeadError>(())
    /// ```
    pub fn websocket_key(&self) -> Result<&str, UpgradeError> {
        if self.method != "GET" {
            return Err(UpgradeError::NotGet);
        }
        if !lists_token(&self.headers, "Upgrade", "websocket") || !lists_token(&self.headers, "Connection", "upgrade") {
            return Err(UpgradeError::NotUpgrade);
        }
        if self.header("Sec-WebSocket-Version") != Some("13") {
            return Err(UpgradeError::Version);
        }
        self.header("Sec-WebSocket-Key").filter(|k| !k.is_empty()).ok_or(UpgradeError::MissingKey)
    }

    /// The first sub-protocol the client offers (`Sec-WebSocket-Protocol`).
    pub fn first_protocol(&self) -> Option<String> {
        self.header("Sec-WebSocket-Protocol")
            .and_then(|v| v.split(',').map(str::trim).find(|p| !p.is_empty()))
            .map(str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An upgrade request as hyco-ws's listener sends it.
    const HYCO: &[u8] = b"GET /$hc/calc?sb-hc-action=listen&sb-hc-id=1 HTTP/1.1\r\n\
        Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Connection: Upgrade\r\nUpgrade: websocket\r\n\
        Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
        ServiceBusAuthorization: SharedAccessSignature sr=x&sig=y&se=1&skn=root\r\nHost: 127.0.0.1:7443\r\n\r\n";

    fn head(bytes: &[u8]) -> RequestHead {
        parse_request(bytes).unwrap().expect("a whole head").0
    }

    /// `HYCO` with `name`'s header line removed or replaced by `line`.
    fn with_header(name: &str, line: Option<&str>) -> Vec<u8> {
        let text = std::str::from_utf8(HYCO).unwrap();
        let mut out = String::new();
        for l in text.split_inclusive("\r\n") {
            if l.starts_with(&format!("{name}:")) {
                out.extend(line.map(|line| format!("{line}\r\n")));
            } else {
                out.push_str(l);
            }
        }
        out.into_bytes()
    }

    #[test]
    fn parses_a_real_upgrade_request() {
        let mut bytes = HYCO.to_vec();
        bytes.extend_from_slice(b"\x81\x82abcd");
        let (head, used) = parse_request(&bytes).unwrap().unwrap();
        assert_eq!(used, HYCO.len());
        assert_eq!((head.method.as_str(), head.target.as_str()), ("GET", "/$hc/calc?sb-hc-action=listen&sb-hc-id=1"));
        assert_eq!(head.headers.len(), 7);
        assert_eq!(head.websocket_key(), Ok("dGhlIHNhbXBsZSBub25jZQ=="));
        assert_eq!(head.header("servicebusauthorization").map(|t| &t[..21]), Some("SharedAccessSignature"));
        assert_eq!(head.first_protocol(), None);
    }

    #[test]
    fn a_head_split_anywhere_is_incomplete_until_its_last_byte() {
        for at in 0..HYCO.len() {
            assert_eq!(parse_request(&HYCO[..at]), Ok(None), "complete after {at} bytes");
        }
        let whole = parse_request(HYCO).unwrap();
        assert_eq!(whole.as_ref().map(|(_, used)| *used), Some(HYCO.len()));
        for extra in [&b""[..], b"\r\n", b"GET / HTTP/1.1\r\n\r\n"] {
            assert_eq!(parse_request(&[HYCO, extra].concat()), Ok(whole.clone()), "what follows is not the head's");
        }
    }

    #[test]
    fn oversized_heads_are_refused_at_the_limit() {
        let filler = |n: usize| format!("X-Fill: {}\r\n", "a".repeat(n));
        let start = "GET / HTTP/1.1\r\n";
        // Exactly MAX_HEAD bytes with the blank line: accepted.
        let fits = format!("{start}{}\r\n", filler(MAX_HEAD - start.len() - 2 - 10));
        assert_eq!(fits.len(), MAX_HEAD);
        assert_eq!(parse_request(fits.as_bytes()).unwrap().unwrap().1, MAX_HEAD);
        // One byte more: the blank line ends past the limit.
        let over = format!("{start}{}\r\n", filler(MAX_HEAD - start.len() - 2 - 9));
        assert_eq!(parse_request(over.as_bytes()), Err(HeadError::TooLarge));
        assert_eq!(parse_request(&over.as_bytes()[..MAX_HEAD]), Err(HeadError::TooLarge));
        assert_eq!(parse_request(&over.as_bytes()[..MAX_HEAD - 1]), Ok(None));
        assert_eq!(parse_request(&vec![0xff; 3 * MAX_HEAD]), Err(HeadError::TooLarge));
    }

    #[test]
    fn too_many_headers_are_refused() {
        let head = |n: usize| format!("GET / HTTP/1.1\r\n{}\r\n", "X: y\r\n".repeat(n));
        assert_eq!(parse_request(head(MAX_HEADERS).as_bytes()).unwrap().unwrap().0.headers.len(), MAX_HEADERS);
        assert_eq!(parse_request(head(MAX_HEADERS + 1).as_bytes()), Err(HeadError::TooManyHeaders));
    }

    #[test]
    fn what_is_missing_from_an_upgrade_is_named() {
        let key = |bytes: &[u8]| head(bytes).websocket_key().map(str::to_owned);
        assert_eq!(key(&with_header("Upgrade", None)), Err(UpgradeError::NotUpgrade));
        assert_eq!(key(&with_header("Upgrade", Some("Upgrade: h2c"))), Err(UpgradeError::NotUpgrade));
        assert_eq!(key(&with_header("Connection", None)), Err(UpgradeError::NotUpgrade));
        assert_eq!(key(&with_header("Connection", Some("Connection: keep-alive"))), Err(UpgradeError::NotUpgrade));
        assert_eq!(key(&with_header("Sec-WebSocket-Version", None)), Err(UpgradeError::Version));
        assert_eq!(
            key(&with_header("Sec-WebSocket-Version", Some("Sec-WebSocket-Version: 8"))),
            Err(UpgradeError::Version)
        );
        assert_eq!(key(&with_header("Sec-WebSocket-Key", None)), Err(UpgradeError::MissingKey));
        assert_eq!(key(&with_header("Sec-WebSocket-Key", Some("Sec-WebSocket-Key:"))), Err(UpgradeError::MissingKey));
        let post = [b"POST".as_slice(), &HYCO[3..]].concat();
        assert_eq!(key(&post), Err(UpgradeError::NotGet));
        // Token lists and letter case, as browsers and proxies write them.
        let listed = with_header("Connection", Some("connection: keep-alive, UPGRADE"));
        assert_eq!(key(&with_header("Upgrade", Some("upgrade: WebSocket"))).as_deref(), Ok("dGhlIHNhbXBsZSBub25jZQ=="));
        assert_eq!(key(&listed).as_deref(), Ok("dGhlIHNhbXBsZSBub25jZQ=="));
        // What a relay answers with.
        assert_eq!(UpgradeError::Version.to_string(), "Sec-WebSocket-Version must be 13");
    }

    #[test]
    fn repeated_headers_are_kept_and_the_first_counts() {
        let twice = with_header("Sec-WebSocket-Key", Some("Sec-WebSocket-Key: first\r\nsec-websocket-key: second"));
        let head = head(&twice);
        assert_eq!(head.websocket_key(), Ok("first"));
        let keys: Vec<&str> = head
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-key"))
            .map(|(_, v)| &**v)
            .collect();
        assert_eq!(keys, ["first", "second"]);
        let protocols = with_header("Host", Some("Sec-WebSocket-Protocol: , chat, superchat\r\nHost: h"));
        assert_eq!(super::parse_request(&protocols).unwrap().unwrap().0.first_protocol().as_deref(), Some("chat"));
    }

    #[test]
    fn bytes_that_are_not_utf8() {
        // In a header value: kept, replaced.
        let latin1 = b"GET / HTTP/1.1\r\nHost: caf\xe9\r\n\r\n";
        assert_eq!(head(latin1).header("Host"), Some("caf\u{fffd}"));
        let utf8 = with_header("Host", Some("Host: caf\u{e9}"));
        assert_eq!(head(&utf8).header("Host"), Some("caf\u{e9}"));
        // In the request line or a header name: malformed.
        assert_eq!(parse_request(b"GET /\xff\xfe HTTP/1.1\r\n\r\n"), Err(HeadError::StartLine));
        assert_eq!(parse_request(b"G\xc3\xa9T / HTTP/1.1\r\n\r\n"), Err(HeadError::StartLine));
        assert_eq!(parse_request(b"GET / HTTP/1.1\r\nH\xc3\xa9: x\r\n\r\n"), Err(HeadError::Header));
    }

    #[test]
    fn malformed_heads_are_refused_once_whole() {
        // Nothing is refused before its blank line: the relay answers a whole head.
        assert_eq!(parse_request(b"garbage"), Ok(None));
        for (bytes, error) in [
            (&b"garbage\r\n\r\n"[..], HeadError::StartLine),
            (b"GET / HTTP/2.0\r\n\r\n", HeadError::StartLine),
            (b"GET  HTTP/1.1\r\n\r\n", HeadError::StartLine),
            (b"\r\n\r\n", HeadError::StartLine),
            (b"GET / HTTP/1.1\r\nNo colon\r\n\r\n", HeadError::Header),
            (b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", HeadError::Header),
            (b"GET / HTTP/1.1\r\nX: a\r\n\n\r\n\r\n", HeadError::LineEnding),
            (b"GET / HTTP/1.1\nHost: a\n\n\r\n\r\n", HeadError::LineEnding),
        ] {
            assert_eq!(parse_request(bytes), Err(error), "{:?}", String::from_utf8_lossy(bytes));
        }
        // Bare LFs that end no head are fine, as HTTP allows.
        assert_eq!(head(b"GET / HTTP/1.1\nHost: a\r\n\r\n").header("Host"), Some("a"));
    }
}
