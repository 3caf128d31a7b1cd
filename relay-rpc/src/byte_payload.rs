//! `Vec<u8>` arguments and results as one byte string: serde's own `Vec<u8>` goes byte by byte
//! as a sequence, which is dozens of times slower than a copy for large payloads. The generated
//! code wraps such fields in these; bincode puts the same bytes on the wire either way.

use serde::de::{Deserialize, Deserializer, Error, SeqAccess, Visitor};
use serde::ser::{Serialize, Serializer};

/// Serializes a byte slice as one byte string.
#[derive(Debug)]
pub struct AsBytes<'a>(pub &'a [u8]);

impl Serialize for AsBytes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

/// Deserializes a `Vec<u8>` from a byte string (or, for formats without one, a sequence).
#[derive(Debug)]
pub struct ByteBuf(pub Vec<u8>);

impl<'de> Deserialize<'de> for ByteBuf {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_byte_buf(ByteBufVisitor).map(ByteBuf)
    }
}

struct ByteBufVisitor;

impl<'de> Visitor<'de> for ByteBufVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_bytes<E: Error>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
        Ok(bytes.to_vec())
    }

    fn visit_byte_buf<E: Error>(self, bytes: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(bytes)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        // The hint comes from the peer: cap what it may make us reserve.
        let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64 * 1024));
        while let Some(byte) = seq.next_element()? {
            bytes.push(byte);
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_bytes_on_the_wire_as_a_plain_vec() {
        let payload: Vec<u8> = (0..=255).cycle().take(100_000).collect();
        let plain = bincode::serialize(&payload).unwrap();
        assert_eq!(bincode::serialize(&AsBytes(&payload)).unwrap(), plain);
        let ByteBuf(back) = bincode::deserialize(&plain).unwrap();
        assert_eq!(back, payload);
        let json = serde_json::to_string(&payload).unwrap();
        assert_eq!(serde_json::from_str::<ByteBuf>(&json).unwrap().0, payload, "sequences still decode");
        assert!(bincode::deserialize::<ByteBuf>(&plain[..plain.len() - 1]).is_err(), "truncated");
    }
}
