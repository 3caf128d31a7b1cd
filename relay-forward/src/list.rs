//! `relay list`: what a relay's `GET https://{relay}/$discovery` lists, printed for people.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use relay_proto::auth::{sas_token, unix_now};
use relay_rpc::RelayUrl;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use serde::Deserialize;

use super::Credentials;
use tokio::net::TcpStream;

/// How long the whole listing may take.
const TIMEOUT: Duration = Duration::from_secs(15);

/// The largest listing read.
const MAX_LISTING: usize = 16 * 1024 * 1024;

/// `relay list`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ListArgs {
    /// The relay, wss://HOST:PORT (or quic://HOST:PORT, taken to mean its TCP port of the same
    /// number, as the relay's defaults have it).
    #[arg(long, env = "RELAY_URL", default_value = "wss://127.0.0.1:7443", value_name = "URL")]
    pub relay: RelayUrl,
    /// What to trust and present: a send token covering the addresses to list, or the root key,
    /// with which the tool signs one for the whole relay.
    #[command(flatten)]
    pub credentials: Credentials,
}

/// Why the listing could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListError {
    /// The certificate to trust could not be read.
    #[error("cannot trust {}", path.display())]
    Trust {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The root key could not be read.
    #[error(transparent)]
    RootKey(#[from] relay_rpc::auth::KeyFileError),
    /// The relay could not be reached or answered no listing.
    #[error("cannot read the listing of {url}")]
    Fetch {
        /// The relay.
        url: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The relay refused.
    #[error("the relay answered {status}: {body}")]
    Refused {
        /// Its status.
        status: u16,
        /// What it said.
        body: String,
    },
}

/// The listing, as the relay gives it.
#[derive(Debug, Deserialize)]
pub struct Listing {
    /// The discoverable addresses the token covers.
    pub addresses: Vec<ListedAddress>,
}

/// One address of a [`Listing`].
#[derive(Debug, Deserialize)]
pub struct ListedAddress {
    /// The address.
    pub address: String,
    /// Its listeners, on every node.
    pub listeners: u64,
    /// The contract its hosts serve, if one that takes HTTP requests described it.
    pub contract: Option<ListedContract>,
}

/// A contract of a [`ListedAddress`].
#[derive(Debug, Deserialize)]
pub struct ListedContract {
    /// Its name.
    pub contract: String,
    /// Its fingerprint, in hex.
    pub fingerprint: String,
    /// Its methods.
    pub methods: Vec<ListedMethod>,
}

/// A method of a [`ListedContract`].
#[derive(Debug, Deserialize)]
pub struct ListedMethod {
    /// Its signature, `add(i64,i64)->i64`.
    pub signature: String,
    /// Where it is called as JSON, `/calc/Calculator/add`.
    pub path: String,
}

/// Reads the relay's listing.
pub async fn fetch_listing(args: &ListArgs) -> Result<Listing, ListError> {
    let url = format!("https://{}:{}", args.relay.host(), args.relay.port());
    let fetch_error = |source| ListError::Fetch { url: url.clone(), source };
    let tls = tls_trusting(&args.credentials.ca_file())?;
    let token = match (&args.credentials.token, args.credentials.root_key()?) {
        (Some(token), _) => Some(token.clone()),
        (None, Some(key)) => Some(sas_token(&format!("{url}/"), key.name(), key.secret(), unix_now() + 300)),
        (None, None) => None,
    };
    let get = async {
        let tcp = TcpStream::connect((args.relay.host(), args.relay.port())).await?;
        let name = ServerName::try_from(args.relay.host().to_owned()).map_err(std::io::Error::other)?;
        let tls = tokio_rustls::TlsConnector::from(tls).connect(name, tcp).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(std::io::Error::other)?;
        tokio::spawn(connection);
        let mut request = hyper::Request::get("/$discovery").header(hyper::header::HOST, args.relay.host());
        if let Some(token) = &token {
            request = request.header("ServiceBusAuthorization", token);
        }
        let request = request.body(Empty::<Bytes>::new()).map_err(std::io::Error::other)?;
        let response = sender.send_request(request).await.map_err(std::io::Error::other)?;
        let status = response.status().as_u16();
        let body = http_body_util::Limited::new(response.into_body(), MAX_LISTING);
        let body = body.collect().await.map_err(std::io::Error::other)?.to_bytes();
        Ok::<_, std::io::Error>((status, body))
    };
    let timed_out = || std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in time");
    let got = tokio::time::timeout(TIMEOUT, get).await.map_err(|_| fetch_error(timed_out()))?;
    let (status, body) = got.map_err(fetch_error)?;
    if status != 200 {
        return Err(ListError::Refused { status, body: String::from_utf8_lossy(&body).into_owned() });
    }
    serde_json::from_slice(&body).map_err(|e| fetch_error(std::io::Error::other(e)))
}

/// The listing as lines for people: each address with its listener count and contract, then
/// each method's signature and JSON path.
pub fn render_listing(listing: &Listing) -> String {
    let mut out = String::new();
    if listing.addresses.is_empty() {
        out.push_str("no discoverable address\n");
    }
    for address in &listing.addresses {
        let contract = match &address.contract {
            Some(c) => format!("{} ({})", c.contract, c.fingerprint),
            None => "-".to_owned(),
        };
        out.push_str(&format!("{}  listeners: {}  contract: {contract}\n", address.address, address.listeners));
        for method in address.contract.iter().flat_map(|c| &c.methods) {
            out.push_str(&format!("    {}  POST {}\n", method.signature, method.path));
        }
    }
    out
}

fn tls_trusting(ca: &Path) -> Result<Arc<rustls::ClientConfig>, ListError> {
    let trust_error = |source| ListError::Trust { path: ca.to_owned(), source };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| trust_error(std::io::Error::other(e)))? {
        let cert = cert.map_err(|e| trust_error(std::io::Error::other(e)))?;
        roots.add(cert).map_err(|e| trust_error(std::io::Error::other(e)))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| trust_error(std::io::Error::other(e)))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listing_reads_as_lines() {
        let listing: Listing = serde_json::from_str(
            r#"{"addresses":[{"address":"calc","listeners":2,"contract":{"contract":"Calculator","fingerprint":"00ff",
                "methods":[{"name":"add","signature":"add(i64,i64)->i64","path":"/calc/Calculator/add"}]}},
                {"address":"idle","listeners":0}]}"#,
        )
        .unwrap();
        assert_eq!(
            render_listing(&listing),
            "calc  listeners: 2  contract: Calculator (00ff)\n    add(i64,i64)->i64  POST /calc/Calculator/add\n\
             idle  listeners: 0  contract: -\n"
        );
        assert_eq!(render_listing(&Listing { addresses: vec![] }), "no discoverable address\n");
    }
}
