//! The context of one call: its deadline.

use std::time::{Duration, Instant};

use crate::contract::MAX_DEADLINE;

/// How long a call may take when its context names no deadline.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The context a caller gives each call: when it must be answered by.
///
/// The deadline travels to the host, which cancels the handler when it passes; the caller gets
/// [`CallError::DeadlineExceeded`](crate::CallError::DeadlineExceeded).
///
/// ```
/// use std::time::Duration;
/// use relay_rpc::CallContext;
///
/// let ctx = CallContext::with_timeout(Duration::from_millis(500));
/// assert!(ctx.remaining() <= Duration::from_millis(500));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallContext {
    deadline: Instant,
}

impl Default for CallContext {
    /// A context whose deadline is [`DEFAULT_CALL_TIMEOUT`] from now.
    fn default() -> Self {
        Self::with_timeout(DEFAULT_CALL_TIMEOUT)
    }
}

impl CallContext {
    /// A context whose deadline is `timeout` from now, or a year from now if `timeout` is
    /// longer: hosts refuse deadlines further away (tarpc's timers cannot hold them).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use relay_rpc::CallContext;
    /// let forever = CallContext::with_timeout(Duration::MAX);
    /// assert!(forever.remaining() <= Duration::from_secs(365 * 24 * 3600));
    /// ```
    pub fn with_timeout(timeout: Duration) -> Self {
        Self::with_deadline(Instant::now() + timeout.min(MAX_DEADLINE))
    }

    /// A context with the given deadline, or a year from now if it is further away.
    pub fn with_deadline(deadline: Instant) -> Self {
        let latest = Instant::now() + MAX_DEADLINE;
        Self { deadline: deadline.min(latest) }
    }

    /// The deadline.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The time left until the deadline.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    pub(crate) fn to_tarpc(self) -> tarpc::context::Context {
        let mut ctx = tarpc::context::current();
        ctx.deadline = self.deadline;
        ctx
    }
}
