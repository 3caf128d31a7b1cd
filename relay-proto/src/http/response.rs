//! The opening handshake's response head, as a client reads it.

use super::{HeadError, MAX_HEAD, MAX_HEADERS, first_header, lists_token, owned_headers};

/// A response head: its status line and headers, in the order sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// The status code (three digits).
    pub status: u16,
    /// The reason phrase; empty if it held bytes outside ASCII.
    pub reason: String,
    /// The headers, names as sent.
    pub headers: Vec<(String, String)>,
}

/// Why a `101` response does not open the WebSocket the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AcceptError {
    /// The status is not `101`.
    #[error("status {0}, not 101 Switching Protocols")]
    NotSwitching(u16),
    /// `Upgrade` is not `websocket`, or `Connection` does not list `upgrade`.
    #[error("101 without an upgrade to websocket")]
    NotUpgrade,
    /// `Sec-WebSocket-Accept` is missing or does not match the request's key.
    #[error("wrong Sec-WebSocket-Accept")]
    WrongAccept,
}

/// Parses the response head at the start of `bytes`: `Ok(None)` until it is complete, then the
/// head and the number of bytes it took. A head must end within [`MAX_HEAD`] bytes; it is
/// refused as soon as what arrived cannot start a valid one.
///
/// ```
/// use relay_proto::http::parse_response;
///
/// let bytes = b"HTTP/1.1 404 no listener on calc\r\nContent-Length: 3\r\n\r\nabc";
/// assert_eq!(parse_response(&bytes[..30])?, None);
/// let (head, used) = parse_response(bytes)?.expect("a whole head");
/// assert_eq!((head.status, head.reason.as_str(), head.content_length()), (404, "no listener on calc", Some(3)));
/// assert_eq!(&bytes[used..], b"abc");
/// # Ok::<(), relay_proto::http::HeadError>(())
/// ```
pub fn parse_response(bytes: &[u8]) -> Result<Option<(ResponseHead, usize)>, HeadError> {
    let window = &bytes[..bytes.len().min(MAX_HEAD)];
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(window)? {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial if bytes.len() < MAX_HEAD => return Ok(None),
        httparse::Status::Partial => return Err(HeadError::TooLarge),
    };
    let head = ResponseHead {
        status: response.code.unwrap_or_default(),
        reason: response.reason.unwrap_or_default().to_owned(),
        headers: owned_headers(response.headers),
    };
    Ok(Some((head, len)))
}

impl ResponseHead {
    /// The value of the first header named `name`, in any letter case.
    pub fn header(&self, name: &str) -> Option<&str> {
        first_header(&self.headers, name)
    }

    /// The body's length, from `Content-Length`, if it is given and a number.
    pub fn content_length(&self) -> Option<usize> {
        self.header("Content-Length").and_then(|v| v.trim().parse().ok())
    }

