//! The client side of the WebSocket opening handshake (RFC 6455 §4.1), written out here rather
//! than left to tungstenite so that a refusal's status, reason phrase and body reach the caller:
//! Hybrid Connections says in them why it refused. Request building and response parsing are
//! sans-IO; [`upgrade`] drives them over any byte stream, and hands over the stream with what
//! came after the answer.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::target::Endpoint;
use relay_proto::http::{self, MAX_HEAD};
use relay_proto::{ErrorCode, hc};

/// The longest refusal body read, in bytes.
const MAX_BODY: usize = 4 * 1024;

/// Why a handshake failed before the relay answered with a status.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandshakeError {
    /// Reading or writing the socket failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The relay closed the connection before answering.
    #[error("the relay closed the connection during the handshake")]
    Eof,
    /// The answer is not a valid HTTP response or WebSocket acceptance.
    #[error("malformed handshake response: {0}")]
    Malformed(String),
    /// A header value holds characters a header cannot carry (a token with a line break).
    #[error("the {0} header holds characters a header cannot carry")]
    BadHeader(String),
}

/// How the relay answered.
#[derive(Debug)]
pub(crate) enum Upgrade<S> {
    /// `101 Switching Protocols`: the WebSocket is open on `stream`, where `leftover` arrived
    /// with the answer; the relay's id for the channel, if it said ([`hc::CHANNEL_ID_HEADER`]).
    Accepted { stream: S, leftover: Vec<u8>, channel_id: Option<u64> },
    /// Another status, with the description the relay gave (reason phrase or body).
    Refused {
        /// The HTTP status.
        status: u16,
        /// Why, for a human (and for [`hc::error_code`]).
        description: String,
    },
}

/// The head of the relay's response.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Head {
    /// `101`, checked: the WebSocket starts after `len` bytes; the relay's id for the channel.
    Switching { len: usize, channel_id: Option<u64> },
    /// Another status; its body (if any) starts after `len` bytes.
    Refused { status: u16, reason: String, content_length: Option<usize>, len: usize },
}

/// The opening handshake request for `endpoint`, with the client's `key` and extra `headers`.
pub(crate) fn request(endpoint: &Endpoint, key: &str, headers: &[(&str, &str)]) -> Result<Vec<u8>, HandshakeError> {
    let mut request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n\
         Sec-WebSocket-Version: 13\r\n",
        endpoint.target,
        endpoint.authority(),
    );
    for (name, value) in headers {
        if !value.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)) {
            return Err(HandshakeError::BadHeader((*name).to_owned()));
        }
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    Ok(request.into_bytes())
}

/// Parses the response head in `buf` (see [`http::parse_response`]): `None` until it is
/// complete. A `101` must carry the `Sec-WebSocket-Accept` that matches the request's key
/// (`accept_key`).
pub(crate) fn parse_head(buf: &[u8], accept_key: &str) -> Result<Option<Head>, HandshakeError> {
    let parsed = http::parse_response(buf).map_err(|e| HandshakeError::Malformed(e.to_string()))?;
    let Some((head, len)) = parsed else { return Ok(None) };
    if head.status != 101 {
        let content_length = head.content_length();
        return Ok(Some(Head::Refused { status: head.status, reason: head.reason, content_length, len }));
    }
    head.check_accept(accept_key).map_err(|e| HandshakeError::Malformed(e.to_string()))?;
    let channel_id = head.header(hc::CHANNEL_ID_HEADER).and_then(|id| id.trim().parse().ok());
    Ok(Some(Head::Switching { len, channel_id }))
}

/// The description of a refusal: the reason phrase if it names an authorization failure (or the
/// body is empty), else the body, where servers that write standard reason phrases put it.
fn description(status: u16, reason: &str, body: &str) -> String {
    let body = body.trim();
    if body.is_empty() || matches!(hc::error_code(status, reason), ErrorCode::Auth(_)) {
        reason.trim().to_owned()
    } else {
        body.to_owned()
    }
}

