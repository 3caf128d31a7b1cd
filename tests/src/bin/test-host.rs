//! A lab host in its own process, so that tests can kill it.
//!
//! `test-host RELAY_URL CERT_FILE ROOT_KEY_FILE ADDRESS NAME`; prints `ready` once listening, then
//! each of its lab's events (`started TAG`, `cancelled TAG`), one a line.

use relay_rpc::auth::SharedAccessKey;
use relay_rpc::{ConnectOptions, Host};
use relay_tests::lab::{LabHost, ServeLab};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, cert, key, address, name] = args.as_slice() else {
        anyhow::bail!("usage: test-host RELAY_URL CERT_FILE ROOT_KEY_FILE ADDRESS NAME");
    };
    let options = ConnectOptions::new().trust_pem_file(cert)?.with_shared_access_key(SharedAccessKey::from_file(key)?);
    let host = Host::connect(url, options).await?;
    let listener = host.listen(address).await?;
    println!("ready");
    let (lab, mut events) = LabHost::new(name);
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            use std::io::Write;
            let mut stdout = std::io::stdout().lock();
            // The test may have stopped reading: the host serves on regardless.
            let _ = writeln!(stdout, "{event}").and_then(|()| stdout.flush());
        }
    });
    listener.serve(ServeLab::new(lab)).await?;
    Ok(())
}
