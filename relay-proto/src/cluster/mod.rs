//! What relay nodes of one cluster say to each other over NATS, and the subjects they say it on.
//! Sans-IO: message bodies in and out, each decoded under a size limit.
//!
//! Each node is the only writer of its own entries: it publishes a [`Heartbeat`] every
//! `heartbeat_ms` on [`Subjects::heartbeat`], a [`Delta`] on [`Subjects::delta`] whenever the
//! count of its listeners on an address changes, and answers [`SnapshotRequest`]s for its whole
//! list (in [`SnapshotChunk`]s) and [`OpenRequest`]s (with an [`OpenReply`]) on subjects that name
//! it. Addresses never appear in subjects (they may hold `.`), only in bodies.

use std::collections::BTreeMap;
use std::fmt;

use crate::address::{MAX_ADDRESS_LEN, validate_address};
use crate::codes::ErrorCode;
use crate::frame::ProtoError;
use crate::hc::Accept;
use crate::message::{ContractInfo, MAX_DIAL_URL_LEN, MAX_SECRET_LEN, Refusal};
use crate::wire::{Reader, Writer};

/// The version byte of every cluster message; a node drops messages of another version.
pub const CLUSTER_VERSION: u8 = 3;
/// The largest cluster message but a snapshot chunk.
pub const MAX_CLUSTER_MESSAGE: usize = 64 * 1024;
/// The largest snapshot chunk (within NATS's default 1 MB payload limit).
pub const MAX_SNAPSHOT_CHUNK: usize = 512 * 1024;
/// The longest cluster name (a subject token).
pub const MAX_CLUSTER_NAME_LEN: usize = 64;

const TAG_HEARTBEAT: u8 = 1;
const TAG_DELTA: u8 = 2;
const TAG_SNAPSHOT_REQUEST: u8 = 3;
const TAG_SNAPSHOT_CHUNK: u8 = 4;
const TAG_OPEN_REQUEST: u8 = 5;
const TAG_OPEN_NOTIFIED: u8 = 6;
const TAG_OPEN_REFUSED: u8 = 7;

const MAX_DETAIL_LEN: usize = 1024;
/// Bytes a snapshot chunk needs besides its entries.
const CHUNK_OVERHEAD: usize = 64;

/// Why a cluster message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterDecodeError {
    /// The body is longer than any legitimate message of its kind.
    #[error("cluster message of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The body's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The body is not a message of the kind expected, or not well formed.
    #[error("malformed cluster message")]
    Malformed(#[from] ProtoError),
}

/// A node's identity: random, new each time a relay process starts.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub [u8; 16]);

impl NodeId {
    /// Parses the 32 lowercase hex digits of [`Display`](fmt::Display).
    pub fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 32 {
            return None;
        }
        let mut bytes = [0u8; 16];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Self(bytes))
    }

    fn write(&self, w: &mut Writer) {
        w.u64(u64::from_be_bytes(self.0[..8].try_into().unwrap_or_default()));
        w.u64(u64::from_be_bytes(self.0[8..].try_into().unwrap_or_default()));
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, ProtoError> {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&r.u64()?.to_be_bytes());
        bytes[8..].copy_from_slice(&r.u64()?.to_be_bytes());
        Ok(Self(bytes))
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

/// A cluster name that is not a usable subject token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cluster name {0:?} must be 1 to 64 characters of A-Z, a-z, 0-9, '-' and '_'")]
pub struct ClusterNameError(pub String);

/// The NATS subjects of one cluster: `relay.<name>.…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
}

