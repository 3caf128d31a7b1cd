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
    /// The credential was refused, for the reason given.
    Auth(AuthFailure),
    /// A code this build does not know.
    Other(u16),
}

const AUTH_BASE: u16 = 20;

impl ErrorCode {
    /// The code's wire value.
    pub fn to_u16(self) -> u16 {
        match self {
            Self::NoListener => 1,
            Self::ContractMismatch => 3,
            Self::BadRequest => 4,
            Self::Busy => 5,
            Self::ShuttingDown => 6,
            Self::Rejected => 7,
            Self::Internal => 8,
            Self::RateLimited => 9,
            Self::Auth(failure) => AUTH_BASE + AuthFailure::ALL.iter().position(|f| *f == failure).unwrap_or(0) as u16,
            Self::Other(code) => code,
        }
    }

    /// The code for a wire value.
    pub fn from_u16(code: u16) -> Self {
        match code {
            1 => Self::NoListener,
            3 => Self::ContractMismatch,
            4 => Self::BadRequest,
            5 => Self::Busy,
            6 => Self::ShuttingDown,
            7 => Self::Rejected,
            8 => Self::Internal,
            9 => Self::RateLimited,
            code if (AUTH_BASE..AUTH_BASE + AuthFailure::ALL.len() as u16).contains(&code) => {
                Self::Auth(AuthFailure::ALL[(code - AUTH_BASE) as usize])
            }
            other => Self::Other(other),
        }
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

impl StreamCode {
    /// The code's wire value.
    pub fn to_u64(self) -> u64 {
        match self {
            Self::Done => 0,
            Self::ListenerGone => 0x10,
            Self::CallerGone => 0x11,
            Self::RelayShutdown => 0x12,
            Self::ProtocolError => 0x13,
            Self::HandshakeTimeout => 0x14,
            Self::TokenExpired => 0x15,
            Self::Unauthorized => 0x16,
            Self::Overflowed => 0x17,
            Self::Other(code) => code,
        }
    }

    /// The code for a wire value.
    pub fn from_u64(code: u64) -> Self {
        match code {
            0 => Self::Done,
            0x10 => Self::ListenerGone,
            0x11 => Self::CallerGone,
            0x12 => Self::RelayShutdown,
            0x13 => Self::ProtocolError,
            0x14 => Self::HandshakeTimeout,
            0x15 => Self::TokenExpired,
            0x16 => Self::Unauthorized,
            0x17 => Self::Overflowed,
            other => Self::Other(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
