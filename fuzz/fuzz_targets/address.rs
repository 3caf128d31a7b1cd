//! Address canonicalisation: what is accepted has no empty, `.` or `..` segment and no escape.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relay_proto::auth::path_covers;
use relay_proto::validate_address;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if validate_address(text).is_ok() {
        assert!(!text.is_empty() && text.len() <= relay_proto::MAX_ADDRESS_LEN);
        assert!(text.split('/').all(|s| !s.is_empty() && s != "." && s != ".."));
        assert!(!text.contains(['%', '\0', '\\']));
        assert!(path_covers(text, text));
        assert!(path_covers("", text));
    }
    if let Some((scope, address)) = text.split_once('|') {
        if path_covers(scope, address) && !scope.is_empty() {
            assert!(address.starts_with(scope));
        }
    }
});
