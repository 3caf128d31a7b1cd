//! Known answers for our Azure-format SAS tokens, computed independently: by Python's standard
//! library (`hmac`, `hashlib`, `base64`, `urllib.parse.quote`) and by Microsoft's own Node package
//! `hyco-ws@1.0.5` (`createRelayToken`), whose tokens must also open a real relay.
//!
//! Needs `python3`, `node` and `npm` on `PATH`; installs `tests/node` (`npm ci`) on first use.

use std::path::Path;
use std::process::Command;

use relay_tests::node::node_dir;
use std::time::Duration;

use relay_rpc::auth::{SasToken, sas_token, unix_now};
use relay_rpc::{CallContext, Connection, Host};
use relay_tests::TestRelay;
use relay_tests::lab::{LabClient, LabHost, ServeLab};

const ROOT: &str = "RootManageSharedAccessKey";

/// A token the way Azure's SDKs make it, in Python with the standard library only.
const PYTHON_SAS: &str = r#"
import base64, hashlib, hmac, sys, urllib.parse
uri, skn, key, se = sys.argv[1:]
enc = lambda s: urllib.parse.quote(s, safe="-_.!~*'()")
sr = enc(uri)
sig = base64.b64encode(hmac.new(key.encode("utf-8"), (sr + "\n" + se).encode("utf-8"), hashlib.sha256).digest())
sys.stdout.write("SharedAccessSignature sr=" + sr + "&sig=" + enc(sig.decode("ascii")) + "&se=" + se + "&skn=" + skn)
"#;

/// A token from the real `hyco-ws` package; `createRelayToken` picks the expiry (now + `ttl`).
const NODE_HYCO: &str = r#"
const [uri, skn, key, ttl] = process.argv.slice(1);
process.stdout.write(require("hyco-ws").createRelayToken(uri, skn, key, Number(ttl)));
"#;

struct Case {
    uri: &'static str,
    key_name: &'static str,
    key: &'static str,
    expiry: u64,
    /// The audience `SasToken::parse` should find, or `None` if it must refuse the resource.
    audience: Option<(&'static str, &'static str)>,
}

const CASES: &[Case] = &[
    // .NET style: `sb://` scheme, no port.
    Case {
        uri: "sb://relay.example/calc",
        key_name: ROOT,
        key: "Q2FsY3VsYXRvcktleQ+/ZXhhbXBsZQ==+/AbCdEfGhIjKlM=",
        expiry: 1_900_000_000,
        audience: Some(("relay.example", "calc")),
    },
    // hyco-ws style: `http://`, host with port, `$hc/` already stripped.
    Case {
        uri: "http://localhost:7443/calc",
        key_name: "listen-only",
        key: "s3cr3t",
        expiry: 1_700_000_000,
        audience: Some(("localhost", "calc")),
    },
    // Every character JavaScript leaves alone in a path, and nested segments.
    Case {
        uri: "sb://relay.example/a/b-c_d.e~f",
        key_name: "senders",
        key: "+/=+/=",
        expiry: 4_102_444_800,
        audience: Some(("relay.example", "a/b-c_d.e~f")),
    },
    // `$hc/` left in, upper-case host, IPv6 literal with port; a key that is not ASCII.
    Case {
        uri: "wss://[::1]:9443/$hc/Lab",
        key_name: ROOT,
        key: "clé-ü-🔑",
        expiry: 1,
        audience: Some(("::1", "Lab")),
    },
    // Characters that must be escaped and that no address may hold: signed, but refused on parse.
    Case {
        uri: "sb://Relay.Example/caf\u{e9} au lait?x=1&y=(2)*'!",
        key_name: ROOT,
        key: "k",
        expiry: 1_234_567_890,
        audience: None,
    },
];

fn run(program: &str, args: &[&str], dir: Option<&Path>) -> String {
    let mut command = Command::new(program);
    command.args(args).env("PYTHONUTF8", "1");
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let output = command.output().unwrap_or_else(|e| panic!("cannot run {program} (is it on PATH?): {e}"));
    assert!(
        output.status.success(),
        "{program} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("output is UTF-8")
}

fn python_token(case: &Case) -> String {
    run("python3", &["-c", PYTHON_SAS, case.uri, case.key_name, case.key, &case.expiry.to_string()], None)
}

fn hyco_token(uri: &str, key_name: &str, key: &str) -> String {
    run("node", &["-e", NODE_HYCO, uri, key_name, key, "3600"], Some(node_dir()))
}

/// The one `%XX` decoding a token's `sr` field gets.
fn percent_decode(s: &str) -> String {
    let mut out = Vec::new();
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex: String = bytes.by_ref().take(2).map(char::from).collect();
            out.push(u8::from_str_radix(&hex, 16).expect("valid escape"));
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).expect("UTF-8")
}

