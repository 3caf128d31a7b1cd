use super::*;

const NODE: NodeId = NodeId([0xab; 16]);

fn heartbeat() -> Heartbeat {
    Heartbeat {
        node: NODE,
        seq: 7,
        quic_url: "quic://10.0.0.1:7443".into(),
        wss_url: Some("wss://10.0.0.1:7443".into()),
        fingerprint: 99,
        draining: true,
        listeners: 3,
        open_channels: 12,
        relayed_bytes: 1 << 40,
    }
}

/// An open request for a caller of a contract, with an accept for a Hybrid Connections listener.
fn open_request() -> OpenRequest {
    OpenRequest {
        address: "calc".into(),
        path: "calc/x".into(),
        channel_id: 4,
        url: "quic://10.0.0.2:7443".into(),
        secret: "s".into(),
        contract: ContractInfo { name: "calc.Calculator".into(), ..ContractInfo::default() },
        accept: Some(Accept {
            address: "wss://10.0.0.2:7443/$hc/calc/x?sb-hc-action=accept&sb-hc-rendezvous=s".into(),
            id: "4".into(),
            connect_headers: [("Sec-WebSocket-Key".to_owned(), "abc".to_owned())].into(),
        }),
        exclude: vec![1, 2],
        http: false,
    }
}

#[test]
fn messages_round_trip() {
    assert_eq!(Heartbeat::decode(&heartbeat().encode()), Ok(heartbeat()));
    let delta = Delta { node: NODE, seq: 8, address: "eu/calc".into(), listeners: 0 };
    assert_eq!(Delta::decode(&delta.encode()), Ok(delta));
    let request = SnapshotRequest { from: 5 };
    assert_eq!(SnapshotRequest::decode(&request.encode()), Ok(request));
    let chunk = SnapshotChunk { node: NODE, seq: 3, entries: vec![("a".into(), 1), ("b/c".into(), 2)], next: Some(2) };
    assert_eq!(SnapshotChunk::decode(&chunk.encode()), Ok(chunk));
    let open = OpenRequest { contract: ContractInfo::default(), accept: None, exclude: Vec::new(), ..open_request() };
    assert_eq!(OpenRequest::decode(&open.encode()), Ok(open));
    let hc = OpenRequest { exclude: vec![1, 2, u64::MAX], ..open_request() };
    assert_eq!(OpenRequest::decode(&hc.encode()), Ok(hc));
    let http = OpenRequest { http: true, ..open_request() };
    assert_eq!(OpenRequest::decode(&http.encode()), Ok(http.clone()));
    let mut bad_flag = http.encode();
    *bad_flag.last_mut().unwrap() = 2;
    assert!(OpenRequest::decode(&bad_flag).is_err(), "a flag is 0 or 1");
    let notified = |kind| OpenReply::Notified { listener: 9, kind };
    let refused = OpenReply::Refused(Refusal { code: ErrorCode::Busy, detail: "x".into() });
    for reply in [notified(ListenerKind::Quic), notified(ListenerKind::HybridConnection), refused] {
        assert_eq!(OpenReply::decode(&reply.encode()), Ok(reply));
    }
}

/// Writes the fuzz seeds of the `cluster_messages` target when `RELAY_WRITE_SEEDS` is set,
/// and checks that every seed there is a message of this version.
#[test]
fn the_cluster_fuzz_seeds_are_messages_of_this_version() {
    let seeds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/cluster_messages");
    if std::env::var_os("RELAY_WRITE_SEEDS").is_some() {
        let open = open_request();
        let chunk = SnapshotChunk { node: NODE, seq: 3, entries: vec![("a".into(), 1)], next: Some(1) };
        let refused = OpenReply::Refused(Refusal { code: ErrorCode::Busy, detail: "busy".into() });
        for (name, body) in [
            ("heartbeat", heartbeat().encode()),
            ("delta", Delta { node: NODE, seq: 8, address: "eu/calc".into(), listeners: 2 }.encode()),
            ("snapshot-request", SnapshotRequest { from: 5 }.encode()),
            ("snapshot-chunk", chunk.encode()),
            ("open-request", open.encode()),
            ("open-notified", OpenReply::Notified { listener: 3, kind: ListenerKind::HybridConnection }.encode()),
            ("open-refused", refused.encode()),
        ] {
            std::fs::write(seeds.join(name), body).unwrap();
        }
    }
    let mut count = 0;
    for entry in std::fs::read_dir(&seeds).unwrap() {
        let path = entry.unwrap().path();
        let body = std::fs::read(&path).unwrap();
        let decodes = Heartbeat::decode(&body).is_ok()
            || Delta::decode(&body).is_ok()
            || SnapshotRequest::decode(&body).is_ok()
            || SnapshotChunk::decode(&body).is_ok()
            || OpenRequest::decode(&body).is_ok()
            || OpenReply::decode(&body).is_ok();
        assert!(decodes, "{} is no message of version {CLUSTER_VERSION}", path.display());
        count += 1;
    }
    assert!(count >= 7, "{count} seeds in {}", seeds.display());
}

