//! Handshake messages and their byte encoding.

use crate::address::{MAX_ADDRESS_LEN, validate_address};
use crate::codes::ErrorCode;
use crate::frame::{MAX_TOKEN_LEN, PROTOCOL_VERSION, ProtoError};
use crate::wire::{Reader, Writer};

const TAG_LISTEN: u8 = 1;
const TAG_CONNECT: u8 = 2;
const TAG_ACCEPTED: u8 = 3;
const TAG_REFUSED: u8 = 4;
const TAG_INCOMING: u8 = 5;
const TAG_RENEW_TOKEN: u8 = 6;
const TAG_GO_AWAY: u8 = 7;
const TAG_DIAL: u8 = 8;
const TAG_RENDEZVOUS: u8 = 9;
const TAG_OPEN: u8 = 12;

/// The flag of a [`Hello::Listen`] whose host takes HTTP requests.
const LISTEN_TAKES_HTTP: u8 = 1;

/// The longest relay URL a [`Control::Dial`] carries.
pub const MAX_DIAL_URL_LEN: usize = 1024;
/// The longest one-time rendezvous secret.
pub const MAX_SECRET_LEN: usize = 128;

const MAX_NAME_LEN: usize = 256;
const MAX_DETAIL_LEN: usize = 1024;
const MAX_METHODS: usize = 1024;

/// One method of a contract as carried on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodInfo {
    /// The method's name.
    pub name: String,
    /// The fingerprint of its signature.
    pub fingerprint: u64,
}

/// A named type within a contract's methods, as carried on the wire: what lets a host name the
/// type whose shape differs when it refuses a caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeInfo {
    /// The type's serde name.
    pub name: String,
    /// The fingerprint of its shape.
    pub fingerprint: u64,
}

/// A contract as carried on the wire: what a caller expects the listener to serve.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContractInfo {
    /// The contract's name; empty for an untyped channel.
    pub name: String,
    /// The fingerprint of the whole contract.
    pub fingerprint: u64,
    /// The methods the caller knows.
    pub methods: Vec<MethodInfo>,
    /// The named types of the methods' arguments and results (at most [`MAX_TYPES`] of them).
    pub types: Vec<TypeInfo>,
}

/// The most named types a [`ContractInfo`] carries.
pub const MAX_TYPES: usize = 256;

impl ContractInfo {
    pub(crate) fn write(&self, w: &mut Writer) {
        w.str(&self.name).u64(self.fingerprint);
        write_named(w, self.methods.iter().map(|m| (m.name.as_str(), m.fingerprint)), MAX_METHODS);
        write_named(w, self.types.iter().map(|t| (t.name.as_str(), t.fingerprint)), MAX_TYPES);
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, ProtoError> {
        let name = r.str("contract name", MAX_NAME_LEN)?.to_owned();
        let fingerprint = r.u64()?;
        let methods = read_named(r, ["method list", "method name"], MAX_METHODS)?;
        let types = read_named(r, ["type list", "type name"], MAX_TYPES)?;
        Ok(Self {
            name,
            fingerprint,
            methods: methods.into_iter().map(|(name, fingerprint)| MethodInfo { name, fingerprint }).collect(),
            types: types.into_iter().map(|(name, fingerprint)| TypeInfo { name, fingerprint }).collect(),
        })
    }
}

/// A list of names and fingerprints: its length, then each pair; at most `max` of them.
fn write_named<'a>(w: &mut Writer, pairs: impl ExactSizeIterator<Item = (&'a str, u64)>, max: usize) {
    w.u16(pairs.len().min(max) as u16);
    for (name, fingerprint) in pairs.take(max) {
        w.str(name).u64(fingerprint);
    }
}

/// Reads what [`write_named`] wrote; `[list, name]` name the list and its names in errors.
fn read_named(
    r: &mut Reader<'_>,
    [list, name]: [&'static str; 2],
    max: usize,
) -> Result<Vec<(String, u64)>, ProtoError> {
    let count = r.u16()? as usize;
    if count > max {
        return Err(ProtoError::FieldTooLong { field: list, len: count, max });
    }
    let mut pairs = Vec::with_capacity(count);
    for _ in 0..count {
        let name = r.str(name, MAX_NAME_LEN)?.to_owned();
        pairs.push((name, r.u64()?));
    }
    Ok(pairs)
}

/// The first frame on a stream a client opens to the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello {
    /// A host registers as a listener on `address`; the stream stays open as its control stream.
    Listen {
        /// The address to listen on.
        address: String,
        /// The credential, if any.
        token: Option<String>,
        /// Whether the host takes HTTP requests too, as channels whose contract is
        /// [`http_channel::CONTRACT`](crate::http_channel::CONTRACT). On the wire a flags byte
        /// after the token, written only when set, so hosts and relays that predate it agree.
        http: bool,
    },
    /// A caller opens a channel to `address`; after the reply the stream carries the channel.
    Connect {
        /// The address to call.
        address: String,
        /// The credential, if any.
        token: Option<String>,
        /// The contract the caller speaks.
        contract: ContractInfo,
    },
    /// A host answers a [`Control::Dial`]: this stream is the one-time rendezvous the relay node
    /// named, authorized by its secret (no token). The relay then writes an [`Incoming`] on it
    /// and reads the host's [`Reply`], as on a stream the relay opens itself.
    Rendezvous {
        /// The secret from the `Dial`.
        secret: String,
    },
}

