//! Waiting for a deadline that may not exist: what the drivers' `select!` loops wait on.

use std::time::Instant;

/// Sleeps until `wake`, or for ever when there is none.
pub(crate) async fn sleep_until(wake: Option<Instant>) {
    match wake {
        Some(wake) => tokio::time::sleep_until(wake.into()).await,
        None => std::future::pending().await,
    }
}
