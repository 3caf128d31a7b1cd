//! Error codes: why a channel was refused, and why a stream or connection was cut.

use crate::auth::AuthFailure;

/// Why a relay or a listener refused to open a channel or register a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// No listener is registered on the address.
    NoListener,
    /// The caller's contract does not match the listener's.
    ContractMismatch,
    /// The request was malformed.
    BadRequest,
    /// A limit was reached; try again later.
    Busy,
    /// The relay is shutting down.
    ShuttingDown,
    /// The listener refused the channel for its own reasons.
    Rejected,
    /// Something failed inside the relay.
    Internal,
    /// The caller opened channels faster than the relay allows (a token bucket per caller
    /// connection, or per source IP on WebSocket); try again after a short wait.
    RateLimited,
    /// In a cluster: the node holding the address's listeners did not answer (it died, or is
    /// cut off); try again, as another node or a later try may reach one.
    Unreachable,
    /// The credential was refused, for the reason given.
    Auth(AuthFailure),
    /// A code this build does not know.
    Other(u16),
}

/// Every known refusal and its wire value: the one table both directions read. Values are
/// explicit and never reused; a new reason gets a new value.
const ERROR_CODES: [(ErrorCode, u16); 15] = [
    (ErrorCode::NoListener, 1),
    (ErrorCode::ContractMismatch, 3),
    (ErrorCode::BadRequest, 4),
    (ErrorCode::Busy, 5),
    (ErrorCode::ShuttingDown, 6),
    (ErrorCode::Rejected, 7),
    (ErrorCode::Internal, 8),
    (ErrorCode::RateLimited, 9),
    (ErrorCode::Unreachable, 10),
    (ErrorCode::Auth(AuthFailure::MissingToken), 20),
    (ErrorCode::Auth(AuthFailure::Malformed), 21),
    (ErrorCode::Auth(AuthFailure::BadSignature), 22),
    (ErrorCode::Auth(AuthFailure::Expired), 23),
    (ErrorCode::Auth(AuthFailure::WrongRight), 24),
    (ErrorCode::Auth(AuthFailure::OutOfScope), 25),
];

impl ErrorCode {
    /// The code's wire value.
    pub fn to_u16(self) -> u16 {
        match self {
            Self::Other(code) => code,
            known => ERROR_CODES.iter().find(|(c, _)| *c == known).map_or(0, |(_, v)| *v),
        }
    }

    /// The code for a wire value.
    pub fn from_u16(code: u16) -> Self {
        ERROR_CODES.iter().find(|(_, v)| *v == code).map_or(Self::Other(code), |(c, _)| *c)
    }
}

/// Why a stream (a channel) or a whole connection was cut, sent as the QUIC application error
/// code of `RESET_STREAM`, `STOP_SENDING` or `CONNECTION_CLOSE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StreamCode {
    /// A normal close.
    Done,
    /// The listener on the other end of the channel went away.
    ListenerGone,
    /// The caller on the other end of the channel went away.
    CallerGone,
    /// The relay is shutting down.
    RelayShutdown,
    /// A peer broke the protocol (garbage, oversized or truncated frames).
    ProtocolError,
    /// A handshake did not finish in time.
    HandshakeTimeout,
    /// The listener's token expired and was not renewed.
    TokenExpired,
    /// A renewed token was refused.
    Unauthorized,
    /// A multicast subscriber fell too far behind: its queue at the relay overflowed, so the relay
    /// cut its channel rather than slow the publisher or the other subscribers.
    Overflowed,
    /// A code this build does not know.
    Other(u64),
}

/// Every known stream code and its wire value: the one table both directions read.
const STREAM_CODES: [(StreamCode, u64); 9] = [
    (StreamCode::Done, 0),
    (StreamCode::ListenerGone, 0x10),
    (StreamCode::CallerGone, 0x11),
    (StreamCode::RelayShutdown, 0x12),
    (StreamCode::ProtocolError, 0x13),
    (StreamCode::HandshakeTimeout, 0x14),
    (StreamCode::TokenExpired, 0x15),
    (StreamCode::Unauthorized, 0x16),
    (StreamCode::Overflowed, 0x17),
];

impl StreamCode {
    /// The code's wire value.
    pub fn to_u64(self) -> u64 {
        match self {
            Self::Other(code) => code,
            known => STREAM_CODES.iter().find(|(c, _)| *c == known).map_or(0, |(_, v)| *v),
        }
    }

    /// The code for a wire value.
    pub fn from_u64(code: u64) -> Self {
        STREAM_CODES.iter().find(|(_, v)| *v == code).map_or(Self::Other(code), |(c, _)| *c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_code_has_its_own_wire_value() {
        for (i, (code, value)) in ERROR_CODES.iter().enumerate() {
            assert!(!matches!(code, ErrorCode::Other(_)));
            assert!(ERROR_CODES[..i].iter().all(|(c, v)| c != code && v != value), "{code:?} twice");
        }
        for failure in AuthFailure::ALL {
            assert!(ERROR_CODES.iter().any(|(c, _)| *c == ErrorCode::Auth(failure)), "{failure:?} has no wire value");
        }
        for (i, (code, value)) in STREAM_CODES.iter().enumerate() {
            assert!(!matches!(code, StreamCode::Other(_)));
            assert!(STREAM_CODES[..i].iter().all(|(c, v)| c != code && v != value), "{code:?} twice");
        }
        // Values on the wire since the first release.
        assert_eq!(ErrorCode::Auth(AuthFailure::Expired).to_u16(), 23);
        assert_eq!(StreamCode::Overflowed.to_u64(), 0x17);
    }

    #[test]
    fn codes_round_trip() {
        for code in 0..40 {
            assert_eq!(ErrorCode::from_u16(code).to_u16(), code);
        }
        for code in 0..40 {
            assert_eq!(StreamCode::from_u64(code).to_u64(), code);
        }
    }
}