impl Subjects {
    /// The subjects of the cluster `name`.
    pub fn new(name: &str) -> Result<Self, ClusterNameError> {
        let valid = !name.is_empty()
            && name.len() <= MAX_CLUSTER_NAME_LEN
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(ClusterNameError(name.to_owned()));
        }
        Ok(Self { prefix: format!("relay.{name}") })
    }

    /// Where every node publishes its heartbeats.
    pub fn heartbeat(&self) -> String {
        format!("{}.hb", self.prefix)
    }

    /// Where every node publishes its registration deltas.
    pub fn delta(&self) -> String {
        format!("{}.reg", self.prefix)
    }

    /// Where `node` answers snapshot requests.
    pub fn snapshot(&self, node: NodeId) -> String {
        format!("{}.node.{node}.snap", self.prefix)
    }

    /// Where `node` answers open requests.
    pub fn open(&self, node: NodeId) -> String {
        format!("{}.node.{node}.open", self.prefix)
    }
}

/// A node is alive, and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// The node.
    pub node: NodeId,
    /// The sequence number of its latest [`Delta`]: a node that missed one asks for a snapshot.
    pub seq: u64,
    /// Its public QUIC URL, `quic://host:port`: where listeners dial rendezvous for its callers.
    pub quic_url: String,
    /// Its public `wss://` URL, if it serves WebSockets.
    pub wss_url: Option<String>,
    /// A fingerprint of its keys: nodes whose keys differ refuse each other.
    pub fingerprint: u64,
    /// Whether it is draining (no new channels should go to it).
    pub draining: bool,
    /// Listeners registered on it now.
    pub listeners: u64,
    /// Channels open through it now.
    pub open_channels: u64,
    /// Bytes it has relayed between channel ends since it started.
    pub relayed_bytes: u64,
}

impl Heartbeat {
    /// Encodes the message body.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(CLUSTER_VERSION, TAG_HEARTBEAT);
        self.node.write(&mut w);
        w.u64(self.seq).str(&self.quic_url).opt_str(self.wss_url.as_deref()).u64(self.fingerprint);
        w.u8(u8::from(self.draining)).u64(self.listeners).u64(self.open_channels).u64(self.relayed_bytes);
        w.finish()
    }

    /// Decodes a message body.
    pub fn decode(body: &[u8]) -> Result<Self, ClusterDecodeError> {
        let mut r = open(body, MAX_CLUSTER_MESSAGE, TAG_HEARTBEAT)?;
        let heartbeat = Self {
            node: NodeId::read(&mut r)?,
            seq: r.u64()?,
            quic_url: r.str("quic url", MAX_DIAL_URL_LEN)?.to_owned(),
            wss_url: r.opt_str("wss url", MAX_DIAL_URL_LEN)?.map(str::to_owned),
            fingerprint: r.u64()?,
            draining: r.u8()? != 0,
            listeners: r.u64()?,
            open_channels: r.u64()?,
            relayed_bytes: r.u64()?,
        };
        r.end()?;
        Ok(heartbeat)
    }
}

/// The count of a node's listeners on one address changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delta {
    /// The node.
    pub node: NodeId,
    /// One more than its previous delta's.
    pub seq: u64,
    /// The address.
    pub address: String,
    /// Its listeners on the address now; 0: none left.
    pub listeners: u32,
}

impl Delta {
    /// Encodes the message body.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(CLUSTER_VERSION, TAG_DELTA);
        self.node.write(&mut w);
        w.u64(self.seq).str(&self.address).u64(u64::from(self.listeners));
        w.finish()
    }

    /// Decodes a message body, validating the address.
    pub fn decode(body: &[u8]) -> Result<Self, ClusterDecodeError> {
        let mut r = open(body, MAX_CLUSTER_MESSAGE, TAG_DELTA)?;
        let delta =
            Self { node: NodeId::read(&mut r)?, seq: r.u64()?, address: address(&mut r)?, listeners: count(&mut r)? };
        r.end()?;
        Ok(delta)
    }
}

/// Asks a node for its list of addresses, from entry `from` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotRequest {
    /// The first entry wanted (0, then a chunk's `next`).
    pub from: u32,
}

impl SnapshotRequest {
    /// Encodes the message body.
    pub fn encode(&self) -> Vec<u8> {
        Writer::new(CLUSTER_VERSION, TAG_SNAPSHOT_REQUEST).u64(u64::from(self.from)).finish()
    }