impl Hello {
    /// The address named by the hello (empty for a rendezvous, which names none).
    pub fn address(&self) -> &str {
        match self {
            Self::Listen { address, .. } | Self::Connect { address, .. } => address,
            Self::Rendezvous { .. } => "",
        }
    }

    /// Encodes the message body (without the frame length).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::Listen { address, token, http } => {
                let mut w = Writer::new(PROTOCOL_VERSION, TAG_LISTEN);
                w.str(address).opt_str(token.as_deref());
                if *http {
                    w.u8(LISTEN_TAKES_HTTP);
                }
                w.finish()
            }
            Self::Connect { address, token, contract } => {
                let mut w = Writer::new(PROTOCOL_VERSION, TAG_CONNECT);
                w.str(address).opt_str(token.as_deref());
                contract.write(&mut w);
                w.finish()
            }
            Self::Rendezvous { secret } => Writer::new(PROTOCOL_VERSION, TAG_RENDEZVOUS).str(secret).finish(),
        }
    }

    /// Decodes a message body, validating the address.
    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        let (mut r, tag) = open(body)?;
        let hello = match tag {
            TAG_LISTEN => {
                let (address, token) = (address(&mut r)?, token(&mut r)?);
                let flags = if r.is_empty() { 0 } else { r.u8()? };
                Self::Listen { address, token, http: flags & LISTEN_TAKES_HTTP != 0 }
            }
            TAG_CONNECT => Self::Connect {
                address: address(&mut r)?,
                token: token(&mut r)?,
                contract: ContractInfo::read(&mut r)?,
            },
            TAG_RENDEZVOUS => Self::Rendezvous { secret: r.str("secret", MAX_SECRET_LEN)?.to_owned() },
            other => return Err(ProtoError::UnexpectedMessage(other)),
        };
        r.end()?;
        Ok(hello)
    }
}

/// A refusal: a code and a human-readable detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Why.
    pub code: ErrorCode,
    /// Details for a human; never holds secrets.
    pub detail: String,
}

/// The answer to a [`Hello`] or an [`Incoming`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Go ahead.
    Accepted,
    /// Go ahead: the relay's answer to a caller's [`Hello::Connect`], with the relay's id for the
    /// channel, which its listener was given too ([`Incoming::channel_id`]): logs on the caller,
    /// the relay and the host name the channel alike.
    Open {
        /// The relay's id for the channel.
        channel_id: u64,
    },
    /// Refused, with a reason.
    Refused(Refusal),
}

impl Reply {
    /// A refusal with `code` and `detail`.
    pub fn refused(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self::Refused(Refusal { code, detail: detail.into() })
    }

    /// Encodes the message body (without the frame length).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::Accepted => Writer::new(PROTOCOL_VERSION, TAG_ACCEPTED).finish(),
            Self::Open { channel_id } => Writer::new(PROTOCOL_VERSION, TAG_OPEN).u64(*channel_id).finish(),
            Self::Refused(Refusal { code, detail }) => {
                let mut end = detail.len().min(MAX_DETAIL_LEN);
                while !detail.is_char_boundary(end) {
                    end -= 1;
                }
                Writer::new(PROTOCOL_VERSION, TAG_REFUSED).u16(code.to_u16()).str(&detail[..end]).finish()
            }
        }
    }

    /// Decodes a message body.
    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        let (mut r, tag) = open(body)?;
        let reply = match tag {
            TAG_ACCEPTED => Self::Accepted,
            TAG_OPEN => Self::Open { channel_id: r.u64()? },
            TAG_REFUSED => Self::Refused(Refusal {
                code: ErrorCode::from_u16(r.u16()?),
                detail: r.str("detail", MAX_DETAIL_LEN)?.to_owned(),
            }),
            other => return Err(ProtoError::UnexpectedMessage(other)),
        };
        r.end()?;
        Ok(reply)
    }
}