/// Sends the opening handshake for `endpoint` over `stream` and reads the answer. The caller
/// bounds it with a timeout.
pub(crate) async fn upgrade<S>(
    mut stream: S,
    endpoint: &Endpoint,
    headers: &[(&str, &str)],
) -> Result<Upgrade<S>, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let key = generate_key();
    stream.write_all(&request(endpoint, &key, headers)?).await?;
    stream.flush().await?;
    let accept_key = derive_accept_key(key.as_bytes());
    let mut buf = Vec::with_capacity(1024);
    // On the heap: inline, these 4 KiB would stay part of the future of whatever awaits a
    // handshake, a forwarded connection's task for one, for its whole life.
    let mut chunk = vec![0u8; 4096];
    let head = loop {
        if let Some(head) = parse_head(&buf, &accept_key)? {
            break head;
        }
        let room = (MAX_HEAD - buf.len()).min(chunk.len());
        match stream.read(&mut chunk[..room]).await? {
            0 => return Err(HandshakeError::Eof),
            n => buf.extend_from_slice(&chunk[..n]),
        }
    };
    match head {
        Head::Switching { len, channel_id } => {
            let leftover = buf.split_off(len);
            Ok(Upgrade::Accepted { stream, leftover, channel_id })
        }
        Head::Refused { status, reason, content_length, len } => {
            let mut body = buf.split_off(len);
            let wanted = content_length.unwrap_or(0).min(MAX_BODY);
            while body.len() < wanted {
                let room = (wanted - body.len()).min(chunk.len());
                match stream.read(&mut chunk[..room]).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => body.extend_from_slice(&chunk[..n]),
                }
            }
            body.truncate(content_length.unwrap_or(body.len()).min(MAX_BODY));
            let description = description(status, &reason, &String::from_utf8_lossy(&body));
            Ok(Upgrade::Refused { status, description })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::DuplexStream;

    /// A forwarded connection's task awaits the handshake inline, and keeps what it holds inline
    /// for the connection's life.
    #[test]
    fn the_handshake_future_keeps_its_buffer_on_the_heap() {
        let (client, _relay) = tokio::io::duplex(64);
        let endpoint = endpoint();
        let upgrade = upgrade(client, &endpoint, &[]);
        assert!(std::mem::size_of_val(&upgrade) < 1024, "{}", std::mem::size_of_val(&upgrade));
    }

    fn endpoint() -> Endpoint {
        Endpoint { tls: true, host: "::1".into(), port: 7443, target: "/$hc/calc?sb-hc-action=connect".into() }
    }

    /// Reads the request on `server` and returns its key and raw text.
    async fn read_request(server: &mut DuplexStream) -> (String, String) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        while !buf.ends_with(b"\r\n\r\n") {
            let n = server.read(&mut chunk).await.unwrap();
            assert!(n > 0);
            buf.extend_from_slice(&chunk[..n]);
        }
        let text = String::from_utf8(buf).unwrap();
        let key = text.lines().find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ")).unwrap().to_owned();
        (key, text)
    }

    #[test]
    fn requests_carry_the_target_host_and_headers() {
        let request = request(&endpoint(), "k", &[("ServiceBusAuthorization", "SharedAccessSignature sr=a")]).unwrap();
        let text = String::from_utf8(request).unwrap();
        assert!(text.starts_with("GET /$hc/calc?sb-hc-action=connect HTTP/1.1\r\nHost: [::1]:7443\r\n"), "{text}");
        assert!(text.contains("\r\nSec-WebSocket-Key: k\r\n") && text.contains("\r\nSec-WebSocket-Version: 13\r\n"));
        assert!(text.ends_with("\r\nServiceBusAuthorization: SharedAccessSignature sr=a\r\n\r\n"), "{text}");
        let injected = super::request(&endpoint(), "k", &[("ServiceBusAuthorization", "t\r\nX-Evil: 1")]);
        assert!(matches!(injected, Err(HandshakeError::BadHeader(_))));
    }

    #[test]
    fn heads_parse_and_check_the_accept_key() {
        let ok = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Accept: abc\r\n\r\n\x82";
        assert_eq!(parse_head(ok, "abc").unwrap(), Some(Head::Switching { len: ok.len() - 1, channel_id: None }));
        let with_id = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Accept: abc\r\nRelay-Channel-Id: 42\r\n\r\n";
        assert_eq!(
            parse_head(with_id, "abc").unwrap(),
            Some(Head::Switching { len: with_id.len(), channel_id: Some(42) })
        );
        assert!(matches!(parse_head(ok, "xyz"), Err(HandshakeError::Malformed(_))));
        assert_eq!(parse_head(&ok[..20], "abc").unwrap(), None);
        let refused = b"HTTP/1.1 404 no listener on calc\r\nContent-Length: 3\r\n\r\nabc";
        assert_eq!(
            parse_head(refused, "abc").unwrap(),
            Some(Head::Refused { status: 404, reason: "no listener on calc".into(), content_length: Some(3), len: 55 })
        );
        assert!(matches!(parse_head(b"garbage\r\n\r\n", "abc"), Err(HandshakeError::Malformed(_))));
        let endless = [b"HTTP/1.1 200 OK\r\n".as_slice(), &b"X: y\r\n".repeat(MAX_HEAD / 6)].concat();
        assert!(matches!(parse_head(&endless, "abc"), Err(HandshakeError::Malformed(_))));
    }

    #[test]
    fn descriptions_come_from_the_reason_or_the_body() {
        assert_eq!(description(401, "missing token: none", "Unauthorized"), "missing token: none");
        assert_eq!(description(401, "Unauthorized", "missing token: none\n"), "missing token: none");
        assert_eq!(description(409, "Conflict", "the listener serves `Calc`"), "the listener serves `Calc`");
        assert_eq!(description(404, "no listener on calc", ""), "no listener on calc");
    }

    #[tokio::test]
    async fn upgrades_and_keeps_bytes_sent_with_the_answer() {
        let (client, mut server) = tokio::io::duplex(64 * 1024);
        let relay = tokio::spawn(async move {
            let (key, request) = read_request(&mut server).await;
            assert!(request.contains("\r\nRelay-Contract: Calc;1;\r\n"));
            let answer = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {}\r\n\r\n",
                derive_accept_key(key.as_bytes())
            );
            // The answer and the first frame (unmasked binary "hi") in one write.
            server.write_all(&[answer.as_bytes(), b"\x82\x02hi"].concat()).await.unwrap();
            server
        });
        let endpoint = endpoint();
        let upgraded = upgrade(client, &endpoint, &[("Relay-Contract", "Calc;1;")]);
        let Upgrade::Accepted { leftover, channel_id, .. } = upgraded.await.unwrap() else { panic!("refused") };
        assert_eq!((&leftover[..], channel_id), (&b"\x82\x02hi"[..], None));
        drop(relay.await.unwrap());
    }

    #[tokio::test]
    async fn refusals_keep_their_status_and_description() {
        for (answer, status, expected) in [
            (
                "HTTP/1.1 401 missing token: no token given\r\nContent-Length: 0\r\n\r\n",
                401,
                "missing token: no token given",
            ),
            ("HTTP/1.1 409 Conflict\r\nContent-Length: 12\r\n\r\nwrong method", 409, "wrong method"),
            ("HTTP/1.1 404 Not Found\r\n\r\n", 404, "Not Found"),
        ] {
            let (client, mut server) = tokio::io::duplex(64 * 1024);
            let relay = tokio::spawn(async move {
                read_request(&mut server).await;
                server.write_all(answer.as_bytes()).await.unwrap();
                server // Kept open: the client must not wait for the end of the stream.
            });
            let upgraded = upgrade(client, &endpoint(), &[]).await.unwrap();
            let Upgrade::Refused { status: s, description } = upgraded else { panic!("accepted") };
            assert_eq!((s, description.as_str()), (status, expected));
            drop(relay.await);
        }
        let (client, mut server) = tokio::io::duplex(1024);
        let relay = tokio::spawn(async move { read_request(&mut server).await });
        let err = upgrade(client, &endpoint(), &[]).await.unwrap_err();
        assert!(matches!(err, HandshakeError::Eof), "{err:?}");
        relay.await.unwrap();
    }
}
