//! A Hybrid Connections sender: authorize, route to a listener, answer the handshake with the
//! listener's answer, then splice.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use relay_proto::auth::unix_now;
use relay_proto::hc::{CONTRACT_HEADER, TOKEN_HEADER, address_prefixes, http_status, status_description};
use relay_proto::{ContractInfo, ErrorCode};
use tracing::Instrument;

use super::Request;
use crate::channel::{End, splice};
use crate::metrics::{OpenResult, Transport};
use crate::multicast;
use crate::router::{ChannelRequest, channel_span, route};
use crate::state::{ChannelGuard, Shared};

pub(crate) async fn serve(shared: &Arc<Shared>, request: Request) {
    let started = Instant::now();
    let opened = |result| shared.metrics.channel_refused(Transport::websocket, result);
    let path = request.target.path.clone();
    let candidates: Vec<&str> = address_prefixes(&path).collect();
    if candidates.is_empty() {
        return request.refuse(404, "no address in the path").await;
    }
    // A browser page (it sends `Origin`) from an origin the address does not allow.
    let settings = shared.live();
    if let (Some(allowed), Some(origin)) = (settings.config.allowed_origins(&candidates), request.head.header("Origin"))
        && !relay_proto::cors::allows(allowed, origin)
    {
        opened(OpenResult::refused);
        return request.refuse(403, "this origin may not send to this address").await;
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
            return request.refuse(http_status(code).0, &status_description(code, &denied.detail)).await;
        }
    };
    // The channel lives on with the settings it was opened under; the snapshot goes.
    drop(settings);
    let _quota = match shared.channel_quotas.try_take(request.remote.ip(), granted.key.as_deref()) {
        Ok(quota) => quota,
        Err(over) => {
            opened(OpenResult::rate_limited);
            let code = ErrorCode::RateLimited;
            return request.refuse(http_status(code).0, &status_description(code, over)).await;
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
            return request.refuse(http_status(code).0, &status_description(code, "")).await;
        }
        shared.metrics.channel_opened(Transport::websocket, &channel.address, started.elapsed());
        match request.upgrade(shared, None, None).await {
            Ok(ws) => Box::pin(multicast::publish(shared, &channel, End::Ws(ws))).await,
            Err(e) => tracing::debug!(error = %e, "publisher left during the handshake"),
        }
        return;
    }
    let remote = request.remote;
    let routed = route(shared, &channel).await;
    match &routed {
        Ok(_) => shared.metrics.channel_opened(Transport::websocket, &channel.address, started.elapsed()),
        Err(refusal) => shared.metrics.channel_refused(Transport::websocket, refusal.open_result()),
    }
    match routed {
        Ok(opened) => {
            let span = channel_span(opened.channel_id, &channel.address, channel.transport);
            let served = async {
                // Counted before the sender hears of it: whoever it tells sees it on the status page.
                let _guard = ChannelGuard::new(shared, &channel.address, opened.listener, remote);
                let ws = match request.upgrade(shared, opened.protocol.as_deref(), Some(opened.channel_id)).await {
                    Ok(ws) => ws,
                    Err(e) => return tracing::debug!(error = %e, "sender left during the handshake"),
                };
                let sender = End::Ws(ws);
                let failed = splice(sender, opened.end, opened.listener_dead, shared.splice_context()).await;
                tracing::debug!(?failed, "channel closed");
            };
            served.instrument(span).await
        }
        Err(refusal) => {
            let (status, description) = refusal
                .http
                .unwrap_or_else(|| (http_status(refusal.code).0, status_description(refusal.code, &refusal.detail)));
            tracing::debug!(status, %description, "sender refused");
            request.refuse(status, &description).await;
        }
    }
}
