//! Calls the calculator through a relay and prints the answer. Given several relays (the nodes
//! of a cluster, `--relay URL1,URL2`), it connects to the first that answers, in a random order,
//! and goes to another if the calculator cannot be reached because that relay is gone or
//! draining.
//!
//! ```text
//! cargo run --release -p calculator --bin calculator-client -- --relay quic://127.0.0.1:7443 --address calc add 2 3
//! ```

use std::process::ExitCode;
use std::time::Duration;

use calculator::{CalculatorClient, RelayArgs};
use clap::{Parser, Subcommand};
use relay_forward::FailoverConnection;
use relay_rpc::CallContext;

#[derive(Debug, Parser)]
#[command(about = "Call the calculator through a relay")]
struct Args {
    #[command(flatten)]
    relay: RelayArgs,
    /// How long the call may take, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    #[command(subcommand)]
    op: Op,
}

#[derive(Debug, Subcommand)]
enum Op {
    /// a + b
    Add { a: i64, b: i64 },
    /// a - b
    Subtract { a: i64, b: i64 },
    /// a * b
    Multiply { a: i64, b: i64 },
    /// a / b
    Divide { a: i64, b: i64 },
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let relay = FailoverConnection::connect(args.relay.relay.clone(), args.relay.options()?).await?;
    let address = args.relay.address.as_str();
    // The stub reopens its channel on its relay when it breaks (see `relay_rpc::client`).
    let calc =
        relay.open_with(|connection| async move { CalculatorClient::connect(&connection, address).await }).await?;
    let ctx = CallContext::with_timeout(Duration::from_millis(args.timeout_ms));
    let answer = match args.op {
        Op::Add { a, b } => Ok(calc.add(ctx, a, b).await?),
        Op::Subtract { a, b } => calc.subtract(ctx, a, b).await?,
        Op::Multiply { a, b } => calc.multiply(ctx, a, b).await?,
        Op::Divide { a, b } => calc.divide(ctx, a, b).await?,
    };
    relay.close();
    match answer {
        Ok(value) => {
            println!("{value}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("calculator error: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
