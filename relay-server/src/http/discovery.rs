//! `GET https://{relay}/$discovery`: the addresses marked `discoverable`, each with its listener
//! count (here and, in a cluster, on the other nodes) and the contract its hosts serve, for a
//! caller whose send token covers them (WCF Relay's service registry, as JSON).
//!
//! The relay keeps no schemas: a contract's description comes from a host of the address that
//! takes HTTP requests, asked for `GET /{address}/` (which a served contract answers with its name,
//! fingerprint and methods), so it is always the one served now. Addresses without such a host
//! are listed with their listener count only.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use relay_proto::auth::{Right, unix_now};
use serde::Serialize;

use super::forward::{Refused, refused};
use super::{Answer, full, over_channel};
use crate::state::Shared;

/// The path of the listing.
pub(super) const PATH: &str = "/$discovery";

/// The longest description a host may give.
const MAX_DESCRIPTION: usize = 256 * 1024;

/// How long a host may take to describe its contract.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(3);

/// One address, as listed.
#[derive(Debug, Serialize)]
struct Listed {
    address: String,
    listeners: u64,
    /// What `GET /{address}/` answered: `contract`, `fingerprint`, `methods`.
    #[serde(skip_serializing_if = "Option::is_none")]
    contract: Option<serde_json::Value>,
}

/// Answers the listing for a caller presenting `token`: the discoverable addresses it may send
/// to. Without any, 401 (no token) or 403 (a token for none of them).
pub(super) async fn answer(shared: &Arc<Shared>, token: Option<&str>) -> Result<Answer, Refused> {
    let now = unix_now();
    let mut denied = None;
    let mut visible = Vec::new();
    let live = shared.live();
    for address in live.config.discoverable() {
        match live.policy.authorize(token, Right::Send, address, now) {
            Ok(_) => visible.push(address.to_owned()),
            Err(why) => denied = Some(why),
        }
    }
    if visible.is_empty()
        && let Some(denied) = denied
    {
        shared.metrics.auth_failure(denied.reason);
        let status = if token.is_none() { 401 } else { 403 };
        return Err(refused(status, denied.detail));
    }
    drop(live);
    let mut listed = Vec::with_capacity(visible.len());
    for address in visible {
        let here = shared.registry().listeners(&address) as u64;
        let elsewhere = shared.peers().map_or(0, |peers| u64::from(peers.view().remote_listeners(&address)));
        let contract = if here + elsewhere > 0 { describe(shared, &address).await } else { None };
        listed.push(Listed { address, listeners: here + elsewhere, contract });
    }
    let body = serde_json::to_vec(&serde_json::json!({ "addresses": listed })).unwrap_or_default();
    let mut response = Response::new(full(Bytes::from(body)));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

/// The contract a host of `address` describes, if one that takes HTTP requests does.
async fn describe(shared: &Arc<Shared>, address: &str) -> Option<serde_json::Value> {
    if !shared.takes_http_channels(address) && shared.peers().is_none() {
        return None;
    }
    let (status, body) =
        over_channel::fetch(shared, address, format!("/{address}/"), (MAX_DESCRIPTION, DESCRIBE_TIMEOUT)).await?;
    let description: serde_json::Value = serde_json::from_slice(&body).ok()?;
    (status == 200 && description.get("contract").is_some_and(serde_json::Value::is_string)).then_some(description)
}