    /// Decodes a message body.
    pub fn decode(body: &[u8]) -> Result<Self, ClusterDecodeError> {
        let mut r = open(body, MAX_CLUSTER_MESSAGE, TAG_SNAPSHOT_REQUEST)?;
        let request = Self { from: count(&mut r)? };
        r.end()?;
        Ok(request)
    }
}

/// A page of a node's list: address and listener count pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotChunk {
    /// The node.
    pub node: NodeId,
    /// The sequence number of its latest delta when the chunk was made.
    pub seq: u64,
    /// Addresses with their listener counts.
    pub entries: Vec<(String, u32)>,
    /// The entry the next chunk starts at; `None` for the last chunk.
    pub next: Option<u32>,
}

impl SnapshotChunk {
    /// The chunk of `entries` starting at `from`, as many as fit in [`MAX_SNAPSHOT_CHUNK`].
    pub fn page(node: NodeId, seq: u64, entries: &[(String, u32)], from: u32) -> Self {
        let start = (from as usize).min(entries.len());
        let mut size = CHUNK_OVERHEAD;
        let mut end = start;
        while end < entries.len() {
            let entry = 2 + entries[end].0.len() + 8;
            if size + entry > MAX_SNAPSHOT_CHUNK {
                break;
            }
            size += entry;
            end += 1;
        }
        let next = (end < entries.len()).then(|| u32::try_from(end).unwrap_or(u32::MAX));
        Self { node, seq, entries: entries[start..end].to_vec(), next }
    }

    /// Encodes the message body.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(CLUSTER_VERSION, TAG_SNAPSHOT_CHUNK);
        self.node.write(&mut w);
        w.u64(self.seq).u64(self.entries.len() as u64);
        for (address, listeners) in &self.entries {
            w.str(address).u64(u64::from(*listeners));
        }
        match self.next {
            Some(next) => w.u8(1).u64(u64::from(next)),
            None => w.u8(0),
        };
        w.finish()
    }

    /// Decodes a message body, validating every address.
    pub fn decode(body: &[u8]) -> Result<Self, ClusterDecodeError> {
        let mut r = open(body, MAX_SNAPSHOT_CHUNK, TAG_SNAPSHOT_CHUNK)?;
        let node = NodeId::read(&mut r)?;
        let seq = r.u64()?;
        let claimed = r.u64()?;
        // Each entry takes at least 10 bytes: a count beyond what the body holds is a lie, and
        // nothing is allocated for it.
        let most = body.len() / 10;
        if claimed > most as u64 {
            return Err(ProtoError::FieldTooLong { field: "snapshot entries", len: claimed as usize, max: most }.into());
        }
        let mut entries = Vec::with_capacity(claimed as usize);
        for _ in 0..claimed {
            entries.push((address(&mut r)?, count(&mut r)?));
        }
        let next = match r.u8()? {
            0 => None,
            _ => Some(count(&mut r)?),
        };
        r.end()?;
        Ok(Self { node, seq, entries, next })
    }
}

/// A caller's node asks a listener's node to have one of its listeners on `address` dial a
/// one-time rendezvous on the caller's node: a QUIC host dials `url` with `secret`; a Hybrid
/// Connections listener is sent `accept` as it is (its rendezvous address names the caller's
/// node and carries the same secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenRequest {
    /// The registered address.
    pub address: String,
    /// The path the caller used (the address plus any suffix).
    pub path: String,
    /// The caller's node's id for the channel, for logs.
    pub channel_id: u64,
    /// The caller's node's public QUIC URL, where a QUIC listener dials.
    pub url: String,
    /// The one-time secret the caller's node waits under.
    pub secret: String,
    /// The caller's contract, for the channel's header a QUIC host is sent.
    pub contract: ContractInfo,
    /// The notification for a Hybrid Connections listener; `None` when the caller's node serves
    /// no WebSockets, so that only QUIC listeners can take the channel.
    pub accept: Option<Accept>,
    /// Listeners of the node not to pick (multicast subscribers the caller's node has already),
    /// at most [`MAX_EXCLUDED`].
    pub exclude: Vec<u64>,
    /// An HTTP-mode request rather than a channel: only a Hybrid Connections listener of an
    /// HTTP-enabled address takes it, sent a `request` notice naming only `accept`'s address (the
    /// request's rendezvous on the caller's node) and id; the request goes over that rendezvous.
    pub http: bool,
}

