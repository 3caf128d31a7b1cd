//! Running the official Node.js clients (`hyco-ws`, `hyco-https`) from `tests/node`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;

use crate::TestRelay;
use crate::raw_ws;

/// `tests/node`, with its `node_modules` installed from the lockfile if they are missing.
pub fn node_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("node");
        let installed = ["hyco-ws", "hyco-https"]
            .iter()
            .all(|package| dir.join("node_modules").join(package).join("package.json").exists());
        if !installed {
            let output = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir)
                .output()
                .unwrap_or_else(|e| panic!("cannot run npm (is Node.js installed?): {e}"));
            assert!(
                output.status.success(),
                "`npm ci` in {} failed ({}); run `npm ci --prefix tests/node` by hand to see why:\n{}",
                dir.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        dir
    })
}

/// The official HTTP-mode listener, `hyco-https` (`https-listener.js`), on `address` of
/// `relay`: returned once it has registered (within 30 s, Node's start included).
pub fn https_listener(relay: &TestRelay, address: &str) -> NodeScript {
    let url = format!("{}/$hc/{address}?sb-hc-action=listen", relay.ws_url);
    let token = raw_ws::token(relay, address, Duration::from_secs(3600));
    let mut listener = NodeScript::spawn("https-listener.js", &[&url, &token], &relay.cert);
    listener.expect("listening", Duration::from_secs(30));
    listener
}

/// A Node.js script of `tests/node` running as a child process, printing JSON lines.
#[derive(Debug)]
pub struct NodeScript {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl NodeScript {
    /// Runs `node SCRIPT ARGS...` in `tests/node`, trusting `ca` for TLS.
    pub fn spawn(script: &str, args: &[&str], ca: &Path) -> Self {
        Self::spawn_with_env(script, args, ca, &[])
    }

    /// Runs `node SCRIPT ARGS...` in `tests/node` with extra environment variables.
    pub fn spawn_with_env(script: &str, args: &[&str], ca: &Path, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new("node")
            .arg(script)
            .args(args)
            .current_dir(node_dir())
            .env("NODE_EXTRA_CA_CERTS", ca)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run node (is Node.js installed?): {e}"));
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// The next JSON line, within `limit`.
    pub fn next(&mut self, limit: Duration) -> serde_json::Value {
        let line = tokio::task::block_in_place(|| self.lines.recv_timeout(limit))
            .unwrap_or_else(|e| panic!("no output from node within {limit:?}: {e}"));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("node printed {line:?}: {e}"))
    }

    /// The next line whose `event` is `event`, skipping others, within `limit` each.
    pub fn expect(&mut self, event: &str, limit: Duration) -> serde_json::Value {
        loop {
            let line = self.next(limit);
            if line["event"] == event {
                return line;
            }
            assert_ne!(line["event"], "error", "node reported an error while waiting for {event}: {line}");
        }
    }

    /// Writes `line` to the script's stdin.
    pub fn send_line(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().expect("stdin piped");
        writeln!(stdin, "{line}").and_then(|()| stdin.flush()).expect("node reads stdin");
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeScript {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.child.stdin.take() {
            let _ = stdin.flush();
        }
        self.kill();
    }
}
