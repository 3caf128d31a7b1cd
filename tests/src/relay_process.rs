//! The real `relay-server` binary as a child process, run from a config file: for what only a
//! process has, its signals (`SIGHUP` reloads the file) and its log.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use relay_rpc::ConnectOptions;

/// A `relay-server` process on port 0 with its own data directory; killed when dropped.
#[derive(Debug)]
pub struct RelayProcess {
    child: Child,
    /// `quic://127.0.0.1:PORT`.
    pub url: String,
    /// The relay's generated certificate.
    pub cert: PathBuf,
    /// The config file it reads (`None`: it runs on its defaults).
    pub config: Option<PathBuf>,
    dir: PathBuf,
    log: Arc<Mutex<String>>,
}

impl RelayProcess {
    /// Starts the binary reading `config` (TOML, written to a file of its own; `None`: no
    /// `--config`), and waits until it says where it listens.
    pub fn start(tag: &str, config: Option<&str>) -> Self {
        let dir = crate::temp_dir(tag);
        std::fs::create_dir_all(&dir).expect("test directory");
        let config = config.map(|toml| {
            let path = dir.join("relay.toml");
            std::fs::write(&path, toml).expect("config written");
            path
        });
        let mut command = Command::new(crate::binary("relay-server", "relay-server", &[]));
        command
            .args(["--quic-listen", "127.0.0.1:0", "--ws-listen", "127.0.0.1:0", "--admin-listen", "off"])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(path) = &config {
            command.arg("--config").arg(path);
        }
        let mut child = command.spawn().expect("relay-server starts");
        let log = Arc::new(Mutex::new(String::new()));
        let mut stderr = child.stderr.take().expect("piped");
        let collected = log.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                collected.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().expect("piped")).lines();
        let first = stdout.next().and_then(Result::ok).unwrap_or_else(|| {
            panic!("relay-server printed nothing; its log: {}", log.lock().unwrap());
        });
        let url = first.strip_prefix("relay listening on ").expect("prints its address").to_owned();
        // The rest of what it tells users, read so that it never blocks on a full pipe.
        std::thread::spawn(move || stdout.for_each(drop));
        let cert = dir.join("data").join("cert.pem");
        Self { child, url, cert, config, dir, log }
    }

    /// Replaces the config file's text (the relay reads it on its next `SIGHUP`).
    pub fn write_config(&self, toml: &str) {
        std::fs::write(self.config.as_ref().expect("started with a config file"), toml).expect("config written");
    }

    /// Sends the process `signal` (`-HUP`, `-TERM`) with kill(1).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.child.id().to_string()]).status().expect("kill runs");
        assert!(status.success(), "kill {signal} {}", self.child.id());
    }

    /// Everything the relay has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The first line of the log after the first `skip` bytes that contains `needle`, waiting
    /// for it at most `limit`.
    pub async fn logged_after(&self, skip: usize, needle: &str, limit: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let log = self.log();
            if let Some(line) = log.get(skip..).and_then(|tail| tail.lines().find(|line| line.contains(needle))) {
                return Some(line.to_owned());
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().expect("relay-server's status").is_none()
    }

    /// Options that trust the relay's certificate and present no token.
    pub fn anonymous_options(&self) -> ConnectOptions {
        ConnectOptions::new().trust_pem_file(&self.cert).expect("cert readable")
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The directory holding the config file and the data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