/// The most listeners one [`OpenRequest`] may exclude.
pub const MAX_EXCLUDED: usize = 4096;
/// The most headers an [`OpenRequest`]'s accept notification may carry.
pub const MAX_ACCEPT_HEADERS: usize = 256;
/// The longest rendezvous address in an accept notification.
const MAX_ACCEPT_ADDRESS_LEN: usize = 16 * 1024;
/// The longest connection id in an accept notification.
const MAX_ACCEPT_ID_LEN: usize = 1024;
/// The longest header name or value in an accept notification.
const MAX_HEADER_LEN: usize = 16 * 1024;

impl OpenRequest {
    /// Encodes the message body (its parts cut to their limits, which no request built from a
    /// validated caller reaches).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(CLUSTER_VERSION, TAG_OPEN_REQUEST);
        w.str(&self.address).str(&self.path).u64(self.channel_id).str(&self.url).str(&self.secret);
        self.contract.write(&mut w);
        match &self.accept {
            None => {
                w.u8(0);
            }
            Some(accept) => {
                w.u8(1).str(&accept.address).str(&accept.id);
                let headers = accept.connect_headers.iter().take(MAX_ACCEPT_HEADERS);
                w.u16(headers.len() as u16);
                for (name, value) in headers {
                    w.str(name).str(value);
                }
            }
        }
        let exclude = &self.exclude[..self.exclude.len().min(MAX_EXCLUDED)];
        w.u16(exclude.len() as u16);
        for id in exclude {
            w.u64(*id);
        }
        w.u8(u8::from(self.http));
        w.finish()
    }

    /// Decodes a message body, validating the address.
    pub fn decode(body: &[u8]) -> Result<Self, ClusterDecodeError> {
        let mut r = open(body, MAX_CLUSTER_MESSAGE, TAG_OPEN_REQUEST)?;
        let mut request = Self {
            address: address(&mut r)?,
            path: r.str("path", MAX_ADDRESS_LEN)?.to_owned(),
            channel_id: r.u64()?,
            url: r.str("dial url", MAX_DIAL_URL_LEN)?.to_owned(),
            secret: r.str("secret", MAX_SECRET_LEN)?.to_owned(),
            contract: ContractInfo::read(&mut r)?,
            accept: None,
            exclude: Vec::new(),
            http: false,
        };
        if r.u8()? != 0 {
            let address = r.str("accept address", MAX_ACCEPT_ADDRESS_LEN)?.to_owned();
            let id = r.str("accept id", MAX_ACCEPT_ID_LEN)?.to_owned();
            let headers = bounded(r.u16()?, MAX_ACCEPT_HEADERS, "headers")?;
            let mut connect_headers = BTreeMap::new();
            for _ in 0..headers {
                let name = r.str("header name", MAX_HEADER_LEN)?.to_owned();
                connect_headers.insert(name, r.str("header value", MAX_HEADER_LEN)?.to_owned());
            }
            request.accept = Some(Accept { address, id, connect_headers });
        }
        let excluded = bounded(r.u16()?, MAX_EXCLUDED, "excluded listeners")?;
        // Each id takes 8 bytes of the body: a count the body cannot back fails as it is read.
        for _ in 0..excluded {
            request.exclude.push(r.u64()?);
        }
        request.http = match r.u8()? {
            0 => false,
            1 => true,
            other => return Err(ProtoError::InvalidValue { field: "http flag", value: other.into() }.into()),
        };
        r.end()?;
        Ok(request)
    }
}

