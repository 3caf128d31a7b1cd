//! The calculator contract, shared by `calculator-host` and `calculator-client`, and the
//! options both binaries take.
//!
//! How to run, from the repository root, each in its own terminal:
//! ```text
//! cargo run --release -p relay-server
//! cargo run --release -p calculator --bin calculator-host -- --relay quic://127.0.0.1:7443 --address calc
//! cargo run --release -p calculator --bin calculator-client -- --relay quic://127.0.0.1:7443 --address calc add 2 3
//! ```
//!
//! `--relay` takes several URLs too, comma-separated (`--relay quic://node1:7443,quic://node2:7443`,
//! the nodes of a cluster): the host registers on one at random and moves to another when its
//! relay dies or drains; the client calls through the first that answers, in a random order.

use serde::{Deserialize, Serialize};

/// The calculator's own errors: they reach the caller as this type, not as a relay error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum MathError {
    /// The divisor was zero.
    #[error("division by zero")]
    DivisionByZero,
    /// The result does not fit in an `i64`.
    #[error("overflow")]
    Overflow,
}

/// A calculator, served through a relay.
#[relay_rpc::relay_service]
pub trait Calculator {
    /// `a + b`, wrapping on overflow.
    async fn add(a: i64, b: i64) -> i64;
    /// `a - b`, or [`MathError::Overflow`].
    async fn subtract(a: i64, b: i64) -> Result<i64, MathError>;
    /// `a * b`, or [`MathError::Overflow`].
    async fn multiply(a: i64, b: i64) -> Result<i64, MathError>;
    /// `a / b`, or [`MathError::DivisionByZero`].
    async fn divide(a: i64, b: i64) -> Result<i64, MathError>;
}

/// The calculator's implementation.
#[derive(Debug, Clone, Copy, Default)]
pub struct Calc;

impl Calculator for Calc {
    async fn add(&self, a: i64, b: i64) -> i64 {
        a.wrapping_add(b)
    }

    async fn subtract(&self, a: i64, b: i64) -> Result<i64, MathError> {
        a.checked_sub(b).ok_or(MathError::Overflow)
    }

    async fn multiply(&self, a: i64, b: i64) -> Result<i64, MathError> {
        a.checked_mul(b).ok_or(MathError::Overflow)
    }

    async fn divide(&self, a: i64, b: i64) -> Result<i64, MathError> {
        if b == 0 {
            return Err(MathError::DivisionByZero);
        }
        a.checked_div(b).ok_or(MathError::Overflow)
    }
}

/// How both binaries reach the relay: `--relay` (one URL or a comma-separated list), `--address`, `--ca`, `--token`/`RELAY_TOKEN` and
/// `--data-dir`, shared with the `relay` forwarding tool. Without a token they sign their own with
/// the root key in the relay's data directory, so they work beside `./relay-data` as they are.
pub use relay_forward::RelayArgs;
