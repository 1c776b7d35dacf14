//! The `idgate` binary's commands, run as a user would.

use std::process::Command;

fn idgate(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_idgate")).args(args).output().expect("run idgate");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn check_config_reports_the_demo_backend() {
    let (code, out) = idgate(&["check-config", "config/demo.toml"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("backend: memory reachable"), "{out}");
    assert!(out.contains("22 users"), "{out}");
    assert!(out.contains("reader (read)"), "{out}");
    assert!(out.contains("hidden accounts: 1\n  svc-erp: listed in directory.hidden.logins"), "{out}");
}

#[test]
fn check_config_names_an_unknown_key() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.toml");
    std::fs::write(&p, "[ldap]\nbase = \"dc=x\"\n[backend]\nkind = \"memory\"\n").unwrap();
    let (code, out) = idgate(&["check-config", p.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("unknown field `base`"), "{out}");
}

#[test]
fn check_config_fails_when_the_backend_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("doli.toml");
    // Port 9 on loopback: nothing listens there.
    std::fs::write(&p, "[backend]\nkind = \"dolibarr\"\nurl = \"http://127.0.0.1:9\"\napi_key = \"k\"\ntimeout = \"2s\"\nretries = 0\n")
        .unwrap();
    let (code, out) = idgate(&["check-config", p.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("backend: FAILED"), "{out}");
    assert!(!out.contains("api_key = \"k\""), "{out}");
}

#[test]
fn version() {
    let (code, out) = idgate(&["version"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("idgate "), "{out}");
}
