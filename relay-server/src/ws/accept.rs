//! A Hybrid Connections listener's rendezvous: accepting (or rejecting) one waiting sender.

use relay_proto::hc::{CLOSE_GOING_AWAY, Target};

use super::Request;
use crate::channel::End;
use crate::rendezvous::Outcome;
use crate::state::Shared;

pub(crate) async fn serve(shared: &Shared, request: Request) {
    let slot =
        Target::raw_param(&request.head.target, "sb-hc-rendezvous").and_then(|secret| shared.rendezvous.take(secret));
    let Some(slot) = slot else {
        return request.refuse(403, "the rendezvous address is not valid (used, expired or unknown)").await;
    };
    if let Some(status) = request.target.status_code {
        let status = if (400..600).contains(&status) { status } else { 403 };
        let description = request.target.status_description.clone().unwrap_or_else(|| "rejected".into());
        let _ = slot.send(Outcome::Rejected { status, description });
        // A rejection ends in a defined error, as in Azure's protocol.
        return request.refuse(410, "Gone").await;
    }
    let protocol = request.head.first_protocol();
    match request.upgrade(shared, protocol.as_deref(), None).await {
        Ok(ws) => {
            let accepted = Outcome::Accepted { ws: Box::new(End::Ws(ws)), protocol };
            if let Err(Outcome::Accepted { ws, .. }) = slot.send(accepted)
                && let End::Ws(ws) = *ws
            {
                ws.close(Some((CLOSE_GOING_AWAY, "the sender went away"))).await;
            }
        }
        Err(e) => tracing::debug!(error = %e, "listener left during the rendezvous handshake"),
    }
}
