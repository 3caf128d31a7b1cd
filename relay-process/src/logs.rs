//! The log on stderr, set up alike by every binary: `RUST_LOG` (or the binary's default filter)
//! picks the lines, [`LogFormat`] how they are written.

/// How the log is written: `--log-format text|json` on the binaries. (The variants' comments are
/// the binaries' help.)
///
/// In JSON, each event's fields are keys at the top level (`message`, `address`, ...), beside
/// `timestamp`, `level` and `target`, and the fields of the innermost span it is in are under
/// `span` (`{"name":"channel","id":42,...}`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
#[non_exhaustive]
pub enum LogFormat {
    /// Lines for people.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Installs the process's subscriber: the log on stderr, written in `format`, filtered by
/// `RUST_LOG` or, when it is unset or unreadable, by `default_filter` (`"info"`,
/// `"info,async_nats=warn"`). Call it once, first thing in `main`; it panics if a subscriber is
/// installed already.
///
/// ```no_run
/// relay_process::init_logs(relay_process::LogFormat::Json, "info");
/// tracing::info!(address = "calc", "listener registered");
/// // {"timestamp":"…","level":"INFO","message":"listener registered","address":"calc","target":"…"}
/// ```
pub fn init_logs(format: LogFormat, default_filter: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let logs = tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().flatten_event(true).with_current_span(true).with_span_list(false).init(),
    }
}
