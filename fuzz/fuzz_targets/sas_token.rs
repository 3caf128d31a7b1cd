//! SAS token parsing, audiences and percent-decoding: no panics; whatever parses is canonical.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relay_proto::auth::percent::{decode as percent_decode, encode_component as percent_encode};
use relay_proto::auth::{Audience, SasToken};
use relay_proto::validate_address;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(token) = SasToken::parse(text) {
        let _ = token.verify("fuzz-key");
        let audience = token.audience();
        assert!(audience.path.is_empty() || validate_address(&audience.path).is_ok());
    }
    if let Some(audience) = Audience::parse(text) {
        assert!(audience.path.is_empty() || validate_address(&audience.path).is_ok());
        assert!(!audience.host.is_empty());
    }
    if let Some(decoded) = percent_decode(text) {
        // Encoding then decoding gives back the text exactly.
        assert_eq!(percent_decode(&percent_encode(&decoded)).as_deref(), Some(decoded.as_str()));
    }
});
