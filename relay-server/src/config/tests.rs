use super::*;

#[test]
fn the_admin_listener_takes_an_address_or_off() {
    assert_eq!(Config::default().admin_listen, Some(SocketAddr::from(([127, 0, 0, 1], 7080))));
    let config: Config = toml::from_str("admin_listen = \"off\"").unwrap();
    assert_eq!(config.admin_listen, None);
    let config: Config = toml::from_str("admin_listen = \"0.0.0.0:9000\"").unwrap();
    assert_eq!(config.admin_listen, Some(SocketAddr::from(([0, 0, 0, 0], 9000))));
    let err = toml::from_str::<Config>("admin_listen = \"of\"").unwrap_err();
    assert!(err.to_string().contains("neither an address"), "{err}");
}

#[test]
fn refuses_unknown_fields_and_bad_values() {
    assert!(toml::from_str::<Config>("quic_lisen = \"127.0.0.1:1\"").is_err());
    let config: Config = toml::from_str("keep_alive_ms = 40000").unwrap();
    assert!(config.validate().is_err());
    Config::default().validate().unwrap();
    assert_eq!(Config::default().max_token_ttl_secs, 604_800, "a week");
    let config: Config = toml::from_str("max_token_ttl_secs = 0").unwrap();
    assert!(config.validate().is_err());
    let config: Config = toml::from_str(
        r#"
        [[keys]]
        name = "senders"
        primary_key = "k1"
        rights = ["send"]
        scope = "calc"
        [[addresses]]
        path = "public"
        anonymous_senders = true
        [[addresses]]
        path = "events"
        mode = "multicast"
        "#,
    )
    .unwrap();
    config.validate().unwrap();
    assert_eq!(config.addresses[0].mode, AddressMode::Unicast);
    assert_eq!(config.addresses[1].mode, AddressMode::Multicast);
    assert!(toml::from_str::<Config>("[[addresses]]\npath = \"a\"\nmode = \"broadcast\"").is_err());
    assert!(!format!("{config:?}").contains("k1"), "keys print as MASKED");
    let bad: Config =
        toml::from_str("[[keys]]\nname = \"a\"\nprimary_key = \"k\"\nrights = [\"send\"]\nscope = \"a/../b\"").unwrap();
    assert!(bad.validate().is_err());
    assert!(toml::from_str::<Config>("[[keys]]\nname = \"a\"\nprimary_key = \"k\"\nrights = [\"fly\"]").is_err());
}

#[test]
fn the_cluster_table_is_optional_and_checked() {
    assert!(Config::default().cluster.is_none(), "a single node by default");
    let config: Config = toml::from_str(
        r#"
        [cluster]
        nats = ["nats://10.0.0.1:4222", "nats://10.0.0.2:4222"]
        name = "eu-1"
        advertise_quic = "quic://relay-1.example.com:7443"
        heartbeat_ms = 200
        node_timeout_ms = 1000
        open_timeout_ms = 500
        "#,
    )
    .unwrap();
    config.validate().unwrap();
    let cluster = config.cluster.unwrap();
    assert_eq!(cluster.nats.len(), 2);
    assert_eq!(cluster.node_timeout(), Duration::from_secs(1));
    let check =
        |toml: &str| toml::from_str::<Config>(toml).map_err(|e| e.to_string())?.validate().map_err(|e| e.to_string());
    check("[cluster]\nnats = [\"nats://127.0.0.1:4222\"]").unwrap();
    assert!(check("[cluster]\nnats = []").is_err(), "no server");
    assert!(check("[cluster]\nnats = [\"nats://a:1\"]\nname = \"a.b\"").is_err(), "a name that is not a subject token");
    assert!(
        check("[cluster]\nnats = [\"nats://a:1\"]\nheartbeat_ms = 3000").is_err(),
        "heartbeat not below the timeout"
    );
    assert!(check("[cluster]\nnats = [\"nats://a:1\"]\nadvertise_quic = \"wss://x:1\"").is_err(), "wrong scheme");
    assert!(check("[cluster]\nnats = [\"nats://a:1\"]\nnodes = 3").is_err(), "unknown field");
    let unspecified = "quic_listen = \"0.0.0.0:7443\"\n[cluster]\nnats = [\"nats://a:1\"]";
    assert!(check(unspecified).is_err(), "no address others can dial");
    check(&format!("{unspecified}\nadvertise_quic = \"quic://relay.example.com:7443\"")).unwrap();
}

/// The file's errors name the file and leave their cause to the chain: anyhow (or
/// `relay_proto::error::chain`) prints it once, after the message.
#[test]
fn file_errors_do_not_repeat_their_cause() {
    use std::error::Error as _;
    let dir = std::env::temp_dir().join(format!("relay-config-errors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("relay.toml");
    std::fs::write(&path, "quic_listen = [not toml").unwrap();
    let parse = Config::from_file(&path).unwrap_err();
    let missing = Config::from_file(&dir.join("missing.toml")).unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(matches!(parse, ConfigError::Parse { .. }), "{parse:?}");
    assert!(matches!(missing, ConfigError::Read { .. }), "{missing:?}");
    for e in [parse, missing] {
        let message = e.to_string();
        let cause = e.source().expect("the cause is the source").to_string();
        assert!(message.contains("relay.toml") || message.contains("missing.toml"), "{message}");
        assert!(!message.contains(&cause), "the message repeats its cause: {message:?}");
        assert_eq!(relay_proto::error::chain(&e).to_string(), format!("{message}: {cause}"));
    }
}
