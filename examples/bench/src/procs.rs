//! The parent's handles on the relay and host processes it starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::caller::{RelayTarget, Target};
use crate::child::{ChildProc, TempDir};
use crate::contract::{QUIC_ADDRESS, WSS_ADDRESS};

/// How long a child may take to start and say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a child may take to stop once asked.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// A relay in a process of its own, with its data directory.
#[derive(Debug)]
pub struct RelayProc {
    child: ChildProc,
    /// `quic://127.0.0.1:PORT`.
    pub quic_url: String,
    /// `wss://127.0.0.1:PORT`.
    pub wss_url: String,
    /// The relay's certificate.
    pub cert: PathBuf,
    /// The relay's root key.
    pub key: PathBuf,
    /// The channel limit it was started with, if not the default; hosts get the same.
    max_channels: Option<u32>,
    /// Its own data directory; none for a cluster node, whose directory the cluster's nodes
    /// share. Dropped after `child`, which is killed first.
    _dir: Option<TempDir>,
}

impl RelayProc {
    /// Starts a relay with a fresh data directory and waits until it listens. `max_channels`
    /// replaces the default limit of channels per connection and per listener, `threads` the
    /// default of one worker thread per core.
    pub async fn start(tag: &str, max_channels: Option<u32>, threads: Option<u16>) -> anyhow::Result<Self> {
        let dir = TempDir::new(tag)?;
        let mut args = vec!["relay".to_owned(), "--data-dir".to_owned(), dir.path().display().to_string()];
        if let Some(max) = max_channels {
            args.extend(["--max-channels".to_owned(), max.to_string()]);
        }
        if let Some(threads) = threads {
            args.extend(["--threads".to_owned(), threads.to_string()]);
        }
        Self::spawn("relay", &args, max_channels, Some(dir)).await
    }

    /// Starts a node of a cluster joined through the NATS server at `nats`, with `data_dir`,
    /// which the cluster's nodes share for their keys (the first node started makes them: start
    /// the nodes one after the other), and waits until it listens.
    pub async fn start_node(name: &str, data_dir: &Path, nats: &str) -> anyhow::Result<Self> {
        let args = [
            "relay".to_owned(),
            "--data-dir".to_owned(),
            data_dir.display().to_string(),
            "--cluster-nats".to_owned(),
            nats.to_owned(),
        ];
        Self::spawn(name, &args, None, None).await
    }

    async fn spawn(
        name: &str,
        args: &[String],
        max_channels: Option<u32>,
        dir: Option<TempDir>,
    ) -> anyhow::Result<Self> {
        let mut child = ChildProc::spawn(name, args)?;
        let ready = child.expect("ready", READY_TIMEOUT).await?;
        let quic: SocketAddr = ready.parse_value("quic")?;
        let wss: SocketAddr = ready.parse_value("wss")?;
        Ok(Self {
            quic_url: format!("quic://{quic}"),
            wss_url: format!("wss://{wss}"),
            cert: ready.get("cert")?.into(),
            key: ready.get("key")?.into(),
            max_channels,
            child,
            _dir: dir,
        })
    }

    /// The relay's process id.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// The bench's address on this relay over `url`.
    pub fn target(&self, url: &str, address: &str) -> RelayTarget {
        RelayTarget { url: url.to_owned(), address: address.to_owned(), cert: self.cert.clone(), key: self.key.clone() }
    }

    /// The bench host's QUIC address.
    pub fn quic_target(&self) -> Target {
        Target::Relay(self.target(&self.quic_url, QUIC_ADDRESS))
    }

    /// The bench host's WebSocket address.
    pub fn wss_target(&self) -> Target {
        Target::Relay(self.target(&self.wss_url, WSS_ADDRESS))
    }

    /// The channels the relay has open now.
    pub async fn open_channels(&mut self) -> anyhow::Result<usize> {
        self.child.send("stats").await?;
        self.child.expect("stats", Duration::from_secs(5)).await?.parse_value("open_channels")
    }

