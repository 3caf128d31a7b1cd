//! The host side of QUIC: a listener's control stream, and the streams the relay opens for
//! callers' channels, routed to listeners by address.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use quinn::{RecvStream, SendStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};

use super::{QuicLink, code, connection_error, read_error, read_frame, read_frame_within, write_frame};
use crate::auth::Token;
use crate::channel::{Channel, ChannelError};
use crate::error::ListenError;
use crate::options::ConnectOptions;
use crate::transport::PendingChannel;
use crate::transport::renewal::{Renewal, Renewed};
use crate::transport::{IncomingChannel, Role, Routes};
use crate::url::{RelayUrl, Scheme};
use relay_proto::error::chain;
use relay_proto::grant::{OpenStream, StreamGrant};
use relay_proto::{
    self as proto, Control, ErrorCode, Hello, Incoming, MAX_HANDSHAKE_FRAME, ProtoError, Reply, StreamCode,
};

/// A registration over QUIC: its control stream, whose sending half a task holds to renew the
/// token. Dropping it aborts that task, which drops the stream and ends the registration.
#[derive(Debug)]
pub(crate) struct QuicRegistration {
    renewal: JoinHandle<()>,
    control: RecvStream,
    /// Bytes of the relay's control messages read so far, kept across cancelled reads.
    unread: Vec<u8>,
    connection: quinn::Connection,
    /// What answering a relay cluster's `Dial` takes.
    dialer: Dialer,
}

/// Answers the `Dial`s of a relay in a cluster: opens the rendezvous on the caller's node and
/// hands the channel that arrives on it to this registration's listener. The tasks stop when the
/// registration is dropped.
#[derive(Debug)]
struct Dialer {
    address: String,
    options: ConnectOptions,
    queue: mpsc::Sender<IncomingChannel>,
    /// The host's count of open incoming channels, shared with the streams its relay opens.
    grant: StreamGrant,
    /// Connections to other nodes, by URL, reused for their later rendezvous.
    links: Links,
    tasks: JoinSet<()>,
}

/// Connections to relay nodes other than the one registered on, by URL.
type Links = Arc<Mutex<HashMap<String, QuicLink>>>;

/// The most rendezvous a registration dials at once; `Dial`s beyond are ignored (the caller's
/// node tries another listener when no rendezvous arrives).
const MAX_DIALS: usize = 256;

impl Dialer {
    /// Dials the rendezvous `secret` on the node at `url` and, meanwhile, offers `channel` to
    /// this registration's listener, whose answer goes on the rendezvous stream once it is open.
    fn dial(&mut self, url: String, secret: String, channel: Incoming) {
        while self.tasks.try_join_next().is_some() {}
        if self.tasks.len() >= MAX_DIALS {
            tracing::warn!(address = %self.address, "too many rendezvous in progress; ignoring a dial");
            return;
        }
        let (dialled, stream) = oneshot::channel();
        let (links, options) = (self.links.clone(), self.options.clone());
        self.tasks.spawn(async move {
            let opened = tokio::time::timeout(options.handshake_timeout, rendezvous(&links, &options, &url, secret));
            let opened = opened.await.unwrap_or(Err(RendezvousError::TimedOut));
            if let Err(e) = &opened {
                tracing::debug!(%url, error = %chain(e), "cannot open a rendezvous");
            }
            // A channel given up meanwhile drops the stream, which tells the node.
            let _ = dialled.send(opened);
        });
        let wrong_address = channel.address != self.address;
        // Counted while open, as the streams the relay opens are; the rendezvous carries the
        // refusal of one over the count.
        let open = self.grant.opened();
        let over_limit = open.is_none();
        let pending = QuicPending { stream: PendingStream::Dialling(stream), max_frame: self.options.max_frame, open };
        let channel = IncomingChannel::new(channel, PendingChannel::Quic(pending));
        if wrong_address {
            return channel.reject_in_background(ErrorCode::NoListener, "not listening on this address");
        }
        if over_limit {
            return channel.reject_in_background(ErrorCode::Busy, OVER_LIMIT);
        }
        channel.hand_to(&self.queue)
    }
}

/// The refusal of a channel over the host's `max_incoming_channels`.
const OVER_LIMIT: &str = "the host has as many channels open as it allows";

