//! A peer without a token cannot make the relay hold memory: the real `relay-server` binary, in
//! its own process so that its resident memory is its own, attacked over QUIC by connections
//! that open every stream they may and announce a 64 KiB hello on each, then send nothing more;
//! a host and a caller with tokens are served all along.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use relay_proto::auth::SharedAccessKey;
use relay_rpc::{ConnectOptions, Connection, Host, stream};
use relay_server::root_key::root_key_path;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A `relay-server` process on port 0 with its own data directory.
struct RelayProcess {
    child: Child,
    quic: SocketAddr,
    dir: PathBuf,
}

impl RelayProcess {
    fn start(name: &str, extra_config: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("relay-exhaustion-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("relay.toml");
        let text = format!(
            "quic_listen = \"127.0.0.1:0\"\nws_listen = \"127.0.0.1:0\"\nadmin_listen = \"off\"\ndata_dir = {:?}\n{extra_config}",
            dir.join("data")
        );
        std::fs::write(&config, text).unwrap();
        let mut child = Command::new(relay_tests::binary("relay-server", "relay-server", &[]))
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", std::env::var("RELAY_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("relay-server starts");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut quic = None;
        for line in stdout.lines() {
            let line = line.expect("relay-server prints its addresses");
            if let Some(addr) = line.strip_prefix("relay listening on quic://") {
                quic = Some(addr.trim().parse().unwrap());
            }
            if line.starts_with("root key") {
                break;
            }
        }
        Self { child, quic: quic.expect("a QUIC address"), dir: dir.join("data") }
    }

    fn url(&self) -> String {
        format!("quic://{}", self.quic)
    }

    fn options(&self) -> ConnectOptions {
        let key = SharedAccessKey::from_file(root_key_path(&self.dir)).unwrap();
        ConnectOptions::new().trust_pem_file(self.dir.join("cert.pem")).unwrap().with_shared_access_key(key)
    }

    /// The process's resident memory, in KiB. Fails, never guesses, where /proc cannot be read.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("/proc/PID/status is readable (this test needs Linux)");
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("a VmRSS line");
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(self.dir.parent().unwrap());
    }
}

/// A QUIC connection speaking the relay's protocol, with no token ever sent.
async fn raw_connection(relay: &RelayProcess) -> quinn::Connection {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(relay.dir.join("cert.pem")).unwrap()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![relay_proto::ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    endpoint.connect(relay.quic, "localhost").unwrap().await.expect("the QUIC handshake needs no token")
}

/// Opens streams until the relay grants no more (or `most`), announcing a hello of `declared`
/// bytes on each and sending nothing more.
async fn open_stalled_streams(
    connection: &quinn::Connection,
    declared: u32,
    most: usize,
) -> Vec<(quinn::SendStream, quinn::RecvStream)> {
    let mut streams = Vec::new();
    while streams.len() < most {
        let Ok(Ok((mut send, recv))) = tokio::time::timeout(Duration::from_millis(300), connection.open_bi()).await
        else {
            break;
        };
        if send.write_all(&declared.to_be_bytes()).await.is_err() {
            break;
        }
        streams.push((send, recv));
    }
    streams
}

/// One round trip through the relay, within 5 s.
async fn round_trip(caller: &Connection) {
    let exchange = async {
        let mut stream = stream::connect(caller, "echo").await?;
        stream.write_all(b"ping").await?;
        stream.shutdown().await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, Box<dyn std::error::Error>>(answer)
    };
    let answer = tokio::time::timeout(Duration::from_secs(5), exchange).await.expect("served in time").unwrap();
    assert_eq!(answer, b"ping");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_without_a_token_cannot_pin_memory_with_announced_hellos() {
    const ATTACKERS: usize = 8;
    const MIB_PER_ATTACKER: u64 = 2;
    // Long enough that no attacker is closed for want of a token while memory is measured.
    let relay = RelayProcess::start("hellos", "handshake_timeout_ms = 30000\n");
    let host = Host::connect(&relay.url(), relay.options()).await.unwrap();
    let mut listener = host.listen("echo").await.unwrap();
    tokio::spawn(async move {
        while let Ok(mut stream) = stream::accept(&mut listener).await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                stream.read_to_end(&mut request).await?;
                stream.write_all(&request).await?;
                stream.shutdown().await
            });
        }
    });
    let caller = Connection::connect(&relay.url(), relay.options()).await.unwrap();
    round_trip(&caller).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = relay.rss_kib();

    let mut attackers = Vec::new();
    let mut streams = Vec::new();
    for n in 0..ATTACKERS {
        let connection = raw_connection(&relay).await;
        // The largest hello a relay reads, or 64 KiB (before, a 64 KiB buffer per stream).
        let declared = if n % 2 == 0 { relay_proto::MAX_HELLO_FRAME as u32 } else { 64 * 1024 };
        streams.push(open_stalled_streams(&connection, declared, 2_000).await);
        attackers.push(connection);
        round_trip(&caller).await;
    }
    let opened: usize = streams.iter().map(Vec::len).sum();
    tokio::time::sleep(Duration::from_secs(1)).await;
    round_trip(&caller).await;
    let after = relay.rss_kib();
    let grown = after.saturating_sub(before);
    eprintln!("{ATTACKERS} connections opened {opened} streams; relay RSS {before} -> {after} KiB");
    assert!(
        grown < ATTACKERS as u64 * MIB_PER_ATTACKER * 1024,
        "the relay grew by {grown} KiB for {ATTACKERS} connections without a token"
    );
    drop(streams);
}