/// The first frame on a stream the relay opens to a listener: a caller wants a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// The address the caller dialled.
    pub address: String,
    /// The relay's id for the channel, for logs on both sides.
    pub channel_id: u64,
    /// The contract the caller speaks.
    pub contract: ContractInfo,
}

impl Incoming {
    /// Encodes the message body (without the frame length).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(PROTOCOL_VERSION, TAG_INCOMING);
        w.str(&self.address).u64(self.channel_id);
        self.contract.write(&mut w);
        w.finish()
    }

    /// Decodes a message body.
    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        let (mut r, tag) = open(body)?;
        if tag != TAG_INCOMING {
            return Err(ProtoError::UnexpectedMessage(tag));
        }
        let incoming = Self { address: address(&mut r)?, channel_id: r.u64()?, contract: ContractInfo::read(&mut r)? };
        r.end()?;
        Ok(incoming)
    }
}

/// A message on a listener's control stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Host to relay: replaces the registration's token before it expires.
    RenewToken {
        /// The new token.
        token: String,
    },
    /// Relay to host: the relay is draining. It routes no new channel to this listener; the
    /// channels already open run until they finish or the relay's grace period ends. The host
    /// should register again, elsewhere (another relay node) or later, at once.
    GoAway,
    /// Relay to host (cluster mode): a caller on another relay node wants a channel to this
    /// listener. The host opens a stream to `url` (a connection of its own to that node) with a
    /// [`Hello::Rendezvous`] carrying `secret`, followed by its [`Reply`] to `channel` (the
    /// channel's header, which a stream the relay opens would carry): that node waits for the
    /// reply only, so the open costs no round trip to the host beyond the dial, and serves the
    /// stream as a channel it routed, so the channel's bytes never pass through this relay.
    Dial {
        /// The QUIC URL of the caller's node, `quic://host:port`.
        url: String,
        /// The one-time secret that node waits under.
        secret: String,
        /// The channel offered.
        channel: Incoming,
    },
}

impl Control {
    /// Encodes the message body (without the frame length).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::RenewToken { token } => Writer::new(PROTOCOL_VERSION, TAG_RENEW_TOKEN).str(token).finish(),
            Self::GoAway => Writer::new(PROTOCOL_VERSION, TAG_GO_AWAY).finish(),
            Self::Dial { url, secret, channel } => {
                let mut w = Writer::new(PROTOCOL_VERSION, TAG_DIAL);
                w.str(url).str(secret).str(&channel.address).u64(channel.channel_id);
                channel.contract.write(&mut w);
                w.finish()
            }
        }
    }

    /// Decodes a message body.
    pub fn decode(body: &[u8]) -> Result<Self, ProtoError> {
        let (mut r, tag) = open(body)?;
        let control = match tag {
            TAG_RENEW_TOKEN => Self::RenewToken { token: r.str("token", MAX_TOKEN_LEN)?.to_owned() },
            TAG_GO_AWAY => Self::GoAway,
            TAG_DIAL => Self::Dial {
                url: r.str("dial url", MAX_DIAL_URL_LEN)?.to_owned(),
                secret: r.str("secret", MAX_SECRET_LEN)?.to_owned(),
                channel: Incoming {
                    address: address(&mut r)?,
                    channel_id: r.u64()?,
                    contract: ContractInfo::read(&mut r)?,
                },
            },
            other => return Err(ProtoError::UnexpectedMessage(other)),
        };
        r.end()?;
        Ok(control)
    }
}

fn open(body: &[u8]) -> Result<(Reader<'_>, u8), ProtoError> {
    let mut r = Reader::new(body);
    let version = r.u8()?;
    if version != PROTOCOL_VERSION {
        return Err(ProtoError::UnsupportedVersion(version));
    }
    let tag = r.u8()?;
    Ok((r, tag))
}

fn address(r: &mut Reader<'_>) -> Result<String, ProtoError> {
    let address = r.str("address", MAX_ADDRESS_LEN)?;
    validate_address(address)?;
    Ok(address.to_owned())
}

