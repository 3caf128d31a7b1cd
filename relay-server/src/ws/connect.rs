//! A Hybrid Connections sender: authorize, route to a listener, answer the handshake with the
//! listener's answer, then splice.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use relay_proto::auth::unix_now;
use relay_proto::hc::{CONTRACT_HEADER, TOKEN_HEADER, address_prefixes, http_status, status_description};
use relay_proto::{ContractInfo, ErrorCode};
use tracing::Instrument;

use super::{Request, unbox};
use crate::channel::{End, splice};
use crate::limits::ChannelQuota;
use crate::metrics::{OpenResult, Transport};
use crate::multicast;
use crate::router::{ChannelRequest, Opened, channel_span, route};
use crate::state::{ChannelGuard, Shared};

/// Serves a sender's connection: routes it, then serves its channel.
///
/// A channel's task is sized for the largest state it may be in and lives as long as the channel,
/// so routing (and refusing) runs in a future of its own, boxed and gone once it has answered;
/// only what the channel needs stays. `request` comes boxed for the same reason: an async fn
/// keeps its arguments for its whole life.
pub(crate) async fn serve(shared: &Arc<Shared>, request: Box<Request>) {
    if let Some(routed) = Box::pin(open(shared, unbox(request))).await {
        serve_channel(shared, Box::new(routed)).await;
    }
}

/// A sender routed to a listener: what its channel needs.
struct Routed {
    request: Request,
    opened: Opened,
    address: String,
    _quota: ChannelQuota,
}

/// Serves a routed sender's channel: answers its handshake, then splices it to the listener's end.
async fn serve_channel(shared: &Arc<Shared>, routed: Box<Routed>) {
    let Routed { request, opened, address, _quota } = unbox(routed);
    let span = channel_span(opened.channel_id, &address, "websocket");
    let remote = request.remote;
    let served = async {
        // Counted before the sender hears of it: whoever it tells sees it on the status page.
        let _guard = ChannelGuard::new(shared, &address, opened.listener, remote);
        let ws = match request.upgrade(shared, opened.protocol.as_deref(), Some(opened.channel_id)).await {
            Ok(ws) => ws,
            Err(e) => return tracing::debug!(error = %e, "sender left during the handshake"),
        };
        let failed = splice(End::Ws(ws), opened.end, opened.listener_dead, shared.splice_context()).await;
        tracing::debug!(?failed, "channel closed");
    };
    served.instrument(span).await
}

/// Authorizes and routes a sender; refuses it, or serves it as a multicast publisher, here.
async fn open(shared: &Arc<Shared>, request: Request) -> Option<Routed> {
    let started = Instant::now();
    let opened = |result| shared.metrics.channel_refused(Transport::websocket, result);
    let path = request.target.path.clone();
    let candidates: Vec<&str> = address_prefixes(&path).collect();
    if candidates.is_empty() {
        request.refuse(404, "no address in the path").await;
        return None;
    }
    // A browser page (it sends `Origin`) from an origin the address does not allow.
    let settings = shared.live();
    if let (Some(allowed), Some(origin)) = (settings.config.allowed_origins(&candidates), request.head.header("Origin"))
        && !relay_proto::cors::allows(allowed, origin)
    {
        opened(OpenResult::refused);
        request.refuse(403, "this origin may not send to this address").await;
        return None;
    }
    // The registered address is the longest prefix of the path the token covers that is in
    // multicast mode or has a listener (else the longest covered); the rest is a suffix for the
    // listener. Listeners are looked up only where the sender may send, so that which prefixes
    // have one stays hidden from a sender without the right to know.
    let live = |a: &str| shared.is_multicast(a) || shared.registry().listeners(a) > 0;
    let (address, granted) = match settings.policy.sender_address(request.token(), &candidates, live, unix_now()) {
        Ok((address, granted)) => (address.to_owned(), granted),
        Err(denied) => {
            shared.metrics.auth_failure(denied.reason);
            opened(OpenResult::unauthorized);
            let code = ErrorCode::Auth(denied.reason);
            request.refuse(http_status(code).0, &status_description(code, &denied.detail)).await;
            return None;
        }
    };
    // The channel lives on with the settings it was opened under; the snapshot goes.
    drop(settings);
    let _quota = match shared.channel_quotas.try_take(request.remote.ip(), granted.key.as_deref()) {
        Ok(quota) => quota,
        Err(over) => {
            opened(OpenResult::rate_limited);
            let code = ErrorCode::RateLimited;
            request.refuse(http_status(code).0, &status_description(code, over)).await;
            return None;
        }
    };
    let contract = request.head.header(CONTRACT_HEADER).and_then(ContractInfo::from_header).unwrap_or_default();
    let headers: BTreeMap<String, String> =
        request.head.headers.iter().filter(|(name, _)| !name.eq_ignore_ascii_case(TOKEN_HEADER)).cloned().collect();
    let channel = ChannelRequest {
        address,
        path,
        passthrough: request.target.passthrough.clone(),
        id: request.target.id.clone(),
        contract,
        headers,
        transport: "websocket",
    };
    if shared.is_multicast(&channel.address) {
        if shared.draining() {
            opened(OpenResult::shutting_down);
            let code = ErrorCode::ShuttingDown;
            request.refuse(http_status(code).0, &status_description(code, "")).await;
            return None;
        }
        shared.metrics.channel_opened(Transport::websocket, &channel.address, started.elapsed());
        match request.upgrade(shared, None, None).await {
            Ok(ws) => Box::pin(multicast::publish(shared, &channel, End::Ws(ws))).await,
            Err(e) => tracing::debug!(error = %e, "publisher left during the handshake"),
        }
        return None;
    }
    let routed = route(shared, &channel).await;
    match &routed {
        Ok(_) => shared.metrics.channel_opened(Transport::websocket, &channel.address, started.elapsed()),
        Err(refusal) => shared.metrics.channel_refused(Transport::websocket, refusal.open_result()),
    }
    match routed {
        Ok(opened) => Some(Routed { request, opened, address: channel.address, _quota }),
        Err(refusal) => {
            let (status, description) = refusal
                .http
                .unwrap_or_else(|| (http_status(refusal.code).0, status_description(refusal.code, &refusal.detail)));
            tracing::debug!(status, %description, "sender refused");
            request.refuse(status, &description).await;
            None
        }
    }
}
