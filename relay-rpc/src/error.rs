//! The errors of connecting, listening, opening channels and calling.

use crate::auth::{AuthFailure, ProvideError};
use crate::channel::ChannelError;
use crate::tls::TlsError;
use crate::url::UrlError;
use relay_proto::{ErrorCode, ProtoError, Refusal};

/// Why a connection to a relay could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The relay URL is invalid.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// The TLS configuration is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The relay's host name did not resolve.
    #[error("cannot resolve {host}")]
    Resolve {
        /// The host name.
        host: String,
        /// The resolver's error.
        #[source]
        source: std::io::Error,
    },
    /// A local socket could not be opened.
    #[error("cannot open a local socket")]
    Socket(#[source] std::io::Error),
    /// The QUIC, TCP or TLS handshake failed (relay unreachable, certificate untrusted, ...).
    #[error("cannot connect to the relay: {0}")]
    Handshake(String),
    /// The handshake did not finish in time.
    #[error("connecting to the relay timed out")]
    Timeout,
}

/// Why a channel to an address could not be opened.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// No listener is registered on the address.
    #[error("no listener on {address:?}")]
    NoListener {
        /// The address.
        address: String,
    },
    /// The relay refused the credential.
    #[error("unauthorized ({reason}): {detail}")]
    Unauthorized {
        /// Why.
        reason: AuthFailure,
        /// Details for a human.
        detail: String,
    },
    /// No token could be had from the token provider.
    #[error(transparent)]
    Token(#[from] ProvideError),
    /// The listener serves a different contract, or a different version of it.
    #[error("contract mismatch: {0}")]
    ContractMismatch(String),
    /// Refused for another reason.
    #[error("refused ({code:?}): {detail}")]
    Refused {
        /// The code.
        code: ErrorCode,
        /// The detail.
        detail: String,
    },
    /// The address is not a valid address.
    #[error(transparent)]
    InvalidAddress(#[from] relay_proto::AddressError),
    /// The relay did not answer in time.
    #[error("opening the channel timed out")]
    Timeout,
    /// The connection to the relay is gone.
    #[error("connection to the relay lost: {0}")]
    ConnectionLost(String),
    /// The relay broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The channel's hello (address, token and contract) is larger than a relay reads from a
    /// peer it has not authorized yet ([`MAX_HELLO_FRAME`](relay_proto::MAX_HELLO_FRAME)): a
    /// contract of too many methods, or too long a token.
    #[error("the channel's hello of {len} bytes exceeds the limit of {max}")]
    HelloTooLarge {
        /// The hello's length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

impl OpenError {
    pub(crate) fn from_refusal(address: &str, refusal: Refusal) -> Self {
        match refusal.code {
            ErrorCode::NoListener => Self::NoListener { address: address.to_owned() },
            ErrorCode::Auth(reason) => Self::Unauthorized { reason, detail: refusal.detail },
            ErrorCode::ContractMismatch => Self::ContractMismatch(refusal.detail),
            code => Self::Refused { code, detail: refusal.detail },
        }
    }
}

impl From<ProtoError> for OpenError {
    fn from(e: ProtoError) -> Self {
        Self::Protocol(e.to_string())
    }
}

/// Why a host could not register, or stopped listening, on an address.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ListenError {
    /// The relay refused the credential.
    #[error("unauthorized ({reason}): {detail}")]
    Unauthorized {
        /// Why.
        reason: AuthFailure,
        /// Details for a human.
        detail: String,
    },
    /// No token could be had from the token provider.
    #[error(transparent)]
    Token(#[from] ProvideError),
    /// The listener's token expired before a renewed one was accepted; the relay ended the
    /// registration.
    #[error("the listener's token expired")]
    TokenExpired,
    /// The relay refused a renewed token and ended the registration.
    #[error("the relay refused the renewed token")]
    RenewalRefused,
    /// Refused for another reason.
    #[error("refused ({code:?}): {detail}")]
    Refused {
        /// The code.
        code: ErrorCode,
        /// The detail.
        detail: String,
    },
    /// The address is not a valid address.
    #[error(transparent)]
    InvalidAddress(#[from] relay_proto::AddressError),
    /// This host already listens on the address.
    #[error("already listening on {0:?}")]
    AlreadyListening(String),
    /// The relay did not answer in time.
    #[error("registering timed out")]
    Timeout,
    /// The connection to the relay is gone.
    #[error("connection to the relay lost: {0}")]
    ConnectionLost(String),
    /// The relay ended this registration.
    #[error("the relay ended the registration")]
    Closed,
    /// The relay is draining and asked this listener to register again, elsewhere or later.
    /// Channels already open keep running: [`Listener::serve`](crate::Listener::serve) lets them
    /// finish before it returns this, and [`Host::serve_online`](crate::Host::serve_online)
    /// registers again at once while they do.
    #[error("the relay is draining: register elsewhere")]
    GoAway,
    /// The relay broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl From<ProtoError> for ListenError {
    fn from(e: ProtoError) -> Self {
        Self::Protocol(e.to_string())
    }
}

/// Why a call failed. The service's own error, if its method returns `Result<T, E>`, is not a
/// `CallError`: it arrives as the `Ok` value, `Ok(Err(e))`.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The call's deadline passed before an answer came; the host was told to cancel it.
    #[error("deadline exceeded")]
    DeadlineExceeded,
    /// The channel broke: the listener went away, the relay shut down, the connection was lost.
    #[error("channel broken")]
    Disconnected(#[from] ChannelError),
    /// The channel could not be opened (no listener, unauthorized, ...).
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The host gave up on the call (its handler was aborted).
    #[error("the host aborted the call: {0}")]
    Aborted(String),
    /// The host answered with something the contract does not allow.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A request or response of this method could not be decoded: the peer sent a message its
    /// contract does not allow (a malformed frame, or types that differ in a way the contract
    /// check could not see, such as two types the shape tracer knows only by name). The channel
    /// stays usable for the next call.
    #[error("cannot decode the {part} of `{contract}.{method}`: {detail}")]
    Undecodable {
        /// The contract's name.
        contract: String,
        /// The method called.
        method: String,
        /// Which message could not be decoded: the host's ([`MessagePart::Request`]) or
        /// this side's ([`MessagePart::Response`]).
        part: MessagePart,
        /// What the decoder said.
        detail: String,
    },
    /// The host serves an older (or other) version of the contract, without this method. The
    /// channel stays usable for the methods the host has.
    #[error("the listener's `{contract}` has no method `{method}`")]
    UnknownMethod {
        /// The contract's name.
        contract: String,
        /// The method called.
        method: String,
    },
}

/// Which message of a call [`CallError::Undecodable`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessagePart {
    /// The request, which the host could not decode.
    Request,
    /// The response, which the caller could not decode.
    Response,
}

impl std::fmt::Display for MessagePart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Request => "request",
            Self::Response => "response",
        })
    }
}