#[test]
fn node_ids_print_as_hex_and_parse_back() {
    let id = NodeId([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 255]);
    assert_eq!(id.to_string(), "000102030405060708090a0b0c0d0eff");
    assert_eq!(NodeId::from_hex(&id.to_string()), Some(id));
    assert_eq!(NodeId::from_hex("00"), None);
    assert_eq!(NodeId::from_hex(&"zz".repeat(16)), None);
}

#[test]
fn subjects_never_hold_an_address_and_names_are_checked() {
    let subjects = Subjects::new("prod-1").unwrap();
    assert_eq!(subjects.heartbeat(), "relay.prod-1.hb");
    assert_eq!(subjects.delta(), "relay.prod-1.reg");
    assert_eq!(subjects.open(NODE), format!("relay.prod-1.node.{NODE}.open"));
    assert_eq!(subjects.snapshot(NODE), format!("relay.prod-1.node.{NODE}.snap"));
    for bad in ["", "a.b", "a*", "a b", &"x".repeat(65)] {
        assert!(Subjects::new(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn every_truncation_and_garbage_is_an_error_not_a_panic() {
    let bodies = [
        heartbeat().encode(),
        Delta { node: NODE, seq: 1, address: "calc".into(), listeners: 2 }.encode(),
        SnapshotChunk { node: NODE, seq: 1, entries: vec![("calc".into(), 1)], next: None }.encode(),
    ];
    for body in &bodies {
        for len in 0..body.len() {
            assert!(Heartbeat::decode(&body[..len]).is_err());
            assert!(Delta::decode(&body[..len]).is_err());
            assert!(SnapshotChunk::decode(&body[..len]).is_err());
        }
    }
    let mut trailing = heartbeat().encode();
    trailing.push(0);
    assert_eq!(Heartbeat::decode(&trailing), Err(ProtoError::TrailingBytes(1).into()));
    assert_eq!(Heartbeat::decode(&[9, TAG_HEARTBEAT]), Err(ProtoError::UnsupportedVersion(9).into()));
    assert_eq!(Delta::decode(&heartbeat().encode()), Err(ProtoError::UnexpectedMessage(TAG_HEARTBEAT).into()));
    let bad = Delta { node: NODE, seq: 1, address: "a/../b".into(), listeners: 1 }.encode();
    assert!(matches!(Delta::decode(&bad), Err(ClusterDecodeError::Malformed(ProtoError::InvalidAddress(_)))));
}

#[test]
fn sizes_are_limited_before_anything_is_read() {
    let huge = vec![CLUSTER_VERSION; MAX_CLUSTER_MESSAGE + 1];
    assert_eq!(
        Heartbeat::decode(&huge),
        Err(ClusterDecodeError::TooLarge { len: MAX_CLUSTER_MESSAGE + 1, max: MAX_CLUSTER_MESSAGE })
    );
    // A chunk claiming billions of entries allocates nothing for them.
    let mut lying = Writer::new(CLUSTER_VERSION, TAG_SNAPSHOT_CHUNK);
    NODE.write(&mut lying);
    let lying = lying.u64(1).u64(u64::MAX).finish();
    assert!(matches!(
        SnapshotChunk::decode(&lying),
        Err(ClusterDecodeError::Malformed(ProtoError::FieldTooLong { .. }))
    ));
    // An open request claiming more headers or exclusions than allowed is refused as such.
    let request = |headers: u16, excluded: u16| {
        let mut w = Writer::new(CLUSTER_VERSION, TAG_OPEN_REQUEST);
        w.str("calc").str("calc").u64(1).str("quic://a:1").str("s");
        ContractInfo::default().write(&mut w);
        w.u8(1).str("wss://a/").str("1");
        w.u16(headers).u16(excluded).finish()
    };
    for body in [request(u16::MAX, 0), request(0, u16::MAX)] {
        assert!(matches!(
            OpenRequest::decode(&body),
            Err(ClusterDecodeError::Malformed(ProtoError::FieldTooLong { .. }))
        ));
    }
    assert_eq!(OpenRequest::decode(&request(0, 2)), Err(ProtoError::Truncated.into()));
    let kind = Writer::new(CLUSTER_VERSION, TAG_OPEN_NOTIFIED).u64(1).u8(7).finish();
    assert!(matches!(OpenReply::decode(&kind), Err(ClusterDecodeError::Malformed(ProtoError::InvalidValue { .. }))));
}

#[test]
fn snapshots_are_paged_within_the_chunk_limit() {
    let entries: Vec<(String, u32)> = (0..20_000).map(|i| (format!("{}/{i}", "a".repeat(100)), 1)).collect();
    let mut from = 0;
    let mut seen = Vec::new();
    let mut chunks = 0;
    loop {
        let chunk = SnapshotChunk::page(NODE, 1, &entries, from);
        let body = chunk.encode();
        assert!(body.len() <= MAX_SNAPSHOT_CHUNK, "chunk of {} bytes", body.len());
        let chunk = SnapshotChunk::decode(&body).unwrap();
        seen.extend(chunk.entries);
        chunks += 1;
        match chunk.next {
            Some(next) => from = next,
            None => break,
        }
    }
    assert!(chunks > 1);
    assert_eq!(seen, entries);
}
