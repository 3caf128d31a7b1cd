//! Showing an error together with its causes.
//!
//! The workspace's errors say only what failed at their own level: a message never repeats its
//! [`source`](Error::source), which `anyhow` (and [`chain`]) print after it. So wherever an error
//! is shown on its own, in a log line, an `eprintln!` or another error's detail string, show
//! [`chain`]`(&e)` rather than `e`, or the cause is lost.

use std::error::Error;
use std::fmt;

/// `error` and its causes, one after the other: `cannot bind 0.0.0.0:443: permission denied`.
///
/// ```
/// use std::io;
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("cannot read {path}")]
/// struct ReadError {
///     path: String,
///     source: io::Error,
/// }
///
/// let e = ReadError { path: "relay.toml".into(), source: io::Error::other("permission denied") };
/// assert_eq!(e.to_string(), "cannot read relay.toml");
/// assert_eq!(relay_proto::error::chain(&e).to_string(), "cannot read relay.toml: permission denied");
/// ```
pub fn chain<'a>(error: &'a (dyn Error + 'a)) -> impl fmt::Display + 'a {
    Chain(error)
}

struct Chain<'a>(&'a (dyn Error + 'a));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(e) = cause {
            write!(f, ": {e}")?;
            cause = e.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::chain;
    use std::io;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("middle")]
    struct Middle(#[source] io::Error);

    #[test]
    fn every_cause_follows_the_message_once() {
        let e = Outer(Middle(io::Error::other("inner")));
        assert_eq!(chain(&e).to_string(), "outer: middle: inner");
    }

    #[test]
    fn an_error_without_a_cause_is_its_message() {
        assert_eq!(chain(&io::Error::other("alone")).to_string(), "alone");
    }
}
