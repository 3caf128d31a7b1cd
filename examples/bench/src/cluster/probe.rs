//! What the cluster figures time besides calls: channel opens on an existing connection, and
//! NATS request-reply round trips through the cluster's NATS server.

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use futures::StreamExt as _;
use relay_rpc::{Connection, OpenError};
use tokio::task::JoinSet;

use crate::contract::{BenchClient, QUIC_ADDRESS};

/// How long one channel open may take before the bench gives up on it.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting to NATS, subscribing, or one request may take.
const NATS_TIMEOUT: Duration = Duration::from_secs(10);

/// Times `count` channel opens to the bench host's QUIC address on `connection`, one after the
/// other, into `opens`. Each is the time from asking to the host's acceptance reaching the
/// caller (the contract check included); each channel is closed before the next opens, so the
/// host and the relay have one at a time.
pub async fn time_opens(connection: &Connection, count: usize, opens: &mut Vec<Duration>) -> anyhow::Result<()> {
    for _ in 0..count {
        let start = Instant::now();
        let client = tokio::time::timeout(OPEN_TIMEOUT, BenchClient::connect(connection, QUIC_ADDRESS))
            .await
            .with_context(|| format!("opening a channel timed out after {OPEN_TIMEOUT:?}"))?
            .context("opening a channel")?;
        opens.push(start.elapsed());
        drop(client);
    }
    Ok(())
}

/// Times `count` channel opens on `connection` to [`UNHEARD_ADDRESS`], where no host of the
/// cluster listens, one after the other, into `opens`: each is refused by the relay itself,
/// which asks no listener and no other node. That is the caller's round trip to its node in an
/// open, the part of a same-node open that is not the listener's.
pub async fn time_refused_opens(
    connection: &Connection,
    count: usize,
    opens: &mut Vec<Duration>,
) -> anyhow::Result<()> {
    for _ in 0..count {
        let start = Instant::now();
        let refused = tokio::time::timeout(OPEN_TIMEOUT, BenchClient::connect(connection, UNHEARD_ADDRESS))
            .await
            .with_context(|| format!("opening a channel timed out after {OPEN_TIMEOUT:?}"))?;
        opens.push(start.elapsed());
        match refused {
            Err(OpenError::NoListener { .. }) => {}
            Err(e) => return Err(e).context("opening a channel to an address without listeners"),
            Ok(_) => anyhow::bail!("a channel to {UNHEARD_ADDRESS}, where no host listens, was opened"),
        }
    }
    Ok(())
}

/// An address no host of the bench listens on.
pub const UNHEARD_ADDRESS: &str = "bench-unheard";

/// A NATS responder that echoes each request, and a client of its own asking it: what one
/// relay node's open request to another costs in NATS alone (two client connections, one
/// server, tiny payloads). The responder stops when this is dropped.
#[derive(Debug)]
pub struct NatsProbe {
    requester: async_nats::Client,
    subject: String,
    _responder: JoinSet<()>,
}

impl NatsProbe {
    /// Connects the responder and the requester to the NATS server at `url`.
    pub async fn start(url: &str) -> anyhow::Result<Self> {
        let subject = format!("relay-bench.rtt.{}", std::process::id());
        let responder = connect(url).await?;
        let mut requests = within(responder.subscribe(subject.clone()), "subscribing").await?;
        // Once flushed, the server has the subscription: the first request finds a responder.
        within(responder.flush(), "flushing the subscription").await?;
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            while let Some(request) = requests.next().await {
                if let Some(reply) = request.reply
                    && tokio::time::timeout(NATS_TIMEOUT, responder.publish(reply, request.payload)).await.is_err()
                {
                    break;
                }
            }
        });
        Ok(Self { requester: connect(url).await?, subject, _responder: tasks })
    }

    /// Times `count` request-reply round trips of an 8-byte payload, one after the other, into
    /// `round_trips`.
    pub async fn time_round_trips(&self, count: usize, round_trips: &mut Vec<Duration>) -> anyhow::Result<()> {
        let payload = bytes::Bytes::from_static(b"rtt-prob");
        for _ in 0..count {
            let start = Instant::now();
            let reply = within(self.requester.request(self.subject.clone(), payload.clone()), "a request").await?;
            round_trips.push(start.elapsed());
            ensure!(reply.payload == payload, "the NATS reply came back different");
        }
        Ok(())
    }
}

/// A NATS client of the server at `url`.
async fn connect(url: &str) -> anyhow::Result<async_nats::Client> {
    let connect = async_nats::ConnectOptions::new().name("relay-bench").connection_timeout(NATS_TIMEOUT).connect(url);
    within(connect, &format!("connecting to {url}")).await
}

/// Awaits `step` for at most [`NATS_TIMEOUT`]; `what` names it in errors.
async fn within<T, E>(step: impl Future<Output = Result<T, E>>, what: &str) -> anyhow::Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    tokio::time::timeout(NATS_TIMEOUT, step)
        .await
        .with_context(|| format!("NATS: {what} timed out after {NATS_TIMEOUT:?}"))?
        .with_context(|| format!("NATS: {what}"))
}
