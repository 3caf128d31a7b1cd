//! The messages relay nodes exchange over NATS: every decoder takes any bytes without panicking
//! (and allocates nothing a body's length does not back), and whatever decodes re-encodes to
//! something that decodes to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relay_proto::cluster::{Delta, Heartbeat, OpenReply, OpenRequest, SnapshotChunk, SnapshotRequest};
use relay_proto::validate_address;

fuzz_target!(|data: &[u8]| {
    if let Ok(heartbeat) = Heartbeat::decode(data) {
        assert_eq!(Heartbeat::decode(&heartbeat.encode()), Ok(heartbeat));
    }
    if let Ok(delta) = Delta::decode(data) {
        assert!(validate_address(&delta.address).is_ok());
        assert_eq!(Delta::decode(&delta.encode()), Ok(delta));
    }
    if let Ok(request) = SnapshotRequest::decode(data) {
        assert_eq!(SnapshotRequest::decode(&request.encode()), Ok(request));
    }
    if let Ok(chunk) = SnapshotChunk::decode(data) {
        assert!(chunk.entries.len() <= data.len());
        assert_eq!(SnapshotChunk::decode(&chunk.encode()), Ok(chunk));
    }
    if let Ok(request) = OpenRequest::decode(data) {
        assert!(validate_address(&request.address).is_ok());
        assert_eq!(OpenRequest::decode(&request.encode()), Ok(request));
    }
    if let Ok(reply) = OpenReply::decode(data) {
        assert_eq!(OpenReply::decode(&reply.encode()), Ok(reply));
    }
});
