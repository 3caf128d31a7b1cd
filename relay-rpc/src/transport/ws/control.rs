//! A listener's control channel: the relay's `accept` notifications in, `renewToken` messages
//! and keep-alive pings out, until the relay, the host or the listener ends it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::target::{Endpoint, channel_id};
use super::{ControlStream, GOODBYE_TIMEOUT, WsLink, WsPending, codes};
use crate::error::ListenError;
use crate::transport::IncomingChannel;
use crate::transport::PendingChannel;
use crate::transport::renewal::{Renewal, Renewed};
use relay_proto::hc::{Accept, CLOSE_NORMAL, CONTRACT_HEADER, ControlMessage};
use relay_proto::{ContractInfo, ErrorCode, Incoming};

/// A registration over WebSocket. Dropping it closes the control channel, which ends the
/// registration.
#[derive(Debug)]
pub(crate) struct WsRegistration {
    stop: CancellationToken,
    ended: oneshot::Receiver<ListenError>,
    result: Option<ListenError>,
}

impl Drop for WsRegistration {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl WsRegistration {
    /// Waits until the control channel ends, and says why. Cancel-safe.
    pub(crate) async fn ended(&mut self) -> ListenError {
        if self.result.is_none() {
            let ended = (&mut self.ended).await.unwrap_or(ListenError::Closed);
            self.result = Some(ended);
        }
        self.result.clone().unwrap_or(ListenError::Closed)
    }
}

/// Serves the control channel `ws` of a listener on `address` in a task of its own, which ends
/// when the registration is dropped or the link closed.
pub(crate) fn spawn(
    link: WsLink,
    address: &str,
    ws: ControlStream,
    renewal: Renewal,
    queue: mpsc::Sender<IncomingChannel>,
) -> WsRegistration {
    let stop = link.inner.closed.child_token();
    let (tx, ended) = oneshot::channel();
    let span = tracing::debug_span!("listener", address = %address);
    let control = Control { link, address: Arc::from(address), queue, stop: stop.clone() };
    tokio::spawn(
        async move {
            let reason = control.run(ws, renewal).await;
            tracing::debug!(%reason, "control channel ended");
            let _ = tx.send(reason);
        }
        .instrument(span),
    );
    WsRegistration { stop, ended, result: None }
}

struct Control {
    link: WsLink,
    address: Arc<str>,
    queue: mpsc::Sender<IncomingChannel>,
    stop: CancellationToken,
}

impl Control {
    async fn run(&self, mut ws: ControlStream, mut renewal: Renewal) -> ListenError {
        let options = self.link.options();
        let (keep_alive, idle_timeout) = (options.keep_alive, options.idle_timeout);
        let mut tick = tokio::time::interval_at(Instant::now() + keep_alive, keep_alive);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut renew_in = renewal.due_in(SystemTime::now());
        let renew = tokio::time::sleep(renew_in.unwrap_or(Duration::ZERO));
        tokio::pin!(renew);
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => {
                    let goodbye = CloseFrame { code: CLOSE_NORMAL.into(), reason: "listener closed".into() };
                    let _ = tokio::time::timeout(GOODBYE_TIMEOUT, ws.close(Some(goodbye))).await;
                    return ListenError::ConnectionLost("host connection closed".into());
                }
                message = ws.next() => match message {
                    Some(Ok(Message::Text(text))) => self.on_message(text.as_str()),
                    Some(Ok(Message::Close(frame))) => {
                        // Answer the relay's close (tungstenite queued the reply) before the socket goes.
                        let _ = tokio::time::timeout(GOODBYE_TIMEOUT, ws.flush()).await;
                        let (code, reason) = frame.map_or((None, String::new()), |f| (Some(f.code.into()), f.reason.to_string()));
                        return codes::listener_closed(code, &reason);
                    }
                    // Pings are answered by tungstenite; pongs and the rest only prove the relay alive.
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return ListenError::ConnectionLost(e.to_string()),
                    None => return ListenError::ConnectionLost("the relay closed the control channel".into()),
                },
                _ = tick.tick() => {
                    if ws.get_ref().last_read().elapsed() >= idle_timeout {
                        return ListenError::ConnectionLost("the relay went silent".into());
                    }
                    if let Err(e) = self.send(&mut ws, Message::Ping(Bytes::new())).await {
                        return e;
                    }
                }
                _ = &mut renew, if renew_in.is_some() => {
                    match renewal.renew() {
                        Renewed::Token(token) => {
                            let renew = ControlMessage::RenewToken { token: token.value().to_owned() };
                            let json = serde_json::to_string(&renew).unwrap_or_default();
                            if let Err(e) = self.send(&mut ws, Message::text(json)).await {
                                return e;
                            }
                            tracing::debug!(resource = %renewal.resource(), expires_at = token.expires_at(), "token renewed");
                        }
                        // A fixed token: the relay ends the registration when it expires.
                        Renewed::Stop => {}
                        Renewed::Retry(e) => {
                            tracing::warn!(resource = %renewal.resource(), error = %e, "cannot renew the token; retrying");
                        }
                    }
                    renew_in = renewal.due_in(SystemTime::now());
                    renew.as_mut().reset(Instant::now() + renew_in.unwrap_or(Duration::ZERO));
                }
            }
        }
    }

    /// Sends `message`, giving the relay the handshake timeout to take it.
    async fn send(&self, ws: &mut ControlStream, message: Message) -> Result<(), ListenError> {
        match tokio::time::timeout(self.link.options().handshake_timeout, ws.send(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ListenError::ConnectionLost(e.to_string())),
            Err(_) => Err(ListenError::ConnectionLost("the relay stopped reading the control channel".into())),
        }
    }

    fn on_message(&self, text: &str) {
        match serde_json::from_str::<ControlMessage>(text) {
            Ok(ControlMessage::Accept(accept)) => self.on_accept(accept),
            // Messages this build does not serve (e.g. HTTP requests) are skipped.
            Ok(_) | Err(_) => tracing::debug!(len = text.len(), "skipping a control message"),
        }
    }

    fn on_accept(&self, accept: Accept) {
        let (endpoint, incoming) = match parse_accept(&accept, &self.address, self.link.is_tls()) {
            Ok(parsed) => parsed,
            Err(e) => {
                tracing::warn!(error = %e, "relay sent an unusable accept");
                return;
            }
        };
        let permit = self.link.inner.incoming.clone().try_acquire_owned().ok();
        let busy = permit.is_none();
        let pending = WsPending { link: self.link.clone(), rendezvous: accept.address, endpoint, permit };
        let channel = IncomingChannel::new(incoming, PendingChannel::Ws(pending));
        if busy {
            return channel.reject_in_background(ErrorCode::Busy, "the host has too many channels open");
        }
        channel.hand_to(&self.queue)
    }
}

