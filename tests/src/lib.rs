//! Support for the end-to-end tests: a real relay on `127.0.0.1:0`, a test contract, hosts.

pub mod cluster;
pub mod http;
pub mod https;
pub mod lab;
pub mod nats;
pub mod node;
pub mod raw_ws;
pub mod relay_process;
pub mod udp_delay;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use lab::{LabEvent, LabHost, ServeLab};
use relay_proto::error::chain;
use relay_rpc::auth::SharedAccessKey;
use relay_rpc::contract::ContractDescriptor;
use relay_rpc::{ConnectOptions, Connection, Host};
use relay_server::{Config, Relay, RelayError, Stats};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long past a timer a test lets its effect take: the tick that notices, the news reaching
/// the other end, a machine loaded by other tests and builds. Wide on purpose: a bound of "timer +
/// `SLACK`" tells "ended by the timer" from "hung" (or "waited for another, longer timer"), never
/// fast from slow; measuring speed is `relay-bench`'s job.
pub const SLACK: Duration = Duration::from_secs(5);

/// `Duration::from_millis`, for the relay's `*_ms` settings.
pub fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// A relay running in this process on real sockets, with its own data directory.
#[derive(Debug)]
pub struct TestRelay {
    /// `quic://127.0.0.1:PORT`.
    pub url: String,
    /// The relay's generated certificate.
    pub cert: PathBuf,
    /// The UDP address.
    pub addr: std::net::SocketAddr,
    /// `wss://127.0.0.1:PORT`: the Hybrid Connections WebSocket endpoint.
    pub ws_url: String,
    /// The TCP address of `wss://`.
    pub ws_addr: std::net::SocketAddr,
    /// The TCP address of plain `ws://`, when the configuration asked for it.
    pub ws_plain_addr: Option<std::net::SocketAddr>,
    /// The TCP address of the admin endpoint (`/healthz`, `/readyz`).
    pub admin_addr: std::net::SocketAddr,
    /// The relay's live counters.
    pub stats: Stats,
    dir: PathBuf,
    config: Config,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// A TLS client configuration (ring) that trusts the certificates in the PEM file `cert`: the
/// relay's, for the tests' own WebSocket and HTTPS clients.
pub fn tls_trusting(cert: &Path) -> std::sync::Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(cert).expect("cert readable") {
        roots.add(cert.expect("cert parses")).expect("cert added");
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("tls versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    std::sync::Arc::new(config)
}

/// A fresh directory under the system's temporary directory.
pub fn temp_dir(tag: &str) -> PathBuf {
    let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("relay-tests-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

impl TestRelay {
    /// Starts a relay on the defaults, but on port 0 and a fresh data directory.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts a relay after `configure` has adjusted its configuration.
    pub async fn start_with(configure: impl FnOnce(&mut Config)) -> Self {
        let dir = temp_dir("relay");
        let mut config = Config {
            quic_listen: "127.0.0.1:0".parse().unwrap(),
            ws_listen: Some("127.0.0.1:0".parse().unwrap()),
            admin_listen: Some("127.0.0.1:0".parse().unwrap()),
            data_dir: dir.clone(),
            ..Config::default()
        };
        configure(&mut config);
        Self::bind_retrying(config).await
    }

    /// Binds the relay's sockets and starts it. Ports a stopped relay held may not be free yet:
    /// in-process, the old QUIC endpoint keeps its UDP port until its last connection has drained
    /// (seen up to ~13 s with 200 hosts), where a real restart's process exit frees it at once.
    async fn bind_retrying(config: Config) -> Self {
        let started = tokio::time::Instant::now();
        let deadline = started + Duration::from_secs(40);
        loop {
            match Relay::bind(config.clone()) {
                Ok(relay) => {
                    tracing::debug!(after = ?started.elapsed(), "relay bound its ports");
                    return Self::start_bound(relay, config);
                }
                Err(e @ (RelayError::Endpoint(_) | RelayError::WsBind(_)))
                    if tokio::time::Instant::now() < deadline =>
                {
                    tracing::debug!(error = %chain(&e), "ports still held; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("relay binds (quic {}, ws {:?}): {}", config.quic_listen, config.ws_listen, chain(&e)),
            }
        }
    }

    fn start_bound(relay: Relay, config: Config) -> Self {
        let dir = config.data_dir.clone();
        let addr = relay.quic_addr();
        let ws_addr = relay.ws_addr().expect("wss enabled");
        let ws_plain_addr = relay.ws_plain_addr();
        let admin_addr = relay.admin_addr().expect("the admin endpoint enabled");
        let cert = relay.cert_path().to_owned();
        let stats = relay.stats();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(relay.run(async {
            let _ = rx.await;
        }));
        Self {
            url: format!("quic://{addr}"),
            cert,
            addr,
            ws_url: format!("wss://{ws_addr}"),
            ws_addr,
            ws_plain_addr,
            admin_addr,
            stats,
            dir,
            config,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Options that trust this relay's certificate and sign tokens with its root key.
    pub fn options(&self) -> ConnectOptions {
        self.anonymous_options().with_shared_access_key(self.root_key())
    }

    /// Options that trust this relay's certificate but present no token.
    pub fn anonymous_options(&self) -> ConnectOptions {
        ConnectOptions::new().trust_pem_file(&self.cert).expect("cert readable")
    }

    /// The relay's generated `RootManageSharedAccessKey`.
    pub fn root_key(&self) -> SharedAccessKey {
        SharedAccessKey::from_file(relay_server::root_key::root_key_path(&self.dir)).expect("root key readable")
    }

    /// A caller connection.
    pub async fn caller(&self) -> Connection {
        Connection::connect(&self.url, self.options()).await.expect("caller connects")
    }

    /// A host connection.
    pub async fn host(&self) -> Host {
        self.host_on(&self.url).await
    }

    /// A host connection to `url` (`self.url` or `self.ws_url`), signing with the root key.
    pub async fn host_on(&self, url: &str) -> Host {
        Host::connect(url, self.options()).await.expect("host connects")
    }

    /// A caller connection to `url` (`self.url` or `self.ws_url`), signing with the root key.
    pub async fn caller_on(&self, url: &str) -> Connection {
        Connection::connect(url, self.options()).await.expect("caller connects")
    }

    /// Serves the lab named `name` on `address` from a new host on `url`; returns the host and
    /// the lab's events.
    pub async fn serve_lab(&self, url: &str, address: &str, name: &str) -> (Host, UnboundedReceiver<LabEvent>) {
        let host = self.host_on(url).await;
        let (lab, events) = LabHost::new(name);
        tokio::spawn(host.listen(address).await.expect("listens").serve(ServeLab::new(lab)));
        (host, events)
    }

    /// Starts the `test-host` binary (`test_host_binary`: `env!("CARGO_BIN_EXE_test-host")`) as its
    /// own process serving the lab named `name` on `address` over `url`, and waits until it listens.
    pub fn spawn_host_process(&self, test_host_binary: &str, url: &str, address: &str, name: &str) -> HostProcess {
        let root_key = relay_server::root_key::root_key_path(&self.dir);
        let mut child = Command::new(test_host_binary)
            .args([url, self.cert.to_str().expect("utf-8 path"), root_key.to_str().expect("utf-8 path"), address, name])
            .stdout(Stdio::piped())
            .spawn()
            .expect("test-host starts");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("test-host prints");
        assert_eq!(line.trim(), "ready");
        // Its lab's events, one a line, as the process reports them.
        let (tx, events) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                let event = LabEvent::parse(&line).unwrap_or_else(|| panic!("test-host printed {line:?}"));
                if tx.send(event).is_err() {
                    break;
                }
            }
        });
        HostProcess { child, events }
    }

    /// Signals shutdown and waits for the relay to drain and stop.
    pub async fn stop(mut self) {
        self.shut_down().await;
    }

    async fn shut_down(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            propagate_panic(task.await);
        }
    }

    /// Stops the relay and starts it again on the same ports, with the same data directory
    /// (certificate and keys) and configuration, as an operator's restart would.
    pub async fn restart(mut self) -> Self {
        self.shut_down().await;
        let mut config = self.config.clone();
        config.quic_listen = self.addr;
        config.ws_listen = Some(self.ws_addr);
        // The new relay owns the data directory from here: this one must not remove it.
        self.dir = PathBuf::new();
        drop(self);
        Self::bind_retrying(config).await
    }

    /// The configuration the relay runs with: tests derive their time bounds from its timers.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for TestRelay {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            // A relay that panicked while the test ran fails the test, stopped or not.
            if task.is_finished() && !std::thread::panicking() {
                if let Some(joined) = futures::FutureExt::now_or_never(task) {
                    propagate_panic(joined);
                }
            } else {
                task.abort();
            }
        }
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A `test-host` process serving a lab; resumed (should it be stopped) and killed when dropped.
#[derive(Debug)]
pub struct HostProcess {
    child: Child,
    /// Its lab's events.
    pub events: UnboundedReceiver<LabEvent>,
}

impl HostProcess {
    /// Sends the process `signal` (`-STOP`, `-CONT`, `-KILL`) with kill(1).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.child.id().to_string()]).status().expect("kill runs");
        assert!(status.success(), "kill {signal} {}", self.child.id());
    }

    /// Whether the process exits by itself within `limit`.
    pub async fn exits_within(&mut self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if self.child.try_wait().expect("test-host's status").is_some() {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the process and waits until it is gone.
    pub fn kill(&mut self) {
        self.child.kill().expect("test-host killed");
        self.child.wait().expect("test-host reaped");
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.child.id().to_string()]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a self-healing calculator host on `address` over `url` (it connects and registers
/// again after every loss, with `backoff`); returns its status.
pub fn serve_calculator_online(
    relay: &TestRelay,
    url: &str,
    address: &str,
    backoff: relay_rpc::Backoff,
) -> tokio::sync::watch::Receiver<relay_rpc::HostStatus> {
    let (tx, rx) = tokio::sync::watch::channel(relay_rpc::HostStatus::Connecting);
    let (url, address, options) = (url.to_owned(), address.to_owned(), relay.options());
    let calc = calculator::ServeCalculator::new(calculator::Calc);
    tokio::spawn(async move { Host::serve_online(&url, options, &address, calc, backoff, tx).await });
    rx
}

/// The lab's next event, within 10 s (a guard against a hang, not a measure).
pub async fn next_event(events: &mut UnboundedReceiver<LabEvent>) -> LabEvent {
    tokio::time::timeout(Duration::from_secs(10), events.recv()).await.expect("event in time").expect("host alive")
}

/// A panic in a relay (or any task) a test joins fails the test; a cancellation does not.
pub fn propagate_panic<T>(joined: Result<T, tokio::task::JoinError>) {
    if let Err(e) = joined
        && e.is_panic()
    {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// This process's open file descriptors. Fails where `/proc` cannot be read: a leak check that
/// reads 0 before and after would pass whatever leaked.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd is readable (these tests need Linux)").count()
}

/// The tasks alive in the current tokio runtime.
pub fn alive_tasks() -> usize {
    tokio::runtime::Handle::current().metrics().num_alive_tasks()
}

/// Waits until `condition` holds, checking every 10 ms, for at most `limit`.
pub async fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    condition()
}

/// Waits until the relay behind `caller` drains: opens channels to `address` speaking
/// `contract` (each dropped at once) until one is refused as `ShuttingDown`, for at most
/// [`SLACK`]. A relay exposes no "draining" state; its refusal is what callers see of it.
pub async fn until_draining(caller: &Connection, address: &str, contract: &ContractDescriptor) {
    let deadline = tokio::time::Instant::now() + SLACK;
    loop {
        match caller.open_channel(address, Some(contract)).await {
            Err(relay_rpc::OpenError::Refused { code: relay_rpc::ErrorCode::ShuttingDown, .. }) => return,
            Ok(_) => {}
            Err(e) => panic!("expected channels to {address} to open until the drain, got {e:?}"),
        }
        assert!(tokio::time::Instant::now() < deadline, "the relay did not start draining within {SLACK:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The workspace binary `bin` of `package` (with `features`), built now by cargo into the target
/// directory and profile this test runs from: never a stale or missing one. Panics if it cannot
/// be built.
pub fn binary(package: &str, bin: &str, features: &[&str]) -> PathBuf {
    /// The binaries built so far by this test process: each is built once, one at a time.
    static BUILT: std::sync::Mutex<Vec<(String, PathBuf)>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let key = format!("{package}/{bin}/{}", features.join(","));
    if let Some((_, path)) = built.iter().find(|(k, _)| *k == key) {
        return path.clone();
    }
    // This test runs as `<target>/<profile>/deps/<name>`.
    let exe = std::env::current_exe().expect("the test's own path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("a test under <target>/<profile>/deps");
    let target_dir = profile_dir.parent().expect("a profile under the target directory");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build.args(["build", "--quiet", "-p", package, "--bin", bin]).arg("--target-dir").arg(target_dir);
    if profile_dir.file_name().is_some_and(|p| p == "release") {
        build.arg("--release");
    }
    if !features.is_empty() {
        build.args(["--features", &features.join(",")]);
    }
    let status = build.status().unwrap_or_else(|e| panic!("cannot run cargo to build {bin}: {e}"));
    assert!(status.success(), "cargo could not build {bin} of {package}");
    let path = profile_dir.join(format!("{bin}{}", std::env::consts::EXE_SUFFIX));
    assert!(path.exists(), "cargo built {bin}, but it is not at {}", path.display());
    built.push((key, path.clone()));
    path
}

/// Everything a tracing subscriber writes, for tests that read the logs: give a clone to
/// `with_writer(move || writer.clone())`.
#[derive(Debug, Clone, Default)]
pub struct CapturedLogs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLogs {
    /// What was written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)).into_owned()
    }

    /// The lines so far, each one JSON object (a subscriber with `.json()`).
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.text().lines().map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))).collect()
    }
}
