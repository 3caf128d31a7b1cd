//! The rendezvous of an HTTP-mode request (`sb-hc-action=request&sb-hc-id=ID`). A Hybrid
//! Connections listener opens it to answer there (a response too large for its control
//! channel), or because the relay sent it only the request's id (a request too large for the
//! control channel): that request then travels here first. One rendezvous carries one request
//! and its answer, then closes (listeners close theirs after each response anyway).
//!
//! Bodies stream both ways, each one binary message fragmented as it goes: the request's body
//! as it arrives from the sender, the listener's answer as it arrives from the listener. The
//! relay reads and writes this WebSocket frame by frame ([`raw`](super::raw)), so it holds a read
//! buffer and one piece in flight, never a whole body.
//!
//! No token: the id is the request's one-time secret, as in Azure's protocol.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use relay_proto::hc::{CLOSE_NORMAL, ControlMessage};
use relay_proto::ws_frame::Opcode;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::Request;
use super::raw::{RawReader, Read, write_frame};
use crate::channel::Side;
use crate::channel::close::CLOSE_GRACE;
use crate::exchanges::{AnswerBody, ListenerAnswer, Rendezvous, RendezvousRequest};
use crate::state::Shared;

/// The longest `response` message a listener may send on a rendezvous.
const MAX_RESPONSE_JSON: usize = 64 * 1024;

pub(crate) async fn serve(shared: &Shared, request: Request) {
    let Some(id) = request.target.id.clone() else {
        return request.refuse(400, "a request rendezvous needs sb-hc-id").await;
    };
    let carried = match shared.exchanges.rendezvous(&id) {
        Rendezvous::Unknown => {
            return request.refuse(403, "no request waits under this id (answered, given up, or never made)").await;
        }
        Rendezvous::Answer => None,
        Rendezvous::Request(carried) => Some(*carried),
    };
    let timeout = shared.live().config.http_response_timeout(&request.target.path);
    let (io, leftover) = match request.upgrade_raw().await {
        Ok(upgraded) => upgraded,
        Err(e) => {
            shared.exchanges.abandon(&id);
            return tracing::debug!(error = %e, "request rendezvous upgrade failed");
        }
    };
    let (read, mut write) = tokio::io::split(io);
    let mut read = RawReader::new(read, leftover, MAX_RESPONSE_JSON);
    let rendezvous = Exchange { shared, id: &id, stall: shared.config.handshake_timeout(), timeout };
    let ended = rendezvous.run(&mut read, &mut write, carried).await;
    if let Err(why) = ended {
        // Whoever still waits for the answer hears at once that there is none.
        shared.exchanges.abandon(&id);
        tracing::debug!(request = %id, why = %why, "a request rendezvous ended without a whole answer");
    }
    close(&mut read, &mut write, ended.as_ref().err() != Some(&Ended::ListenerClosed)).await;
}

/// Why a rendezvous ended before the answer was whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum Ended {
    #[error("the listener closed it")]
    ListenerClosed,
    #[error("the listener broke it")]
    Broken,
    #[error("the listener sent something other than a response")]
    Garbage,
    #[error("the listener did not answer, or stalled, within the address's response timeout")]
    TimedOut,
    #[error("the request was given up")]
    GivenUp,
    #[error("the sender went away")]
    SenderGone,
    #[error("the sender's body broke or stalled")]
    UploadFailed,
}

/// One rendezvous's exchange.
struct Exchange<'a> {
    shared: &'a Shared,
    id: &'a str,
    /// How long the sender's body may take for each piece.
    stall: Duration,
    /// How long the listener may take for its answer, and for each piece of its body.
    timeout: Duration,
}

