//! `relay`: forward TCP ports through a relay. See the `relay_forward` library.
//!
//! ```text
//! cargo run --release -p relay-forward -- forward --address ssh --to 127.0.0.1:22
//! cargo run --release -p relay-forward -- connect --address ssh --listen 127.0.0.1:2222
//! ```

use std::process::ExitCode;

use clap::Parser;
use relay_forward::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    relay_process::init_logs(cli.log_format, "info");
    let runtime = match relay_process::runtime(Some(cli.threads)) {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(relay_forward::run(cli, async {
        relay_process::requested().await;
    })) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", relay_forward::report(&e));
            ExitCode::FAILURE
        }
    }
}