fn token(r: &mut Reader<'_>) -> Result<Option<String>, ProtoError> {
    Ok(r.opt_str("token", MAX_TOKEN_LEN)?.map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contract() -> ContractInfo {
        ContractInfo {
            name: "Calculator".into(),
            fingerprint: 42,
            methods: vec![MethodInfo { name: "add".into(), fingerprint: 7 }],
            types: vec![TypeInfo { name: "Rec".into(), fingerprint: 3 }],
        }
    }

    #[test]
    fn messages_round_trip() {
        let hellos = [
            Hello::Listen { address: "calc".into(), token: None, http: false },
            Hello::Listen { address: "eu/calc".into(), token: Some("t".into()), http: false },
            Hello::Listen { address: "calc".into(), token: Some("t".into()), http: true },
            Hello::Connect { address: "calc".into(), token: Some("tok".into()), contract: contract() },
            Hello::Rendezvous { secret: "s3cret".into() },
        ];
        for hello in hellos {
            assert_eq!(Hello::decode(&hello.encode()), Ok(hello));
        }
        for reply in [Reply::Accepted, Reply::Open { channel_id: 7 }, Reply::refused(ErrorCode::NoListener, "x")] {
            assert_eq!(Reply::decode(&reply.encode()), Ok(reply));
        }
        let incoming = Incoming { address: "calc".into(), channel_id: 9, contract: contract() };
        assert_eq!(Incoming::decode(&incoming.encode()), Ok(incoming));
        let controls = [
            Control::RenewToken { token: "SharedAccessSignature sr=x".into() },
            Control::GoAway,
            Control::Dial {
                url: "quic://10.0.0.2:7443".into(),
                secret: "s3cret".into(),
                channel: Incoming { address: "calc".into(), channel_id: 9, contract: contract() },
            },
        ];
        for control in controls {
            assert_eq!(Control::decode(&control.encode()), Ok(control));
        }
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let body = Hello::Connect { address: "calc".into(), token: Some("tok".into()), contract: contract() }.encode();
        for len in 0..body.len() {
            assert!(Hello::decode(&body[..len]).is_err(), "prefix of {len} bytes accepted");
        }
    }

    #[test]
    fn refuses_garbage() {
        let mut body = Hello::Listen { address: "calc".into(), token: None, http: false }.encode();
        body.extend([0, 0]);
        assert_eq!(Hello::decode(&body), Err(ProtoError::TrailingBytes(1)));
        assert_eq!(Hello::decode(&[9, 1]), Err(ProtoError::UnsupportedVersion(9)));
        assert_eq!(Hello::decode(&[PROTOCOL_VERSION, 99]), Err(ProtoError::UnexpectedMessage(99)));
        assert_eq!(Reply::decode(&[PROTOCOL_VERSION, TAG_LISTEN]), Err(ProtoError::UnexpectedMessage(TAG_LISTEN)));
        let bad = Hello::Listen { address: "a/../b".into(), token: None, http: false }.encode();
        assert!(matches!(Hello::decode(&bad), Err(ProtoError::InvalidAddress(_))));
        let mut lying = vec![PROTOCOL_VERSION, TAG_LISTEN];
        lying.extend_from_slice(&u16::MAX.to_be_bytes());
        assert!(matches!(Hello::decode(&lying), Err(ProtoError::FieldTooLong { .. })));
    }

    #[test]
    fn the_handshake_fuzz_seeds_are_messages_of_this_version() {
        let seeds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/handshake");
        if std::env::var_os("RELAY_WRITE_SEEDS").is_some() {
            let channel = Incoming { address: "calc".into(), channel_id: 9, contract: contract() };
            let dial = Control::Dial { url: "quic://10.0.0.2:7443".into(), secret: "s3cret".into(), channel };
            std::fs::write(seeds.join("control-dial"), dial.encode()).unwrap();
            let listen = Hello::Listen { address: "calc".into(), token: Some("t".into()), http: true };
            std::fs::write(seeds.join("listen-http"), listen.encode()).unwrap();
            std::fs::write(seeds.join("reply-open"), Reply::Open { channel_id: 9 }.encode()).unwrap();
            let request = crate::http_channel::RequestHead {
                method: "POST".into(),
                target: "/calc/Calculator/add".into(),
                remote: "127.0.0.1:5000".into(),
                headers: vec![("content-type".into(), "application/json".into())],
            };
            std::fs::write(seeds.join("http-request-head"), request.encode()).unwrap();
            let response = crate::http_channel::ResponseHead { status: 200, headers: vec![("a".into(), "b".into())] };
            std::fs::write(seeds.join("http-response-head"), response.encode()).unwrap();
        }
        let mut count = 0;
        for entry in std::fs::read_dir(&seeds).unwrap() {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            let body = match crate::split_frame(&bytes, crate::MAX_HANDSHAKE_FRAME) {
                Ok(Some((body, used))) if used == bytes.len() && path.to_string_lossy().ends_with("-framed") => body,
                _ => &bytes[..],
            };
            let decodes = Hello::decode(body).is_ok()
                || Reply::decode(body).is_ok()
                || Incoming::decode(body).is_ok()
                || Control::decode(body).is_ok()
                || crate::http_channel::RequestHead::decode(body).is_ok()
                || crate::http_channel::ResponseHead::decode(body).is_ok();
            assert!(decodes, "{} is no message of version {PROTOCOL_VERSION}", path.display());
            count += 1;
        }
        assert!(count >= 10, "{count} seeds in {}", seeds.display());
    }
}
