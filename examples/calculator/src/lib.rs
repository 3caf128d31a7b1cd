//! The calculator contract, shared by `calculator-host` and `calculator-client`, and the
//! options both binaries take.
//!
//! How to run, from the repository root, each in its own terminal:
//! ```text
//! cargo run --release -p relay-server
//! cargo run --release -p calculator --bin calculator-host -- --relay quic://127.0.0.1:7443 --address calc
//! cargo run --release -p calculator --bin calculator-client -- --relay quic://127.0.0.1:7443 --address calc add 2 3
//! ```

use std::path::PathBuf;

use relay_rpc::ConnectOptions;
use relay_rpc::auth::SharedAccessKey;
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

/// How both binaries reach the relay.
#[derive(Debug, clap::Args)]
pub struct RelayArgs {
    /// The relay's URL.
    #[arg(long, env = "RELAY_URL", default_value = "quic://127.0.0.1:7443")]
    pub relay: String,
    /// The address to listen on or call.
    #[arg(long, default_value = "calc")]
    pub address: String,
    /// The certificate (or CA) to trust for the relay [default: relay-data/cert.pem].
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// A SAS token to present to the relay. Without one, the tool signs its own with the root
    /// key in the relay's data directory, if it runs beside it.
    #[arg(long, env = "RELAY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The relay's data directory, for the default certificate and root key.
    #[arg(long, value_name = "DIR", default_value = "relay-data")]
    pub data_dir: PathBuf,
}

impl RelayArgs {
    /// The connect options these arguments describe.
    pub fn options(&self) -> anyhow::Result<ConnectOptions> {
        use anyhow::Context as _;
        let ca = self.ca.clone().unwrap_or_else(|| self.data_dir.join("cert.pem"));
        let options = ConnectOptions::new()
            .trust_pem_file(&ca)
            .with_context(|| format!("cannot trust {} (is the relay running here? else pass --ca)", ca.display()))?;
        let root_key = self.data_dir.join("root.key");
        Ok(match &self.token {
            Some(token) => options.with_token(token),
            None if root_key.exists() => options.with_shared_access_key(SharedAccessKey::from_file(&root_key)?),
            None => options,
        })
    }
}
