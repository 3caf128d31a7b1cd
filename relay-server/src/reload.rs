//! What a reloaded configuration (`SIGHUP`) changes: which settings take effect at once, which
//! only a restart changes, and the configuration the relay then runs with. Sans-IO: the state
//! applies what this decides.
//!
//! A setting a reload cannot change keeps its running value (the relay runs on, as if the file
//! still said it), and is reported, so the operator hears that it waits for a restart.

use std::collections::BTreeSet;

use crate::config::Config;

/// What a reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConfigChanges {
    /// Settings now in force, as a person reads them: `max_channels_per_ip`, `keys (added c;
    /// removed b; changed a)`, `addresses (changed calc)`.
    pub applied: Vec<String>,
    /// Settings the file changed that keep their running values until the relay restarts.
    pub need_restart: Vec<&'static str>,
}

impl ConfigChanges {
    /// Whether the file changed nothing.
    pub fn is_empty(&self) -> bool {
        self.applied.is_empty() && self.need_restart.is_empty()
    }
}

/// Sorts every field of [`Config`] into the settings a reload applies and those it leaves to a
/// restart; a field in neither list does not compile (the exhaustive pattern in `plan`).
macro_rules! settings {
    (reloadable: [$($live:ident),* $(,)?], restart: [$($fixed:ident),* $(,)?] $(,)?) => {
        /// The settings a reload applies at once.
        pub const RELOADABLE: &[&str] = &[$(stringify!($live)),*];

        /// The settings only a restart changes.
        pub const RESTART_ONLY: &[&str] = &[$(stringify!($fixed)),*];

        /// The configuration to run with after reading `file` while running `running`, and what
        /// changed: `file`'s reloadable settings, and `running`'s for the rest.
        pub(crate) fn plan(running: &Config, file: Config) -> (Config, ConfigChanges) {
            let Config { $($live: _,)* $($fixed: _,)* } = running;
            let mut next = file;
            let mut changes = ConfigChanges::default();
            $(
                if running.$fixed != next.$fixed {
                    changes.need_restart.push(stringify!($fixed));
                    next.$fixed = running.$fixed.clone();
                }
            )*
            $(
                if running.$live != next.$live {
                    changes.applied.push(describe(stringify!($live), running, &next));
                }
            )*
            (next, changes)
        }
    };
}

settings! {
    reloadable: [
        keys,
        hostnames,
        clock_skew_secs,
        max_token_ttl_secs,
        addresses,
        http_response_timeout_ms,
        channel_opens_per_sec,
        channel_open_burst,
        max_pending_handshakes,
        max_pending_handshakes_per_ip,
        max_connections_per_ip,
        max_channels_per_ip,
        max_channels_per_key,
        max_listeners_per_address,
        max_channels_per_listener,
        multicast_queue_frames,
        multicast_queue_bytes,
        shutdown_grace_ms,
    ],
    restart: [
        quic_listen,
        ws_listen,
        ws_plain_listen,
        admin_listen,
        data_dir,
        cert_file,
        key_file,
        handshake_timeout_ms,
        rendezvous_timeout_ms,
        keep_alive_ms,
        idle_timeout_ms,
        max_channels_per_connection,
        max_frame_bytes,
        stream_window_bytes,
        connection_window_bytes,
        max_buffered_bytes,
        cluster,
    ],
}

/// `field`, and for keys and addresses which ones were added, removed or changed (by name, never
/// a secret).
fn describe(field: &'static str, old: &Config, new: &Config) -> String {
    let diff = match field {
        "keys" => by_name(&old.keys, &new.keys, |k| k.name.as_str()),
        "addresses" => by_name(&old.addresses, &new.addresses, |a| a.path.as_str()),
        _ => return field.to_owned(),
    };
    format!("{field} ({diff})")
}

