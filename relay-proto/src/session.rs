//! A listener's registration as the relay holds it, sans-IO: when its token lapses, what a
//! renewal does, when to tell it to go elsewhere, and (where the transport has no liveness of its
//! own) when to ping it and when to give it up as silent.
//!
//! The relay's QUIC and WebSocket drivers both run one: they feed it what happened (a renewal's
//! outcome, a frame heard, the relay starting to drain) and the time, and do what it says. The
//! decisions are made here once, and tested without sockets or clocks.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use relay_proto::session::{Ending, ListenerSession, Next};
//!
//! let start = Instant::now();
//! // A token valid until unix second 1_000, seen at unix second 990.
//! let mut session = ListenerSession::new(Some(1_000));
//! assert_eq!(session.next(start, 990), Next::WaitUntil(Some(start + Duration::from_secs(11))));
//! session.renewed(Some(2_000));
//! assert_eq!(session.next(start, 1_500), Next::WaitUntil(Some(start + Duration::from_secs(501))));
//! assert_eq!(session.next(start, 2_001), Next::End(Ending::TokenExpired));
//! ```

use std::time::{Duration, Instant};

use crate::auth::AuthFailure;
use crate::codes::StreamCode;
use crate::hc::{CLOSE_GOING_AWAY, CLOSE_POLICY};

/// Why the relay ends a listener's registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Its token lapsed and no renewal came in time.
    TokenExpired,
    /// It sent a renewed token the relay refused, for this reason.
    RenewalRefused(AuthFailure),
    /// It sent something on its control channel that is not a control message.
    BadControl,
    /// It was silent for longer than the idle timeout.
    Silent,
}

impl Ending {
    /// The code a QUIC control stream is cut with.
    pub fn stream_code(self) -> StreamCode {
        match self {
            Self::TokenExpired => StreamCode::TokenExpired,
            Self::RenewalRefused(_) => StreamCode::Unauthorized,
            Self::BadControl => StreamCode::ProtocolError,
            Self::Silent => StreamCode::ListenerGone,
        }
    }

    /// The code a Hybrid Connections control WebSocket is closed with: a policy close for token
    /// trouble (as Azure does), going-away for silence.
    pub fn close_code(self) -> u16 {
        match self {
            Self::TokenExpired | Self::RenewalRefused(_) | Self::BadControl => CLOSE_POLICY,
            Self::Silent => CLOSE_GOING_AWAY,
        }
    }
}

/// What a driver does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Wait for an event, or until this instant (`None`: no deadline), then ask again.
    WaitUntil(Option<Instant>),
    /// Ping the listener (the transport's own ping), then ask again.
    Ping,
    /// Tell the listener to register elsewhere: the relay is draining. Its channels run on.
    GoAway,
    /// End the registration.
    End(Ending),
}

/// How a session watches a listener that the transport does not watch itself (a WebSocket; a
/// QUIC connection has its own keep-alive and idle timeout).
#[derive(Debug, Clone, Copy)]
struct Liveness {
    keep_alive: Duration,
    idle_timeout: Duration,
    last_heard: Instant,
    next_ping: Instant,
}

/// One listener's registration, from its accepted hello until it ends. See the module docs.
#[derive(Debug, Clone)]
pub struct ListenerSession {
    /// When its token lapses (unix seconds); `None`: never (an anonymous address).
    expiry: Option<u64>,
    liveness: Option<Liveness>,
    draining: bool,
    told_to_go: bool,
    ended: Option<Ending>,
}

impl ListenerSession {
    /// A registration whose token lapses after unix second `expiry` (`None`: never).
    pub fn new(expiry: Option<u64>) -> Self {
        Self { expiry, liveness: None, draining: false, told_to_go: false, ended: None }
    }

    /// Also pings the listener every `keep_alive` and gives it up once nothing was heard from it
    /// for `idle_timeout`, counting from `now`.
    pub fn with_liveness(mut self, keep_alive: Duration, idle_timeout: Duration, now: Instant) -> Self {
        self.liveness = Some(Liveness { keep_alive, idle_timeout, last_heard: now, next_ping: later(now, keep_alive) });
        self
    }

    /// Something arrived from the listener at `now`: it is alive.
    pub fn heard(&mut self, now: Instant) {
        if let Some(liveness) = &mut self.liveness {
            liveness.last_heard = liveness.last_heard.max(now);
        }
    }

    /// A renewed token was authorized, lasting until `expiry` (`None`: never lapses).
    pub fn renewed(&mut self, expiry: Option<u64>) {
        self.expiry = expiry;
    }

    /// A renewed token was refused: the registration ends.
    pub fn renewal_refused(&mut self, reason: AuthFailure) {
        self.end(Ending::RenewalRefused(reason));
    }

    /// The listener sent something that is not a control message: the registration ends.
    pub fn bad_control(&mut self) {
        self.end(Ending::BadControl);
    }

    /// The relay started draining: the listener is told to go elsewhere, once.
    pub fn draining(&mut self) {
        self.draining = true;
    }

    /// Whether the listener has been told to go elsewhere (a driver stops watching for the drain).
    pub fn told_to_go(&self) -> bool {
        self.told_to_go
    }

    fn end(&mut self, ending: Ending) {
        self.ended.get_or_insert(ending);
    }

