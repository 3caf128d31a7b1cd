//! The benchmark's contract and its implementation, served by the host process over the relay
//! and, for the baselines, directly over plain TCP and over TLS.

use bytes::Bytes;

/// What the benchmark calls: echoes of byte payloads.
///
/// `echo` carries [`Bytes`], which serde hands to bincode as one byte string (a length and a
/// copy). `echo_vec` carries `Vec<u8>`, which serde encodes and decodes element by element: it
/// is measured once per transport to show what that costs.
#[relay_rpc::relay_service]
pub trait Bench {
    /// Returns `payload` as it came.
    async fn echo(payload: Bytes) -> Bytes;
    /// Returns `payload` as it came, as a `Vec<u8>`.
    async fn echo_vec(payload: Vec<u8>) -> Vec<u8>;
}

/// The implementation: returns what it is given.
#[derive(Debug, Clone, Copy, Default)]
pub struct Echo;

impl Bench for Echo {
    async fn echo(&self, payload: Bytes) -> Bytes {
        payload
    }

    async fn echo_vec(&self, payload: Vec<u8>) -> Vec<u8> {
        payload
    }
}

/// The address the host listens on over QUIC.
pub const QUIC_ADDRESS: &str = "bench-quic";
/// The address the host listens on over WebSocket.
pub const WSS_ADDRESS: &str = "bench-wss";

/// A payload of `len` bytes that is not all zeros.
pub fn payload(len: usize) -> Bytes {
    (0..len).map(|i| (i % 251) as u8).collect::<Vec<u8>>().into()
}
