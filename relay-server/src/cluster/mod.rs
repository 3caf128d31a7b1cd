//! Cluster mode's state, sans-IO: this node's view of the others ([`view`]) and what it tells
//! them about its own listeners ([`local`]), plus the identity it joins with. The NATS driver
//! (`crate::peers`) feeds them messages and the time, and acts on their decisions.

pub(crate) mod local;
pub(crate) mod view;

use relay_proto::auth::SharedAccessKey;
use relay_proto::cluster::NodeId;
use ring::digest::{SHA256, digest};
use ring::rand::{SecureRandom, SystemRandom};

use crate::config::KeyConfig;

/// A fresh random node id: a node is a new node each time its process starts.
pub(crate) fn new_node_id() -> NodeId {
    let mut bytes = [0u8; 16];
    if SystemRandom::new().fill(&mut bytes).is_err() {
        // No randomness: the time and the process id still tell two starts apart.
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        bytes[..8].copy_from_slice(&(nanos as u64).to_be_bytes());
        bytes[8..12].copy_from_slice(&std::process::id().to_be_bytes());
    }
    NodeId(bytes)
}

/// A fingerprint of the keys a node accepts tokens from: the root key and the configured keys.
/// Nodes whose fingerprints differ would refuse each other's callers' tokens, so they refuse each
/// other instead. One-way: it shows that keys differ, never what they are.
pub(crate) fn key_fingerprint(root: Option<&SharedAccessKey>, keys: &[KeyConfig]) -> u64 {
    let mut material = b"relay cluster key fingerprint v1\0".to_vec();
    let mut push = |field: &str| {
        material.extend_from_slice(&(field.len() as u64).to_be_bytes());
        material.extend_from_slice(field.as_bytes());
    };
    if let Some(root) = root {
        push(root.name());
        push(root.secret());
    }
    let mut sorted: Vec<&KeyConfig> = keys.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    for key in sorted {
        push(&key.name);
        push(key.primary_key.expose());
        push(key.secondary_key.as_ref().map_or("", |k| k.expose()));
    }
    let hash = digest(&SHA256, &material);
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_ref()[..8]);
    u64::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn fingerprints_tell_keys_apart_and_ignore_their_order() {
        let root = SharedAccessKey::new("RootManageSharedAccessKey", "secret-1");
        let other = SharedAccessKey::new("RootManageSharedAccessKey", "secret-2");
        let key = |name: &str, secret: &str| KeyConfig {
            name: name.into(),
            primary_key: Secret::new(secret),
            secondary_key: None,
            rights: vec![relay_proto::auth::Right::Send],
            scope: None,
        };
        let base = key_fingerprint(Some(&root), &[key("a", "x"), key("b", "y")]);
        assert_eq!(base, key_fingerprint(Some(&root), &[key("b", "y"), key("a", "x")]));
        assert_ne!(base, key_fingerprint(Some(&other), &[key("a", "x"), key("b", "y")]));
        assert_ne!(base, key_fingerprint(Some(&root), &[key("a", "x"), key("b", "z")]));
        assert_ne!(base, key_fingerprint(Some(&root), &[key("a", "x")]));
        assert_ne!(new_node_id(), new_node_id());
    }
}