    /// Waits at most `timeout` until the relay has `expected` channels open.
    pub async fn wait_open_channels(&mut self, expected: usize, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let open = self.open_channels().await?;
            if open == expected {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("the relay has {open} channels open after {timeout:?}, not {expected}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Args naming this relay's credentials, for a host process.
    fn credentials(&self) -> Vec<String> {
        vec!["--cert".into(), self.cert.display().to_string(), "--key".into(), self.key.display().to_string()]
    }

    /// Starts the bench host: over QUIC if `quic`, over WebSocket if `wss`, and, if
    /// `baselines`, directly on two TCP ports, one plain and one TLS; waits until it listens.
    pub async fn start_host(&self, quic: bool, wss: bool, baselines: bool) -> anyhow::Result<HostProc> {
        let quic = quic.then_some(self.quic_url.as_str());
        let wss = wss.then_some(self.wss_url.as_str());
        self.start_host_at(quic, wss, baselines).await
    }

    /// [`start_host`](Self::start_host), the host reaching this relay at the URLs given (through
    /// a proxy, say) rather than at the relay's own.
    pub async fn start_host_at(
        &self,
        quic: Option<&str>,
        wss: Option<&str>,
        baselines: bool,
    ) -> anyhow::Result<HostProc> {
        let mut args = vec!["host".to_owned()];
        args.extend(self.credentials());
        if let Some(url) = quic {
            args.extend(["--quic".to_owned(), url.to_owned()]);
        }
        if let Some(url) = wss {
            args.extend(["--wss".to_owned(), url.to_owned()]);
        }
        let dir = if baselines {
            let dir = TempDir::new("host")?;
            let cert = dir.path().join("tls-cert.pem");
            args.extend(["--tcp".to_owned(), "--tls-cert-out".to_owned(), cert.display().to_string()]);
            Some((dir, cert))
        } else {
            None
        };
        if let Some(max) = self.max_channels {
            args.extend(["--max-channels".to_owned(), max.to_string()]);
        }
        let mut child = ChildProc::spawn("host", &args)?;
        let ready = child.expect("ready", READY_TIMEOUT).await?;
        let (tcp, tls) = match dir {
            Some((dir, cert)) => {
                let tls = Target::Tls { addr: ready.parse_value("tls")?, cert };
                (Some(Target::Tcp(ready.parse_value("tcp")?)), Some((tls, dir)))
            }
            None => (None, None),
        };
        Ok(HostProc { child, tcp, tls })
    }

    /// Starts `count` idle hosts over QUIC, one listener each, in one process, and waits until
    /// all listen; returns the process and its memory before it connected, in KiB.
    pub async fn start_idle_hosts(&self, count: usize) -> anyhow::Result<(ChildProc, u64)> {
        let mut args = vec!["hosts".to_owned(), "--url".to_owned(), self.quic_url.clone()];
        args.extend(self.credentials());
        args.extend(["--count".to_owned(), count.to_string()]);
        let mut child = ChildProc::spawn("hosts", &args)?;
        let ready = child.expect("ready", READY_TIMEOUT * 4).await?;
        let listeners: usize = ready.parse_value("listeners")?;
        anyhow::ensure!(listeners == count, "{listeners} of {count} hosts listen");
        let rss_before_kib = ready.parse_value("rss_before_kib")?;
        Ok((child, rss_before_kib))
    }

    /// Stops the relay.
    pub async fn stop(self) {
        self.child.stop(STOP_TIMEOUT).await;
    }
}

/// The bench host in a process of its own.
#[derive(Debug)]
pub struct HostProc {
    child: ChildProc,
    /// Its plain TCP listener, when it serves the baselines.
    tcp: Option<Target>,
    /// Its TLS listener, and the directory its certificate is in, when it serves the baselines.
    tls: Option<(Target, TempDir)>,
}

impl HostProc {
    /// The host's process id.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// The `tcp` and `tls` baselines' targets, when it serves them.
    pub fn baselines(&self) -> Option<(Target, Target)> {
        Some((self.tcp.clone()?, self.tls.as_ref()?.0.clone()))
    }

    /// Stops the host.
    pub async fn stop(self) {
        self.child.stop(STOP_TIMEOUT).await;
    }
}

/// Stops `child`, for children handed out bare.
pub async fn stop(child: ChildProc) {
    child.stop(STOP_TIMEOUT).await;
}
