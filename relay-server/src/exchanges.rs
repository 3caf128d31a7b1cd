//! HTTP-mode requests waiting for a Hybrid Connections listener's `response`, keyed by their id.
//! The id is the request's one-time secret: the rendezvous address the listener may open for it
//! names it, and listeners open that rendezvous without a token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use hyper::body::Incoming;
use relay_proto::hc_http::{RequestMessage, ResponseMessage};
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};

use crate::registry::ListenerId;
use crate::rendezvous::{NoRandomness, one_time_secret};

/// A listener's answer to an HTTP-mode request: its `response` message and the body after it.
#[derive(Debug)]
pub(crate) struct ListenerAnswer {
    pub(crate) head: ResponseMessage,
    pub(crate) body: AnswerBody,
}

/// The body of a listener's answer.
#[derive(Debug)]
pub(crate) enum AnswerBody {
    /// Read whole: an answer on the listener's control channel (one message, within
    /// `max_frame_bytes`).
    Whole(Bytes),
    /// Passed on as it arrives on the request's rendezvous: pieces, then an empty piece for the
    /// end. Pieces that stop without it are a cut body, never a whole one.
    Streamed(mpsc::Receiver<Bytes>),
}

/// A sender's request body, as the relay passes it on: what was read at once (held in the
/// relay's buffer budget until `_held` drops), and, for a body larger than the control channel
/// takes, the rest, which streams over the rendezvous as it arrives.
#[derive(Debug)]
pub(crate) struct RequestBody {
    pub(crate) start: Bytes,
    pub(crate) rest: Option<Incoming>,
    pub(crate) _held: Option<OwnedSemaphorePermit>,
}

impl RequestBody {
    /// Whether there is any body.
    pub(crate) fn is_empty(&self) -> bool {
        self.start.is_empty() && self.rest.is_none()
    }
}

/// A request sent over a rendezvous (too large for the control channel): its `request` message
/// and body, for the rendezvous to carry once the listener opens it.
pub(crate) type RendezvousRequest = (RequestMessage, RequestBody);

#[derive(Debug)]
struct Entry {
    /// The listener the request was sent to: only it may answer on its control channel.
    /// `None` for a listener on another node, which answers over the rendezvous only.
    listener: Option<ListenerId>,
    reply: oneshot::Sender<ListenerAnswer>,
    /// Taken by the rendezvous that carries it.
    request: Option<RendezvousRequest>,
}

/// The HTTP-mode requests waiting for an answer.
#[derive(Debug, Default)]
pub(crate) struct Exchanges(Arc<Mutex<HashMap<String, Entry>>>);

/// What a rendezvous for an HTTP-mode request finds under its id.
#[derive(Debug)]
pub(crate) enum Rendezvous {
    /// No such request (answered, given up, or never made).
    Unknown,
    /// The listener chose to answer here.
    Answer,
    /// The request itself travels here, then its answer.
    Request(Box<RendezvousRequest>),
}

impl Exchanges {
    /// The table; held only for an insert, a lookup or a removal.
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What a rendezvous under `id` is for; a request it is to carry is taken, once.
    pub(crate) fn rendezvous(&self, id: &str) -> Rendezvous {
        match self.lock().get_mut(id) {
            None => Rendezvous::Unknown,
            Some(entry) => {
                entry.request.take().map_or(Rendezvous::Answer, |request| Rendezvous::Request(Box::new(request)))
            }
        }
    }

    /// Completes the request `id` with `answer`: from the control channel of listener `from`
    /// (which must be the one it was sent to), or from its rendezvous (`None`). Whether a request
    /// was waiting for it.
    pub(crate) fn complete(&self, id: &str, from: Option<ListenerId>, answer: ListenerAnswer) -> bool {
        let mut table = self.lock();
        let Some(entry) = table.get(id) else { return false };
        if from.is_some_and(|listener| Some(listener) != entry.listener) {
            return false;
        }
        let entry = table.remove(id).expect("looked up under the same lock");
        entry.reply.send(answer).is_ok()
    }

