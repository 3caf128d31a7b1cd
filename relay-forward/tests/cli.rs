//! The real `relay` binary: its help, and the errors it stops with. Forwarding
//! through a relay is tested end to end in `tests/tests/e2e/forward.rs`.

use std::process::{Command, Output};

fn relay(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_relay"))
        .args(args)
        .env_remove("RELAY_TOKEN")
        .env_remove("RELAY_URL")
        .env("RUST_LOG", "off")
        .output()
        .expect("relay runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn help_names_both_sides() {
    let output = relay(&["--help"]);
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("forward") && help.contains("connect"), "{help}");
    let output = relay(&["forward", "--help"]);
    let help = String::from_utf8_lossy(&output.stdout);
    for option in ["--relay", "--address", "--to", "--ca", "--token", "--data-dir", "--connect-timeout"] {
        assert!(help.contains(option), "{option} missing from {help}");
    }
}

#[test]
fn a_missing_certificate_stops_it_with_a_hint() {
    let dir = std::env::temp_dir().join(format!("relay-cli-{}-missing", std::process::id()));
    let data_dir = dir.to_str().unwrap();
    let output = relay(&["forward", "--address", "a", "--to", "127.0.0.1:22", "--data-dir", data_dir]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(err.starts_with("error: cannot trust") && err.contains("cert.pem") && err.contains("--ca"), "{err}");
}

#[test]
fn an_unreachable_relay_stops_it() {
    let dir = std::env::temp_dir().join(format!("relay-cli-{}-unreachable", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(&ca, cert.cert.pem()).unwrap();
    let ca = ca.to_str().unwrap();
    // Port 1 on loopback refuses TCP at once.
    let common = ["--relay", "wss://127.0.0.1:1", "--address", "a", "--ca", ca, "--token", "unused"];
    let output = relay(&[&["connect", "--listen", "127.0.0.1:0"][..], &common].concat());
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).starts_with("error: cannot connect to the relay at wss://127.0.0.1:1"),
        "{}",
        stderr(&output)
    );
    let output = relay(&[&["forward", "--to", "127.0.0.1:22"][..], &common].concat());
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).starts_with("error: cannot connect to the relay"), "{}", stderr(&output));
    let _ = std::fs::remove_dir_all(&dir);
}
