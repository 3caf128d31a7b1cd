//! Hybrid Connections inputs from the network: request targets, JSON control messages, contract
//! headers and status descriptions. No panics; parsed targets name valid addresses, and nothing a
//! sender wrote reaches a listener's accept URL as a fragment, a backslash, a dot segment or a
//! parameter named like the relay's own.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relay_proto::hc::{self, ControlMessage, Target};
use relay_proto::{ContractInfo, validate_address};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(target) = Target::parse(text) {
        assert!(hc::address_prefixes(&target.path).next().is_some());
        assert!(!target.path.contains(['#', '\\']));
        assert!(!target.path.split('/').any(|s| s == "." || s == ".."));
        for param in &target.passthrough {
            assert!(!param.contains(['#', '\\']));
            let name = param.split('=').next().unwrap_or_default();
            let decoded = relay_proto::auth::percent::decode(name).unwrap_or_default();
            assert!(!decoded.to_ascii_lowercase().starts_with("sb-hc-"), "{param}");
        }
    }
    let _ = Target::raw_param(text, "sb-hc-rendezvous");
    for prefix in hc::address_prefixes(text) {
        assert!(validate_address(prefix).is_ok());
    }
    if let Ok(message) = serde_json::from_str::<ControlMessage>(text) {
        let json = serde_json::to_string(&message).expect("serializable");
        assert_eq!(serde_json::from_str::<ControlMessage>(&json).ok(), Some(message));
    }
    if let Some(contract) = ContractInfo::from_header(text) {
        let _ = contract.to_header();
    }
    let status = data.first().map_or(0, |b| 400 + u16::from(*b));
    let _ = hc::error_code(status, text);
});