    /// What to do at `now` (unix second `unix_now`): the first of ending, telling the listener to
    /// go, pinging, or waiting until the next deadline.
    pub fn next(&mut self, now: Instant, unix_now: u64) -> Next {
        if let Some(ending) = self.ended {
            return Next::End(ending);
        }
        // A token lapses after its expiry second has passed.
        if self.expiry.is_some_and(|expiry| unix_now > expiry) {
            self.end(Ending::TokenExpired);
            return Next::End(Ending::TokenExpired);
        }
        if self.draining && !self.told_to_go {
            self.told_to_go = true;
            return Next::GoAway;
        }
        let lapse = self.expiry.map(|expiry| later(now, Duration::from_secs(expiry.saturating_add(1) - unix_now)));
        let Some(liveness) = &mut self.liveness else { return Next::WaitUntil(lapse) };
        if now.saturating_duration_since(liveness.last_heard) >= liveness.idle_timeout {
            self.end(Ending::Silent);
            return Next::End(Ending::Silent);
        }
        if now >= liveness.next_ping {
            liveness.next_ping = later(now, liveness.keep_alive);
            return Next::Ping;
        }
        let silent_at = later(liveness.last_heard, liveness.idle_timeout);
        let wake = [Some(liveness.next_ping), Some(silent_at), lapse].into_iter().flatten().min();
        Next::WaitUntil(wake)
    }
}

/// `at + after`, or as far ahead as an `Instant` goes (a deadline that never comes in practice).
fn later(at: Instant, after: Duration) -> Instant {
    at.checked_add(after).unwrap_or_else(|| at + Duration::from_secs(u64::from(u32::MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn a_token_lapses_after_its_expiry_second_unless_renewed() {
        let t0 = Instant::now();
        let mut session = ListenerSession::new(Some(100));
        assert_eq!(session.next(t0, 100), Next::WaitUntil(Some(t0 + SEC)), "valid through second 100");
        session.renewed(Some(200));
        assert_eq!(session.next(t0, 101), Next::WaitUntil(Some(t0 + 100 * SEC)));
        assert_eq!(session.next(t0, 201), Next::End(Ending::TokenExpired));
        session.renewed(Some(300));
        assert_eq!(session.next(t0, 201), Next::End(Ending::TokenExpired), "an ended session stays ended");
    }

    #[test]
    fn an_anonymous_registration_never_lapses() {
        let t0 = Instant::now();
        assert_eq!(ListenerSession::new(None).next(t0, u64::MAX), Next::WaitUntil(None));
    }

    #[test]
    fn a_refused_renewal_or_a_bad_message_ends_it_with_its_reason() {
        let t0 = Instant::now();
        let mut session = ListenerSession::new(Some(100));
        session.renewal_refused(AuthFailure::BadSignature);
        session.bad_control();
        assert_eq!(session.next(t0, 0), Next::End(Ending::RenewalRefused(AuthFailure::BadSignature)));
        let mut session = ListenerSession::new(None);
        session.bad_control();
        assert_eq!(session.next(t0, 0), Next::End(Ending::BadControl));
    }

    #[test]
    fn a_draining_relay_tells_the_listener_to_go_once() {
        let t0 = Instant::now();
        let mut session = ListenerSession::new(None);
        session.draining();
        assert_eq!(session.next(t0, 0), Next::GoAway);
        assert!(session.told_to_go());
        session.draining();
        assert_eq!(session.next(t0, 0), Next::WaitUntil(None));
    }

    #[test]
    fn pings_every_keep_alive_and_gives_up_a_silent_listener() {
        let t0 = Instant::now();
        let mut session = ListenerSession::new(None).with_liveness(2 * SEC, 5 * SEC, t0);
        assert_eq!(session.next(t0, 0), Next::WaitUntil(Some(t0 + 2 * SEC)));
        assert_eq!(session.next(t0 + 2 * SEC, 0), Next::Ping);
        assert_eq!(session.next(t0 + 2 * SEC, 0), Next::WaitUntil(Some(t0 + 4 * SEC)));
        session.heard(t0 + 3 * SEC);
        assert_eq!(session.next(t0 + 4 * SEC, 0), Next::Ping);
        assert_eq!(session.next(t0 + 7 * SEC, 0), Next::Ping);
        assert_eq!(session.next(t0 + 7 * SEC, 0), Next::WaitUntil(Some(t0 + 8 * SEC)), "silent at 3 + 5");
        assert_eq!(session.next(t0 + 8 * SEC, 0), Next::End(Ending::Silent));
    }

    #[test]
    fn the_earliest_deadline_wakes_the_driver() {
        let t0 = Instant::now();
        let mut session = ListenerSession::new(Some(10)).with_liveness(30 * SEC, 60 * SEC, t0);
        assert_eq!(session.next(t0, 0), Next::WaitUntil(Some(t0 + 11 * SEC)), "the lapse comes before the ping");
    }

    #[test]
    fn huge_expiries_and_timers_do_not_overflow() {
        let t0 = Instant::now();
        let mut session = ListenerSession::new(Some(u64::MAX)).with_liveness(Duration::MAX, Duration::MAX, t0);
        assert!(matches!(session.next(t0, 0), Next::WaitUntil(Some(_))));
        session.heard(t0 + SEC);
        assert!(matches!(session.next(t0 + SEC, u64::MAX), Next::WaitUntil(Some(_))));
    }

    #[test]
    fn endings_map_to_each_transports_code() {
        assert_eq!(Ending::TokenExpired.stream_code(), StreamCode::TokenExpired);
        assert_eq!(Ending::RenewalRefused(AuthFailure::Expired).stream_code(), StreamCode::Unauthorized);
        assert_eq!(Ending::TokenExpired.close_code(), CLOSE_POLICY);
        assert_eq!(Ending::Silent.close_code(), CLOSE_GOING_AWAY);
    }
}
