//! The parent's side of a child process: this same binary run with a hidden subcommand.
//!
//! A child reports on its standard output, one line per report (`ready key=value ...`), and
//! stops when its standard input closes. The parent reads every line under a timeout, and
//! dropping a [`ChildProc`] kills the child, so no child outlives the bench, whatever happens.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// A running child process of the bench.
#[derive(Debug)]
pub struct ChildProc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
    pid: u32,
}

impl ChildProc {
    /// Starts this binary with `args` (a subcommand and its options); `name` names it in errors.
    pub fn spawn(name: &str, args: &[String]) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("finding the bench's own executable")?;
        let mut child = Command::new(&exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting the {name} process ({})", exe.display()))?;
        let pid = child.id().with_context(|| format!("the {name} process has no pid"))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().with_context(|| format!("no stdout from the {name} process"))?;
        Ok(Self { name: name.to_owned(), child, stdin, lines: BufReader::new(stdout).lines(), pid })
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Waits at most `timeout` for the child's next line starting with `tag`, skipping others,
    /// and returns its `key=value` words.
    pub async fn expect(&mut self, tag: &str, timeout: Duration) -> anyhow::Result<Report> {
        let name = &self.name;
        let read = async {
            loop {
                match self.lines.next_line().await {
                    Ok(Some(line)) => {
                        if let Some(rest) = line.strip_prefix(tag).filter(|r| r.is_empty() || r.starts_with(' ')) {
                            return Ok(Report::parse(rest));
                        }
                    }
                    Ok(None) => bail!("the {name} process ended before saying `{tag}`"),
                    Err(e) => bail!("reading from the {name} process: {e}"),
                }
            }
        };
        tokio::time::timeout(timeout, read)
            .await
            .with_context(|| format!("the {name} process did not say `{tag}` within {timeout:?}"))?
    }

    /// Writes one line to the child's standard input.
    pub async fn send(&mut self, line: &str) -> anyhow::Result<()> {
        let stdin = self.stdin.as_mut().with_context(|| format!("the {} process's stdin is closed", self.name))?;
        let write = async {
            stdin.write_all(format!("{line}\n").as_bytes()).await?;
            stdin.flush().await
        };
        tokio::time::timeout(Duration::from_secs(5), write)
            .await
            .with_context(|| format!("writing to the {} process timed out", self.name))?
            .with_context(|| format!("writing to the {} process", self.name))
    }

    /// Closes the child's standard input, which asks it to stop, and waits at most `timeout` for
    /// it to exit; kills it past that.
    pub async fn stop(mut self, timeout: Duration) {
        self.stdin = None;
        if tokio::time::timeout(timeout, self.child.wait()).await.is_err() {
            let _ = self.child.start_kill();
        }
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        // Harmless if it has exited; `kill_on_drop` covers the rest, and tokio reaps it.
        let _ = self.child.start_kill();
    }
}

/// The `key=value` words of a child's report line.
#[derive(Debug, Clone, Default)]
pub struct Report(HashMap<String, String>);

impl Report {
    fn parse(words: &str) -> Self {
        Self(
            words
                .split_whitespace()
                .filter_map(|w| w.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> anyhow::Result<&str> {
        self.0.get(key).map(String::as_str).with_context(|| format!("no `{key}` in the report"))
    }

    /// The value of `key`, parsed.
    pub fn parse_value<T: std::str::FromStr>(&self, key: &str) -> anyhow::Result<T>
    where
        T::Err: std::fmt::Display,
    {
        let value = self.get(key)?;
        value.parse().map_err(|e| anyhow::anyhow!("`{key}={value}`: {e}"))
    }
}

/// A fresh directory under the system's temporary directory, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `relay-bench-<pid>-<tag>`.
    pub fn new(tag: &str) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("relay-bench-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self(dir))
    }

    /// The directory.
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