/// Why a rendezvous could not be opened.
#[derive(Debug, thiserror::Error)]
enum RendezvousError {
    #[error("the dial url is not a quic:// relay url")]
    BadUrl,
    #[error("cannot connect to the node")]
    Connect(#[source] crate::error::ConnectError),
    #[error("the rendezvous stream failed")]
    Stream(#[source] ChannelError),
    #[error("the rendezvous was not open in time")]
    TimedOut,
}

/// Opens the rendezvous `secret` on the node at `url` (over a pooled connection) and writes its
/// hello; the caller bounds it with the handshake timeout.
async fn rendezvous(
    links: &Links,
    options: &ConnectOptions,
    url: &str,
    secret: String,
) -> Result<(SendStream, RecvStream), RendezvousError> {
    let relay: RelayUrl = url.parse().map_err(|_| RendezvousError::BadUrl)?;
    if relay.scheme() != Scheme::Quic {
        return Err(RendezvousError::BadUrl);
    }
    let pooled = links.lock().unwrap_or_else(PoisonError::into_inner).get(url).cloned();
    let link = match pooled {
        Some(link) if link.connection.close_reason().is_none() => link,
        _ => {
            // No early data: a rendezvous the relay refused with it would be lost, not opened again.
            let link =
                super::dial_with(&relay, options, Role::Caller, false).await.map_err(RendezvousError::Connect)?;
            links.lock().unwrap_or_else(PoisonError::into_inner).insert(url.to_owned(), link.clone());
            link
        }
    };
    let (mut send, recv) =
        link.connection.open_bi().await.map_err(|e| RendezvousError::Stream(connection_error(&e)))?;
    write_frame(&mut send, &Hello::Rendezvous { secret }.encode()).await.map_err(RendezvousError::Stream)?;
    Ok((send, recv))
}

impl Drop for QuicRegistration {
    fn drop(&mut self) {
        self.renewal.abort();
    }
}

impl QuicRegistration {
    /// Waits until the relay ends the registration, tells the listener to go away, or the
    /// connection is lost. Cancel-safe: a control message read in part is kept for the next call.
    pub(crate) async fn ended(&mut self) -> ListenError {
        loop {
            match proto::split_frame(&self.unread, MAX_HANDSHAKE_FRAME) {
                Ok(Some((body, len))) => {
                    let control = Control::decode(body);
                    self.unread.drain(..len);
                    match control {
                        Ok(Control::GoAway) => return ListenError::GoAway,
                        Ok(Control::Dial { url, secret, channel }) => {
                            self.dialer.dial(url, secret, channel);
                            continue;
                        }
                        // Messages for the relay, or from a later relay, are skipped.
                        Ok(_) | Err(ProtoError::UnexpectedMessage(_)) => continue,
                        Err(e) => return ListenError::Protocol(e.to_string()),
                    }
                }
                Ok(None) => {}
                Err(e) => return ListenError::Protocol(e.to_string()),
            }
            return match self.control.read_chunk(MAX_HANDSHAKE_FRAME, true).await {
                Ok(Some(chunk)) => {
                    self.unread.extend_from_slice(&chunk.bytes);
                    continue;
                }
                Ok(None) => ListenError::Closed,
                Err(quinn::ReadError::ConnectionLost(_)) => self.connection_lost(),
                Err(quinn::ReadError::Reset(code)) => match StreamCode::from_u64(code.into_inner()) {
                    StreamCode::TokenExpired => ListenError::TokenExpired,
                    StreamCode::Unauthorized => ListenError::RenewalRefused,
                    StreamCode::RelayShutdown => ListenError::ConnectionLost("relay shutting down".into()),
                    _ => ListenError::Closed,
                },
                Err(e) => ListenError::ConnectionLost(read_error(&e).to_string()),
            };
        }
    }

    /// The error of a listener whose connection is gone.
    pub(crate) fn connection_lost(&self) -> ListenError {
        let reason = self.connection.close_reason().map(|e| connection_error(&e).to_string());
        ListenError::ConnectionLost(reason.unwrap_or_else(|| "host connection closed".into()))
    }
}

/// Registers on `address` with a `Listen` hello on a new control stream (saying whether the host
/// takes HTTP requests), within the handshake timeout, and starts renewing the token over it.
pub(crate) async fn register(
    link: &QuicLink,
    options: &ConnectOptions,
    address: &str,
    (token, http): (Option<Token>, bool),
    renewal: Renewal,
    queue: mpsc::Sender<IncomingChannel>,
) -> Result<QuicRegistration, ListenError> {
    let hello = Hello::Listen { address: address.to_owned(), token: token.map(|t| t.value().to_owned()), http };
    let handshake = async {
        let lost = |e: ChannelError| ListenError::ConnectionLost(chain(&e).to_string());
        let (mut send, mut recv) = link.connection.open_bi().await.map_err(|e| lost(connection_error(&e)))?;
        write_frame(&mut send, &hello.encode()).await.map_err(lost)?;
        let body = read_frame(&mut recv, MAX_HANDSHAKE_FRAME).await.map_err(lost)?;
        match Reply::decode(&body)? {
            Reply::Accepted | Reply::Open { .. } => Ok((send, recv)),
            Reply::Refused(r) => match r.code {
                ErrorCode::Auth(reason) => Err(ListenError::Unauthorized { reason, detail: r.detail }),
                code => Err(ListenError::Refused { code, detail: r.detail }),
            },
        }
    };
    let (send, control) =
        tokio::time::timeout(options.handshake_timeout, handshake).await.map_err(|_| ListenError::Timeout)??;
    let renewal = tokio::spawn(renew_token(send, renewal));
    let dialer = Dialer {
        address: address.to_owned(),
        options: options.clone(),
        queue,
        grant: link.incoming.clone(),
        links: Links::default(),
        tasks: JoinSet::new(),
    };
    Ok(QuicRegistration { renewal, control, unread: Vec::new(), connection: link.connection.clone(), dialer })
}

/// Owns a listener's control stream and renews its token over it before it expires. Holding the
/// stream keeps the registration; dropping it (when the listener drops and aborts this task)
/// ends the registration.
async fn renew_token(mut control: SendStream, mut renewal: Renewal) {
    while let Some(wait) = renewal.due_in(SystemTime::now()) {
        tokio::time::sleep(wait).await;
        match renewal.renew() {
            Renewed::Token(token) => {
                let renew = Control::RenewToken { token: token.value().to_owned() };
                if write_frame(&mut control, &renew.encode()).await.is_err() {
                    break;
                }
                tracing::debug!(resource = %renewal.resource(), expires_at = token.expires_at(), "token renewed");
            }
            // A fixed token cannot be renewed: the relay ends the registration when it expires.
            Renewed::Stop => break,
            Renewed::Retry(e) => {
                tracing::warn!(resource = %renewal.resource(), error = %e, "cannot renew the token; retrying")
            }
        }
    }
    std::future::pending::<()>().await;
}

/// Accepts the streams the relay opens, reads each one's [`Incoming`] header and hands it to the
/// listener registered on its address. Ends when the connection does, dropping every route so
/// that listeners learn of it.
pub(crate) async fn route_incoming(
    connection: quinn::Connection,
    grant: StreamGrant,
    routes: Routes,
    options: ConnectOptions,
) {
    loop {
        let (send, mut recv, open) = match connection.accept_bi().await {
            Ok((send, recv)) => {
                // The relay is authenticated by its certificate: its streams count at once.
                let mut open = grant.opened();
                if let Some(open) = &mut open {
                    open.authorize(relay_proto::io::announce_streams(&connection));
                }
                (send, recv, open)
            }
            Err(e) => {
                tracing::debug!(error = %e, "host connection ended");
                break;
            }
        };
        let header = match read_frame_within(&mut recv, MAX_HANDSHAKE_FRAME, options.handshake_timeout).await {
            Ok(Some(body)) => Incoming::decode(&body).map_err(|e| e.to_string()),
            Ok(None) => Err("timed out reading the channel header".to_owned()),
            Err(e) => Err(chain(&e).to_string()),
        };
        let incoming = match header {
            Ok(incoming) => incoming,
            Err(e) => {
                tracing::warn!(error = %e, "relay sent a bad channel header");
                let _ = recv.stop(code(StreamCode::ProtocolError));
                continue;
            }
        };
        let route = routes.get(&incoming.address);
        let over_limit = open.is_none();
        let stream = PendingStream::Open(send, recv);
        let pending = PendingChannel::Quic(QuicPending { stream, max_frame: options.max_frame, open });
        let channel = IncomingChannel::new(incoming, pending);
        if over_limit {
            channel.reject_in_background(ErrorCode::Busy, OVER_LIMIT);
            continue;
        }
        match route {
            None => channel.reject_in_background(ErrorCode::NoListener, "not listening on this address"),
            Some(route) => channel.hand_to(&route),
        }
    }
    routes.clear();
}

/// A stream the relay opened for a caller's channel, its [`Incoming`] header read, unanswered.
#[derive(Debug)]
pub(crate) struct QuicPending {
    stream: PendingStream,
    max_frame: usize,
    /// Counts the stream in the host's grant until the channel (or its refusal) is done; `None`
    /// for a stream over the grant, which is refused.
    open: Option<OpenStream>,
}

/// The stream a pending channel is answered on.
#[derive(Debug)]
enum PendingStream {
    /// One the relay opened.
    Open(SendStream, RecvStream),
    /// A rendezvous being dialled on another relay node (its hello written first).
    Dialling(oneshot::Receiver<Result<(SendStream, RecvStream), RendezvousError>>),
}

impl QuicPending {
    /// Answers `Accepted`; the stream carries the channel from now on.
    pub(crate) async fn accept(self, address: Arc<str>, id: u64) -> Result<Channel, ChannelError> {
        let (mut send, recv) = self.stream.ready().await?;
        write_frame(&mut send, &Reply::Accepted.encode()).await?;
        Ok(super::channel(send, recv, self.max_frame, self.open, address, id))
    }

    /// Answers with a refusal, which the relay passes to the caller.
    pub(crate) async fn reject(self, code: ErrorCode, detail: &str) -> Result<(), ChannelError> {
        let (mut send, _recv) = self.stream.ready().await?;
        write_frame(&mut send, &Reply::refused(code, detail).encode()).await?;
        let _ = send.finish();
        Ok(())
    }
}

impl PendingStream {
    /// The stream, once there.
    async fn ready(self) -> Result<(SendStream, RecvStream), ChannelError> {
        match self {
            Self::Open(send, recv) => Ok((send, recv)),
            Self::Dialling(dialled) => match dialled.await {
                Ok(Ok(streams)) => Ok(streams),
                Ok(Err(e)) => Err(ChannelError::ConnectionLost(format!("cannot open the rendezvous: {}", chain(&e)))),
                Err(_) => Err(ChannelError::ConnectionLost("the rendezvous was given up".into())),
            },
        }
    }
}
