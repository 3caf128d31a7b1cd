//! HTTP requests to a served contract: JSON calls, answered through the same dispatch as
//! bincode calls ([`crate::json::answer`]).

use bytes::Bytes;
use relay_proto::error::chain;
use relay_proto::hc_http::error_body;
use tracing::Instrument;

use crate::contract::Dispatch;
use crate::http::{HttpError, HttpRequest, ResponseHead};
use crate::json::{JsonRequest, answer_deferring};
use crate::transport::IncomingChannel;

/// The largest JSON call body a host reads; beyond, the call is answered 413.
pub(crate) const MAX_JSON_BODY: usize = 16 * 1024 * 1024;

/// Answers one HTTP request to the contract `dispatcher` serves, in the span of its channel. A
/// call whose sender goes away before it is answered is cancelled, as a bincode call is when its
/// channel ends: nobody could receive its answer.
pub(crate) async fn answer_http<D: Dispatch>(incoming: IncomingChannel, dispatcher: D) {
    let span = incoming.span();
    answer_in_span(incoming, dispatcher).instrument(span).await;
}

async fn answer_in_span<D: Dispatch>(incoming: IncomingChannel, dispatcher: D) {
    let address = incoming.address().to_owned();
    let (mut request, response) = match HttpRequest::accept(incoming).await {
        Ok(accepted) => accepted,
        Err(e) => return tracing::debug!(error = %chain(&e), "http request lost before it was read"),
    };
    let (status, content_type, body, one_way) = match request.read_to_end(MAX_JSON_BODY).await {
        Ok(body) => {
            // The call borrows the head while `closed` borrows the request.
            let head = request.head.clone();
            let path = head.target.split('?').next().unwrap_or_default();
            let json = JsonRequest {
                method: &head.method,
                address: &address,
                procedure: procedure(path, &address),
                headers: &head.headers,
                body: &body,
            };
            // Dropping the answer's future cancels a two-way call; a one-way call comes back,
            // to run in this task (which the host waits for when it drains) once answered.
            let (reply, one_way) = tokio::select! {
                answered = answer_deferring(&dispatcher, json) => answered,
                () = request.closed() => return tracing::debug!("the sender went away: call cancelled"),
            };
            (reply.status, reply.content_type, reply.body, one_way)
        }
        Err(HttpError::BodyTooLarge { max }) => {
            let message = format!("a JSON call's body is at most {max} bytes");
            (413, Some("application/json"), Bytes::from(error_body(413, &message)), None)
        }
        Err(e) => return tracing::debug!(error = %chain(&e), "http request lost while it was read"),
    };
    let headers = content_type.map(|ct| ("content-type".to_owned(), ct.to_owned())).into_iter().collect();
    if let Err(e) = response.send_whole(ResponseHead { status, headers }, body).await {
        tracing::debug!(error = %chain(&e), "http answer lost");
    }
    if let Some(call) = one_way {
        call.await;
    }
}

/// The request path after `address`, without slashes around it: `Calculator/add` for
/// `/calc/Calculator/add` on `calc`. The relay sends only paths under the address; anything
/// else is taken as a whole (and names no method).
fn procedure<'a>(path: &'a str, address: &str) -> &'a str {
    let path = path.trim_start_matches('/');
    match path.strip_prefix(address) {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest.trim_matches('/'),
        _ => path,
    }
}

#[cfg(test)]
mod tests {
    use super::procedure;

    #[test]
    fn the_procedure_is_the_path_after_the_address() {
        assert_eq!(procedure("/calc/Calculator/add", "calc"), "Calculator/add");
        assert_eq!(procedure("/eu/calc/add", "eu/calc"), "add");
        assert_eq!(procedure("/calc/", "calc"), "");
        assert_eq!(procedure("/calc", "calc"), "");
        assert_eq!(procedure("/calculator/add", "calc"), "calculator/add");
    }
}