    /// Checks that this is a `101` opening the WebSocket whose request's key gives `accept_key`
    /// (RFC 6455 §4.1: base64 of the SHA-1 of the key and the protocol's GUID).
    ///
    /// ```
    /// use relay_proto::http::{AcceptError, parse_response};
    ///
    /// let bytes = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    ///     Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
    /// let (head, _) = parse_response(bytes)?.unwrap();
    /// assert_eq!(head.check_accept("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), Ok(()));
    /// assert_eq!(head.check_accept("another"), Err(AcceptError::WrongAccept));
    /// # Ok::<(), relay_proto::http::HeadError>(())
    /// ```
    pub fn check_accept(&self, accept_key: &str) -> Result<(), AcceptError> {
        if self.status != 101 {
            return Err(AcceptError::NotSwitching(self.status));
        }
        let upgrade = self.header("Upgrade").is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"));
        if !upgrade || !lists_token(&self.headers, "Connection", "upgrade") {
            return Err(AcceptError::NotUpgrade);
        }
        if self.header("Sec-WebSocket-Accept").map(str::trim) != Some(accept_key) {
            return Err(AcceptError::WrongAccept);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A relay's acceptance, with the first frame sent in the same write.
    const SWITCHING: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x82\x02hi";
    const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    fn head(bytes: &[u8]) -> ResponseHead {
        parse_response(bytes).unwrap().expect("a whole head").0
    }

    #[test]
    fn a_head_split_anywhere_is_incomplete_until_its_last_byte() {
        let end = SWITCHING.len() - 4;
        for at in 0..end {
            assert_eq!(parse_response(&SWITCHING[..at]), Ok(None), "complete after {at} bytes");
        }
        let (head, used) = parse_response(SWITCHING).unwrap().unwrap();
        assert_eq!(used, end);
        assert_eq!(parse_response(&SWITCHING[..end]), Ok(Some((head.clone(), end))));
        assert_eq!(head.check_accept(ACCEPT), Ok(()));
    }

    #[test]
    fn acceptances_are_checked() {
        let replace = |from: &str, to: &str| {
            let text = String::from_utf8(SWITCHING[..SWITCHING.len() - 4].to_vec()).unwrap();
            head(text.replacen(from, to, 1).as_bytes())
        };
        assert_eq!(replace("", "").check_accept("other"), Err(AcceptError::WrongAccept));
        assert_eq!(replace("Sec-WebSocket-Accept", "X-Accept").check_accept(ACCEPT), Err(AcceptError::WrongAccept));
        assert_eq!(replace("Upgrade: websocket", "Upgrade: h2c").check_accept(ACCEPT), Err(AcceptError::NotUpgrade));
        assert_eq!(
            replace("Connection: Upgrade", "Connection: close").check_accept(ACCEPT),
            Err(AcceptError::NotUpgrade)
        );
        assert_eq!(replace("101", "200").check_accept(ACCEPT), Err(AcceptError::NotSwitching(200)));
        let listed = replace("Connection: Upgrade", "connection: keep-alive, upgrade");
        assert_eq!(listed.check_accept(ACCEPT), Ok(()));
        let spaced = replace(ACCEPT, &format!("{ACCEPT}\t "));
        assert_eq!(spaced.check_accept(ACCEPT), Ok(()));
    }

    #[test]
    fn refusals_keep_status_reason_and_length() {
        let refused = head(b"HTTP/1.1 401 missing token: none\r\nContent-Length: 12\r\nContent-Length: 5\r\n\r\n");
        assert_eq!((refused.status, refused.reason.as_str()), (401, "missing token: none"));
        assert_eq!(refused.content_length(), Some(12), "the first of repeated headers counts");
        assert_eq!(head(b"HTTP/1.1 404 Not Found\r\n\r\n").content_length(), None);
        assert_eq!(head(b"HTTP/1.1 404 Not Found\r\nContent-Length: -1\r\n\r\n").content_length(), None);
        assert_eq!(head(b"HTTP/1.0 503\r\n\r\n").reason, "");
        // Bytes outside ASCII: an empty reason, a replaced header value.
        let latin1 = head(b"HTTP/1.1 403 R\xe9fus\xe9\r\nX-Why: caf\xe9\r\n\r\n");
        assert_eq!((latin1.reason.as_str(), latin1.header("x-why")), ("", Some("caf\u{fffd}")));
    }

    #[test]
    fn oversized_and_malformed_heads_are_refused() {
        let endless = [b"HTTP/1.1 200 OK\r\n".as_slice(), &b"X: y\r\n".repeat(MAX_HEAD / 6)].concat();
        assert_eq!(parse_response(&endless[..MAX_HEAD - 1]), Err(HeadError::TooManyHeaders));
        let long = [b"HTTP/1.1 200 OK\r\nX: ".as_slice(), &vec![b'a'; MAX_HEAD]].concat();
        assert_eq!(parse_response(&long[..MAX_HEAD - 1]), Ok(None));
        assert_eq!(parse_response(&long), Err(HeadError::TooLarge));
        let many = format!("HTTP/1.1 200 OK\r\n{}\r\n", "X: y\r\n".repeat(MAX_HEADERS + 1));
        assert_eq!(parse_response(many.as_bytes()), Err(HeadError::TooManyHeaders));
        // Refused as soon as the bytes cannot start a head.
        for (bytes, error) in [
            (&b"garbage"[..], HeadError::StartLine),
            (b"HTTP/1.1 2000 OK\r\n", HeadError::StartLine),
            (b"HTTP/1.1 200 OK\r\nX y\r\n", HeadError::Header),
            (b"HTTP/1.1 200 OK\r\nX: a\rb", HeadError::Header),
        ] {
            assert_eq!(parse_response(bytes), Err(error), "{:?}", String::from_utf8_lossy(bytes));
        }
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\nX: y\n\n").unwrap().unwrap().1, 22, "bare LFs are fine");
    }
}