/// Which entries of `old` and `new`, named by `name`, were added, removed or changed.
fn by_name<T: PartialEq>(old: &[T], new: &[T], name: impl Fn(&T) -> &str) -> String {
    let names: BTreeSet<&str> = old.iter().chain(new).map(&name).collect();
    let (mut added, mut removed, mut changed) = (Vec::new(), Vec::new(), Vec::new());
    for n in names {
        match (old.iter().find(|i| name(i) == n), new.iter().find(|i| name(i) == n)) {
            (None, Some(_)) => added.push(n),
            (Some(_), None) => removed.push(n),
            (Some(a), Some(b)) if a != b => changed.push(n),
            _ => {}
        }
    }
    let parts: Vec<String> = [("added", added), ("removed", removed), ("changed", changed)]
        .into_iter()
        .filter(|(_, names)| !names.is_empty())
        .map(|(what, names)| format!("{what} {}", names.join(", ")))
        .collect();
    if parts.is_empty() { "reordered".to_owned() } else { parts.join("; ") }
}

#[cfg(test)]
mod tests {
    use relay_proto::auth::Right;

    use super::*;
    use crate::config::{AddressConfig, KeyConfig, Secret};

    fn key(name: &str, secondary: Option<&str>) -> KeyConfig {
        KeyConfig {
            name: name.into(),
            primary_key: Secret::new(format!("{name}-primary")),
            secondary_key: secondary.map(Secret::new),
            rights: vec![Right::Send, Right::Listen],
            scope: None,
        }
    }

    fn running() -> Config {
        Config {
            keys: vec![key("a", None), key("b", None)],
            addresses: vec![AddressConfig { path: "calc".into(), ..Default::default() }],
            ..Config::default()
        }
    }

    #[test]
    fn the_same_file_changes_nothing() {
        let (next, changes) = plan(&running(), running());
        assert!(changes.is_empty(), "{changes:?}");
        assert_eq!(next, running());
    }

    #[test]
    fn keys_addresses_and_limits_take_effect_and_name_what_changed() {
        let mut file = running();
        file.keys = vec![key("a", Some("a-rotated")), key("c", None)];
        file.addresses[0].anonymous_senders = true;
        file.addresses.push(AddressConfig { path: "events".into(), ..Default::default() });
        file.max_channels_per_ip = 7;
        let (next, changes) = plan(&running(), file.clone());
        assert_eq!(next, file, "everything here is reloadable");
        assert_eq!(
            changes.applied,
            ["keys (added c; removed b; changed a)", "addresses (added events; changed calc)", "max_channels_per_ip"]
        );
        assert!(changes.need_restart.is_empty());
        assert!(!format!("{changes:?}").contains("a-rotated"), "no secret in the report");
    }

    #[test]
    fn settings_that_need_a_restart_keep_their_running_values_and_are_reported() {
        let mut file = running();
        file.quic_listen = "0.0.0.0:9443".parse().unwrap();
        file.max_frame_bytes = 1024;
        file.keep_alive_ms = 1_000;
        file.max_listeners_per_address = 3;
        let (next, changes) = plan(&running(), file);
        assert_eq!(changes.need_restart, ["quic_listen", "keep_alive_ms", "max_frame_bytes"]);
        assert_eq!(changes.applied, ["max_listeners_per_address"]);
        let expected = Config { max_listeners_per_address: 3, ..running() };
        assert_eq!(next, expected, "the relay runs on as if the file still said the old values");
    }

    #[test]
    fn every_setting_is_sorted_once() {
        let all: BTreeSet<&str> = RELOADABLE.iter().chain(RESTART_ONLY).copied().collect();
        assert_eq!(all.len(), RELOADABLE.len() + RESTART_ONLY.len(), "no setting in both lists");
        for fixed in ["quic_listen", "data_dir", "cert_file", "cluster", "max_buffered_bytes"] {
            assert!(RESTART_ONLY.contains(&fixed), "{fixed}");
        }
        for live in ["keys", "addresses", "max_channels_per_key", "channel_opens_per_sec"] {
            assert!(RELOADABLE.contains(&live), "{live}");
        }
    }
}