impl CallError {
    /// Whether the call failed because no listener was, or still is, behind the address.
    pub fn is_listener_gone(&self) -> bool {
        matches!(self, Self::Disconnected(ChannelError::ListenerGone) | Self::Open(OpenError::NoListener { .. }))
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error;
    use std::io;
    use std::sync::Arc;

    use super::*;
    use relay_proto::error::chain;

    /// Fails if a message in `error`'s chain repeats the message of its source: anyhow and
    /// [`chain`] print each cause after the message, so it would be said twice.
    fn assert_each_cause_said_once(error: &(dyn Error + 'static)) {
        let mut level = Some(error);
        while let Some(e) = level {
            if let Some(source) = e.source() {
                let (message, cause) = (e.to_string(), source.to_string());
                assert!(!message.contains(&cause), "{message:?} repeats its source {cause:?}");
            }
            level = e.source();
        }
    }

    #[test]
    fn messages_leave_their_causes_to_the_chain() {
        let resolve = ConnectError::Resolve { host: "relay.invalid".into(), source: io::Error::other("no such host") };
        assert_eq!(resolve.to_string(), "cannot resolve relay.invalid");
        assert_eq!(chain(&resolve).to_string(), "cannot resolve relay.invalid: no such host");
        let io = || io::Error::other("broken pipe");
        let rustls = |why: &str| rustls::Error::General(why.into());
        let errors: [Box<dyn Error>; 5] = [
            Box::new(resolve),
            Box::new(ConnectError::Socket(io())),
            Box::new(ConnectError::Tls(TlsError::Config(rustls("no cipher suites")))),
            Box::new(TlsError::BadCertificate { path: "ca.pem".into(), source: rustls("not a CA") }),
            Box::new(CallError::Disconnected(ChannelError::Io(Arc::new(io())))),
        ];
        for e in &errors {
            assert_each_cause_said_once(&**e);
            assert!(e.source().is_some(), "{e:?} has a cause");
        }
        assert_eq!(chain(&*errors[4]).to_string(), "channel broken: i/o error: broken pipe");
    }
}
