//! The tokio runtime a binary runs on, with as many worker threads as its `--threads` says.

/// A runtime with `threads` worker threads: tokio's current-thread runtime for 0 or 1, its
/// multi-thread runtime with that many workers for more, and one worker per core for `None`.
///
/// One thread hands no work between threads: where a process shares its cores with other busy
/// ones, that can save more than a second worker brings (the forwarding tools run on one by
/// default; BENCHMARKS.md has the figures for them and for the relay).
///
/// ```
/// let runtime = relay_process::runtime(Some(1)).expect("a runtime");
/// assert_eq!(runtime.block_on(async { 1 + 1 }), 2);
/// ```
pub fn runtime(threads: Option<u16>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = match threads {
        Some(0 | 1) => tokio::runtime::Builder::new_current_thread(),
        Some(threads) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(threads.into());
            builder
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    builder.enable_all().build()
}