/// What kind of listener took an [`OpenRequest`], so that the caller's node waits for its
/// rendezvous as long as that kind may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    /// A native host over QUIC: dials within the handshake timeout.
    Quic,
    /// A Hybrid Connections listener: opens the rendezvous within the rendezvous timeout.
    HybridConnection,
}

/// A listener's node's answer to an [`OpenRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenReply {
    /// A listener was told to dial the rendezvous.
    Notified {
        /// The listener's id on its node (for a multicast publisher's next request to exclude).
        listener: u64,
        /// What kind of listener it is.
        kind: ListenerKind,
    },
    /// No listener was told: why (no listener there any more, all busy, draining).
    Refused(Refusal),
}

impl OpenReply {
    /// Encodes the message body.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::Notified { listener, kind } => {
                let kind = match kind {
                    ListenerKind::Quic => 0,
                    ListenerKind::HybridConnection => 1,
                };
                Writer::new(CLUSTER_VERSION, TAG_OPEN_NOTIFIED).u64(*listener).u8(kind).finish()
            }
            Self::Refused(Refusal { code, detail }) => {
                let mut end = detail.len().min(MAX_DETAIL_LEN);
                while !detail.is_char_boundary(end) {
                    end -= 1;
                }
                Writer::new(CLUSTER_VERSION, TAG_OPEN_REFUSED).u16(code.to_u16()).str(&detail[..end]).finish()
            }
        }
    }

    /// Decodes a message body.
    pub fn decode(body: &[u8]) -> Result<Self, ClusterDecodeError> {
        let (mut r, tag) = open_any(body, MAX_CLUSTER_MESSAGE)?;
        let reply = match tag {
            TAG_OPEN_NOTIFIED => Self::Notified {
                listener: r.u64()?,
                kind: match r.u8()? {
                    0 => ListenerKind::Quic,
                    1 => ListenerKind::HybridConnection,
                    other => {
                        return Err(ProtoError::InvalidValue { field: "listener kind", value: other.into() }.into());
                    }
                },
            },
            TAG_OPEN_REFUSED => Self::Refused(Refusal {
                code: ErrorCode::from_u16(r.u16()?),
                detail: r.str("detail", MAX_DETAIL_LEN)?.to_owned(),
            }),
            other => return Err(ProtoError::UnexpectedMessage(other).into()),
        };
        r.end()?;
        Ok(reply)
    }
}

fn bounded(n: u16, max: usize, field: &'static str) -> Result<usize, ProtoError> {
    let n = usize::from(n);
    if n > max {
        return Err(ProtoError::FieldTooLong { field, len: n, max });
    }
    Ok(n)
}

fn open_any(body: &[u8], max: usize) -> Result<(Reader<'_>, u8), ClusterDecodeError> {
    if body.len() > max {
        return Err(ClusterDecodeError::TooLarge { len: body.len(), max });
    }
    let mut r = Reader::new(body);
    let version = r.u8()?;
    if version != CLUSTER_VERSION {
        return Err(ProtoError::UnsupportedVersion(version).into());
    }
    let tag = r.u8()?;
    Ok((r, tag))
}

fn open(body: &[u8], max: usize, expected: u8) -> Result<Reader<'_>, ClusterDecodeError> {
    let (r, tag) = open_any(body, max)?;
    if tag != expected {
        return Err(ProtoError::UnexpectedMessage(tag).into());
    }
    Ok(r)
}

fn address(r: &mut Reader<'_>) -> Result<String, ProtoError> {
    let address = r.str("address", MAX_ADDRESS_LEN)?;
    validate_address(address)?;
    Ok(address.to_owned())
}

fn count(r: &mut Reader<'_>) -> Result<u32, ProtoError> {
    let n = r.u64()?;
    u32::try_from(n).map_err(|_| ProtoError::FieldTooLong { field: "count", len: n as usize, max: u32::MAX as usize })
}

#[cfg(test)]
mod tests;