fn field<'a>(token: &'a str, name: &str) -> &'a str {
    let fields = token.strip_prefix("SharedAccessSignature ").expect("a SAS token");
    fields.split('&').find_map(|f| f.strip_prefix(name)?.strip_prefix('=')).expect("field present")
}

#[test]
fn our_tokens_equal_pythons_byte_for_byte() {
    for case in CASES {
        let expected = python_token(case);
        let ours = sas_token(case.uri, case.key_name, case.key, case.expiry);
        assert_eq!(ours, expected, "token for {:?}", case.uri);

        match case.audience {
            Some((host, path)) => {
                let token = SasToken::parse(&expected).unwrap_or_else(|e| panic!("{expected:?}: {e}"));
                assert!(token.verify(case.key), "{:?} not verified", case.uri);
                assert!(!token.verify(&format!("{}x", case.key)), "{:?} verified with a wrong key", case.uri);
                assert!(!token.verify(""), "{:?} verified with an empty key", case.uri);
                assert_eq!(token.expiry(), case.expiry);
                assert_eq!(token.key_name(), case.key_name);
                assert_eq!((token.audience().host.as_str(), token.audience().path.as_str()), (host, path));
            }
            None => assert!(SasToken::parse(&expected).is_err(), "{:?} accepted", case.uri),
        }
    }
}

#[test]
fn python_escapes_like_encode_uri_component() {
    // The escaping itself, pinned by hand: upper-case hex, `-_.!~*'()` kept, UTF-8 bytes escaped.
    let case = &CASES[4];
    assert_eq!(
        field(&python_token(case), "sr"),
        "sb%3A%2F%2FRelay.Example%2Fcaf%C3%A9%20au%20lait%3Fx%3D1%26y%3D(2)*'!"
    );
}

#[test]
fn hyco_ws_tokens_parse_verify_and_equal_ours() {
    let port = 61_234;
    let key = "hyco+/key=";
    let before = unix_now();
    let hyco = hyco_token(&format!("wss://localhost:{port}/$hc/lab"), ROOT, key);
    let after = unix_now();

    let token = SasToken::parse(&hyco).unwrap_or_else(|e| panic!("{hyco:?}: {e}"));
    assert!(token.verify(key), "{hyco:?} not verified");
    assert!(!token.verify("hyco+/key"), "{hyco:?} verified with a wrong key");
    assert_eq!(token.key_name(), ROOT);
    assert_eq!(token.audience().host, "localhost");
    assert_eq!(token.audience().path, "lab");
    assert!((before + 3600..=after + 3601).contains(&token.expiry()), "expiry {}", token.expiry());

    // hyco-ws rewrites the scheme to http, keeps host:port and strips `$hc/` before signing.
    let resource = percent_decode(field(&hyco, "sr"));
    assert_eq!(resource, format!("http://localhost:{port}/lab"));
    assert_eq!(sas_token(&resource, ROOT, key, token.expiry()), hyco);
}

#[tokio::test]
async fn hyco_ws_tokens_open_a_real_relay_for_host_and_caller() {
    let relay = TestRelay::start().await;
    let root = relay.root_key();
    assert_eq!(root.name(), ROOT);
    let uri = format!("wss://localhost:{}/$hc/lab", relay.addr.port());
    let secret = root.secret().to_owned();
    let token = tokio::task::spawn_blocking(move || hyco_token(&uri, ROOT, &secret)).await.unwrap();

    // The relay is reached at 127.0.0.1; the token names `localhost`, which the relay accepts.
    let host = Host::connect(&relay.url, relay.anonymous_options().with_token(token.clone()))
        .await
        .expect("host connects with a hyco-ws token");
    let (lab, _events) = LabHost::new("hyco-host");
    tokio::spawn(host.listen("lab").await.expect("listens with a hyco-ws token").serve(ServeLab::new(lab)));

    let caller = Connection::connect(&relay.url, relay.anonymous_options().with_token(token))
        .await
        .expect("caller connects with a hyco-ws token");
    let client = LabClient::connect(&caller, "lab").await.expect("opens lab with a hyco-ws token");
    let name = client.whoami(CallContext::with_timeout(Duration::from_secs(20))).await.unwrap();
    assert_eq!(name, "hyco-host");
}