/// Reads an `accept` for a listener on `address`: where its rendezvous is, and the caller's
/// channel. A relay reached over TLS may not send a listener to an unencrypted rendezvous.
fn parse_accept(accept: &Accept, address: &str, tls: bool) -> Result<(Endpoint, Incoming), String> {
    let endpoint = Endpoint::parse(&accept.address)?;
    if tls && !endpoint.tls {
        return Err("the rendezvous is not encrypted".into());
    }
    let contract = accept
        .connect_headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(CONTRACT_HEADER))
        .and_then(|(_, value)| ContractInfo::from_header(value))
        .unwrap_or_default();
    Ok((endpoint, Incoming { address: address.to_owned(), channel_id: channel_id(&accept.id), contract }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_proto::{MethodInfo, TypeInfo};
    use std::collections::BTreeMap;

    #[test]
    fn accepts_name_the_rendezvous_and_the_callers_contract() {
        let contract = ContractInfo {
            name: "Calculator".into(),
            fingerprint: 9,
            methods: vec![MethodInfo { name: "add".into(), fingerprint: 3 }],
            types: vec![TypeInfo { name: "Rec".into(), fingerprint: 4 }],
        };
        let accept = Accept {
            address: "wss://127.0.0.1:7443/$hc/calc?sb-hc-action=accept&sb-hc-id=12&sb-hc-rendezvous=x".into(),
            id: "12".into(),
            connect_headers: BTreeMap::from([("relay-contract".into(), contract.to_header())]),
        };
        let (endpoint, incoming) = parse_accept(&accept, "calc", true).unwrap();
        assert_eq!((endpoint.host.as_str(), endpoint.port, endpoint.tls), ("127.0.0.1", 7443, true));
        assert_eq!(incoming, Incoming { address: "calc".into(), channel_id: 12, contract });

        let raw = Accept { connect_headers: BTreeMap::new(), ..accept.clone() };
        assert_eq!(parse_accept(&raw, "calc", true).unwrap().1.contract, ContractInfo::default());
        let plain = Accept { address: "ws://127.0.0.1:7443/$hc/calc?sb-hc-action=accept".into(), ..accept.clone() };
        assert!(parse_accept(&plain, "calc", true).is_err(), "a wss relay cannot send a host to ws");
        assert!(parse_accept(&plain, "calc", false).is_ok());
        let bad = Accept { address: "wss://h/$hc/calc\r\nX: y".into(), ..accept };
        assert!(parse_accept(&bad, "calc", true).is_err());
    }
}