    /// Gives up the request `id`, whose rendezvous failed before its answer: its sender hears
    /// at once that the listener went.
    pub(crate) fn abandon(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Ends the requests sent to `listener`, whose control channel closed: their senders hear
    /// at once that it went.
    pub(crate) fn listener_gone(&self, listener: ListenerId) {
        self.lock().retain(|_, entry| entry.listener != Some(listener));
    }
}

/// An HTTP-mode request's place in the table; leaving it (drop) removes the entry.
#[derive(Debug)]
pub(crate) struct Exchange {
    table: Exchanges,
    id: String,
    answer: oneshot::Receiver<ListenerAnswer>,
}

impl Exchange {
    /// A fresh id, made with `random` (`rendezvous::system_random` outside tests), for a request
    /// sent to `listener` (`None`: one on another node).
    pub(crate) fn register(
        table: &Exchanges,
        listener: Option<ListenerId>,
        random: fn(&mut [u8]) -> Result<(), NoRandomness>,
    ) -> Result<Self, NoRandomness> {
        let id = one_time_secret(random)?;
        let (reply, answer) = oneshot::channel();
        table.lock().insert(id.clone(), Entry { listener, reply, request: None });
        Ok(Self { table: Exchanges(table.0.clone()), id, answer })
    }

    /// The id, for the `request` message and its rendezvous address.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// Has the request travel over its rendezvous: the rendezvous sends `request` first.
    pub(crate) fn over_rendezvous(&self, request: RendezvousRequest) {
        if let Some(entry) = self.table.lock().get_mut(&self.id) {
            entry.request = Some(request);
        }
    }

    /// The request given to [`over_rendezvous`](Self::over_rendezvous), back, if no rendezvous
    /// took it: for another listener to be asked.
    pub(crate) fn take_back(&self) -> Option<RendezvousRequest> {
        self.table.lock().get_mut(&self.id).and_then(|entry| entry.request.take())
    }

    /// The listener's answer; `None` when the listener went first. The caller bounds the wait.
    pub(crate) async fn answer(&mut self) -> Option<ListenerAnswer> {
        (&mut self.answer).await.ok()
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        self.table.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16) -> ListenerAnswer {
        let head = ResponseMessage {
            request_id: String::new(),
            status_code: status,
            status_description: None,
            response_headers: Vec::new(),
            body: false,
        };
        ListenerAnswer { head, body: AnswerBody::Whole(Bytes::new()) }
    }

    #[tokio::test]
    async fn only_the_listener_sent_a_request_answers_it_on_its_control_channel() {
        let table = Exchanges::default();
        let mut exchange = Exchange::register(&table, Some(7), crate::rendezvous::system_random).unwrap();
        let id = exchange.id().to_owned();
        assert!(!table.complete(&id, Some(8), answer(200)), "another listener");
        assert!(table.complete(&id, Some(7), answer(201)));
        assert_eq!(exchange.answer().await.unwrap().head.status_code, 201);
        assert!(!table.complete(&id, None, answer(202)), "answered once");
    }

    #[tokio::test]
    async fn a_rendezvous_takes_its_request_once_then_answers() {
        let table = Exchanges::default();
        let mut exchange = Exchange::register(&table, Some(1), crate::rendezvous::system_random).unwrap();
        let id = exchange.id().to_owned();
        assert!(matches!(table.rendezvous(&id), Rendezvous::Answer));
        let message = RequestMessage {
            address: "wss://h/$hc/web".into(),
            id: id.clone(),
            request_target: None,
            method: None,
            remote_endpoint: None,
            request_headers: None,
            body: None,
        };
        let body = RequestBody { start: Bytes::from_static(b"body"), rest: None, _held: None };
        exchange.over_rendezvous((message.clone(), body));
        let taken = exchange.take_back().expect("not taken yet");
        assert_eq!(taken.1.start, "body");
        exchange.over_rendezvous(taken);
        assert!(matches!(table.rendezvous(&id), Rendezvous::Request(carried) if carried.1.start == "body"));
        assert!(exchange.take_back().is_none(), "taken by the rendezvous");
        assert!(matches!(table.rendezvous(&id), Rendezvous::Answer), "taken once");
        assert!(matches!(table.rendezvous("guess"), Rendezvous::Unknown));
        assert!(table.complete(&id, None, answer(200)));
        assert_eq!(exchange.answer().await.unwrap().head.status_code, 200);
    }

    #[tokio::test]
    async fn a_listener_gone_ends_its_requests_and_a_dropped_exchange_leaves_the_table() {
        let table = Exchanges::default();
        let mut sent_to_gone = Exchange::register(&table, Some(1), crate::rendezvous::system_random).unwrap();
        let other = Exchange::register(&table, None, crate::rendezvous::system_random).unwrap();
        table.listener_gone(1);
        assert!(sent_to_gone.answer().await.is_none());
        let id = other.id().to_owned();
        drop(other);
        assert!(matches!(table.rendezvous(&id), Rendezvous::Unknown));
        assert!(table.lock().is_empty());
    }
}