impl Exchange<'_> {
    /// Sends the request this rendezvous carries, if any (its body as it arrives), and passes
    /// the listener's answer on (its body as it arrives), until the answer's end.
    async fn run<R, W>(
        &self,
        read: &mut RawReader<R>,
        write: &mut W,
        carried: Option<RendezvousRequest>,
    ) -> Result<(), Ended>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut upload = match carried {
            Some(carried) => self.send_request(write, carried).await?,
            None => None,
        };
        let answer_by = Instant::now() + self.timeout;
        let mut answering: Option<mpsc::Sender<Bytes>> = None;
        loop {
            let wait_until = if answering.is_some() { Instant::now() + self.timeout } else { answer_by };
            tokio::select! {
                next = tokio::time::timeout_at(wait_until, read.next()) => {
                    let next = match next {
                        Err(_) => return Err(Ended::TimedOut),
                        Ok(Err(e)) => {
                            tracing::debug!(error = %relay_proto::error::chain(&e), "a request rendezvous broke");
                            return Err(Ended::Broken);
                        }
                        Ok(Ok(None)) => return Err(Ended::Broken),
                        Ok(Ok(Some(next))) => next,
                    };
                    match next {
                        Read::Ping(payload) => {
                            write_frame(write, (Opcode::Pong, true), &payload).await.map_err(|_| Ended::Broken)?;
                        }
                        Read::Close => return Err(Ended::ListenerClosed),
                        Read::Text(json) if answering.is_none() => match self.answered(&json)? {
                            Some(body) => answering = Some(body),
                            None => return Ok(()),
                        },
                        Read::Text(_) => return Err(Ended::Garbage),
                        Read::Piece { bytes, last } => {
                            // Before a `response`, a stray (hyco-https's empty frame): ignored.
                            let Some(body) = &answering else { continue };
                            if !bytes.is_empty() {
                                self.shared.relayed_bytes.add(Side::Caller, bytes.len());
                                body.send(bytes).await.map_err(|_| Ended::SenderGone)?;
                            }
                            if last {
                                let _ = body.send(Bytes::new()).await;
                                return Ok(());
                            }
                        }
                    }
                }
                piece = next_piece(&mut upload, self.stall) => match piece {
                    Ok(Some(piece)) => {
                        self.shared.relayed_bytes.add(Side::Host, piece.len());
                        write_frame(write, (Opcode::Continuation, false), &piece).await.map_err(|_| Ended::Broken)?;
                    }
                    Ok(None) => {
                        upload = None;
                        write_frame(write, (Opcode::Continuation, true), &[]).await.map_err(|_| Ended::Broken)?;
                    }
                    Err(()) => return Err(Ended::UploadFailed),
                },
            }
        }
    }

    /// Sends the `request` message, then the start of its body; the rest of the body, if any,
    /// is to follow.
    async fn send_request<W: AsyncWrite + Unpin>(
        &self,
        write: &mut W,
        (message, body): RendezvousRequest,
    ) -> Result<Option<Incoming>, Ended> {
        let with_body = message.body == Some(true);
        let json = serde_json::to_string(&ControlMessage::Request(message)).map_err(|_| Ended::Garbage)?;
        write_frame(write, (Opcode::Text, true), json.as_bytes()).await.map_err(|_| Ended::Broken)?;
        if !with_body {
            return Ok(None);
        }
        self.shared.relayed_bytes.add(Side::Host, body.start.len());
        let whole = body.rest.is_none();
        write_frame(write, (Opcode::Binary, whole), &body.start).await.map_err(|_| Ended::Broken)?;
        // Written: no longer held in the budget (`body._held` drops here).
        Ok(body.rest)
    }

    /// Hands the listener's `response` to the request waiting for it; the sender of its body's
    /// pieces when one follows.
    fn answered(&self, json: &str) -> Result<Option<mpsc::Sender<Bytes>>, Ended> {
        let Ok(ControlMessage::Response(head)) = serde_json::from_str::<ControlMessage>(json) else {
            return Err(Ended::Garbage);
        };
        let (body, pieces) = if head.body {
            let (pieces, streamed) = mpsc::channel(1);
            (AnswerBody::Streamed(streamed), Some(pieces))
        } else {
            (AnswerBody::Whole(Bytes::new()), None)
        };
        if !self.shared.exchanges.complete(self.id, None, ListenerAnswer { head, body }) {
            return Err(Ended::GivenUp);
        }
        Ok(pieces)
    }
}

/// The next piece of the sender's body, within `stall`; `None` at its end. Never ready while
/// there is nothing to upload.
async fn next_piece(upload: &mut Option<Incoming>, stall: Duration) -> Result<Option<Bytes>, ()> {
    let Some(body) = upload else { return std::future::pending().await };
    loop {
        match tokio::time::timeout(stall, body.frame()).await {
            Ok(None) => return Ok(None),
            Ok(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) if !data.is_empty() => return Ok(Some(data)),
                _ => continue,
            },
            Ok(Some(Err(_))) | Err(_) => return Err(()),
        }
    }
}

/// Closes the rendezvous: a close frame (unless the listener's close is being answered, which
/// is the same frame), the listener's close awaited within [`CLOSE_GRACE`], then the end of the
/// connection.
async fn close<R, W>(read: &mut RawReader<R>, write: &mut W, await_theirs: bool)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let handshake = async {
        let _ = write_frame(write, (Opcode::Close, true), &CLOSE_NORMAL.to_be_bytes()).await;
        if await_theirs {
            while let Ok(Some(read)) = read.next().await {
                if matches!(read, Read::Close) {
                    break;
                }
            }
        }
        let _ = write.shutdown().await;
    };
    if tokio::time::timeout(CLOSE_GRACE, handshake).await.is_err() {
        tracing::debug!("a request rendezvous did not finish its closing handshake in time");
    }
}
