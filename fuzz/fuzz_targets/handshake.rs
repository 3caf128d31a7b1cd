//! The native handshake codec and the heads of HTTP requests carried on channels: every decoder
//! takes any bytes without panicking, and whatever decodes re-encodes to something that decodes
//! to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relay_proto::http_channel::{RequestHead, ResponseHead};
use relay_proto::{self as proto, Control, Hello, Incoming, Reply};

fuzz_target!(|data: &[u8]| {
    if let Ok(hello) = Hello::decode(data) {
        // A rendezvous names no address: its secret stands for the channel.
        if !matches!(hello, Hello::Rendezvous { .. }) {
            assert!(proto::validate_address(hello.address()).is_ok());
        }
        assert_eq!(Hello::decode(&hello.encode()), Ok(hello));
    }
    if let Ok(reply) = Reply::decode(data) {
        assert_eq!(Reply::decode(&reply.encode()), Ok(reply));
    }
    if let Ok(incoming) = Incoming::decode(data) {
        assert_eq!(Incoming::decode(&incoming.encode()), Ok(incoming));
    }
    if let Ok(control) = Control::decode(data) {
        assert_eq!(Control::decode(&control.encode()), Ok(control));
    }
    if let Ok(head) = RequestHead::decode(data) {
        assert_eq!(RequestHead::decode(&head.encode()), Ok(head));
    }
    if let Ok(head) = ResponseHead::decode(data) {
        assert_eq!(ResponseHead::decode(&head.encode()), Ok(head));
    }
    if let Some(header) = data.first_chunk::<{ proto::FRAME_HEADER_LEN }>() {
        if let Ok(len) = proto::decode_frame_len(*header, proto::MAX_HANDSHAKE_FRAME) {
            assert!(len <= proto::MAX_HANDSHAKE_FRAME);
        }
    }
    // The control stream's reader: a whole frame, within bounds, or none yet.
    if let Ok(Some((body, taken))) = proto::split_frame(data, 1024) {
        assert!(body.len() <= 1024 && taken == body.len() + proto::FRAME_HEADER_LEN && taken <= data.len());
    }
});
