//! What Hybrid Connections' HTTP statuses and WebSocket close codes mean to hosts and callers,
//! sans-IO: each maps to the same typed error the QUIC transport gives.

use crate::auth::AuthFailure;
use crate::channel::ChannelError;
use crate::error::ListenError;
use crate::transport::Role;
use relay_proto::StreamCode;
use relay_proto::hc::{self, CLOSE_ERROR, CLOSE_GOING_AWAY, CLOSE_NORMAL, CLOSE_POLICY, CLOSE_RESTART, ChannelEnd};
use relay_proto::{ErrorCode, Refusal};

/// The refusal a handshake's HTTP status and description stand for. An authorization failure's
/// reason prefix (`"missing token: …"`) becomes the code and leaves the detail.
pub(crate) fn refusal(status: u16, description: &str) -> Refusal {
    let code = hc::error_code(status, description);
    let detail = match code {
        ErrorCode::Auth(reason) => description
            .strip_prefix(reason.as_str())
            .map_or(description, |rest| rest.trim_start_matches(':').trim_start()),
        _ => description,
    };
    Refusal { code, detail: detail.to_owned() }
}

/// Why the relay refused a listener's rendezvous: an unknown or expired rendezvous means the
/// sender gave up waiting.
pub(crate) fn rendezvous_refused(status: u16, description: &str) -> ChannelError {
    match status {
        403 | 404 | 410 => ChannelError::CallerGone,
        _ => ChannelError::Protocol(format!("the relay refused the rendezvous: {status} {description}")),
    }
}

/// Why a channel's WebSocket was closed with `code` (`None`: no code), seen from `role`'s end;
/// `None` for a normal close.
pub(crate) fn channel_closed(role: Role, code: Option<u16>, reason: &str) -> Option<ChannelError> {
    let closed_by = match role {
        Role::Caller => ChannelEnd::Listener,
        Role::Host => ChannelEnd::Sender,
    };
    match hc::close_to_stream_code(code, closed_by)? {
        StreamCode::ProtocolError => {
            let code = code.unwrap_or_default();
            Some(ChannelError::Protocol(format!("channel closed with code {code}: {reason}")))
        }
        stream_code => Some(ChannelError::from_code(stream_code)),
    }
}

/// Why the relay closed a listener's control channel with `code` (`None`: no code). A policy
/// close is an expired token, unless its reason names another authorization failure: then the
/// relay refused a renewed token.
pub(crate) fn listener_closed(code: Option<u16>, reason: &str) -> ListenError {
    match code {
        Some(CLOSE_POLICY) => match AuthFailure::from_description(reason) {
            Some(AuthFailure::Expired) | None => ListenError::TokenExpired,
            Some(_) => ListenError::RenewalRefused,
        },
        // A draining relay closes listeners' control channels with 1012 while their channels run on.
        Some(CLOSE_RESTART) => ListenError::GoAway,
        Some(CLOSE_ERROR) => ListenError::ConnectionLost(format!("relay error: {reason}")),
        None | Some(CLOSE_NORMAL | CLOSE_GOING_AWAY) => ListenError::Closed,
        Some(code) => ListenError::Protocol(format!("control channel closed with code {code}: {reason}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_become_the_refusals_quic_gives() {
        let r = refusal(401, &hc::status_description(ErrorCode::Auth(AuthFailure::MissingToken), "no token given"));
        assert_eq!((r.code, r.detail.as_str()), (ErrorCode::Auth(AuthFailure::MissingToken), "no token given"));
        let r = refusal(403, &hc::status_description(ErrorCode::Auth(AuthFailure::OutOfScope), "x"));
        assert_eq!((r.code, r.detail.as_str()), (ErrorCode::Auth(AuthFailure::OutOfScope), "x"));
        assert_eq!(refusal(404, "no listener on calc").code, ErrorCode::NoListener);
        assert_eq!(refusal(409, "the listener serves `Calculator`").detail, "the listener serves `Calculator`");
        assert_eq!(refusal(409, "").code, ErrorCode::ContractMismatch);
        assert_eq!(refusal(403, "go away").code, ErrorCode::Rejected);
        assert_eq!(refusal(418, "teapot").code, ErrorCode::Rejected);
        assert_eq!(refusal(503, "listener is busy").code, ErrorCode::Busy);
        assert_eq!(refusal(503, "relay is shutting down").code, ErrorCode::ShuttingDown);
        assert!(matches!(rendezvous_refused(410, "Gone"), ChannelError::CallerGone));
        assert!(matches!(rendezvous_refused(500, "oops"), ChannelError::Protocol(_)));
    }

    #[test]
    fn close_codes_become_channel_errors_by_side() {
        assert!(channel_closed(Role::Caller, Some(CLOSE_NORMAL), "").is_none());
        assert!(channel_closed(Role::Host, None, "").is_none());
        assert!(matches!(channel_closed(Role::Caller, Some(CLOSE_GOING_AWAY), ""), Some(ChannelError::ListenerGone)));
        assert!(matches!(channel_closed(Role::Host, Some(CLOSE_GOING_AWAY), ""), Some(ChannelError::CallerGone)));
        assert!(matches!(channel_closed(Role::Caller, Some(CLOSE_RESTART), ""), Some(ChannelError::RelayShutdown)));
        assert!(
            matches!(channel_closed(Role::Host, Some(1011), "boom"), Some(ChannelError::Protocol(d)) if d.contains("1011: boom"))
        );
    }

    #[test]
    fn close_codes_become_listen_errors() {
        assert!(matches!(listener_closed(Some(CLOSE_POLICY), "token expired: at 12"), ListenError::TokenExpired));
        assert!(matches!(listener_closed(Some(CLOSE_POLICY), ""), ListenError::TokenExpired));
        assert!(matches!(listener_closed(Some(CLOSE_POLICY), "bad signature: renewal"), ListenError::RenewalRefused));
        assert!(matches!(listener_closed(Some(CLOSE_RESTART), ""), ListenError::GoAway));
        assert!(matches!(listener_closed(Some(CLOSE_NORMAL), ""), ListenError::Closed));
        assert!(matches!(listener_closed(Some(CLOSE_GOING_AWAY), "address removed"), ListenError::Closed));
        assert!(matches!(listener_closed(Some(4000), "x"), ListenError::Protocol(_)));
    }
}
