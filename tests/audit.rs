//! The audit log, captured from a real server: one line per bind and per write, with who, where
//! from, what and the outcome, and never a password. Alone in its own test binary, so the capturing
//! subscriber is the process's only one and sees every event.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use ldap3::exop::PasswordModify;
use ldap3::{Mod, Scope};

const ADMIN_DN: &str = "cn=admin,ou=services,dc=example,dc=com";
const DAVE: &str = "uid=dave,ou=people,dc=example,dc=com";

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn audit_lines_for_binds_and_writes_without_secrets() {
    let buf = Buf::default();
    let w = buf.clone();
    let sub = tracing_subscriber::fmt().with_ansi(false).with_writer(move || w.clone()).finish();
    tracing::subscriber::set_global_default(sub).expect("the only subscriber of this test binary");

    let d = start_demo_full().await;
    let mut admin = bind(&d.url, ADMIN_DN, "demo-admin").await;
    let title = Mod::Replace("title".to_string(), ["Chief".to_string()].into());
    assert_eq!(admin.with_timeout(WAIT).modify(DAVE, vec![title]).await.unwrap().rc, 0);
    let pm = PasswordModify { user_id: Some(DAVE), old_pass: None, new_pass: Some("Secret-Audit-Pw-1") };
    assert_eq!(admin.with_timeout(WAIT).extended(pm).await.unwrap().1.rc, 0);
    assert_eq!(try_bind(&mut connect(&d.url).await, DAVE, "wrong-Audit-Pw").await.rc, 49);
    let e = search_ok(&mut admin, DAVE, Scope::Base, "(objectClass=*)", &["title"]).await;
    assert_eq!(first(&e[0], "title"), "Chief");

    let log = String::from_utf8(buf.0.lock().unwrap_or_else(|p| p.into_inner()).clone()).unwrap();
    let audit: Vec<&str> = log.lines().filter(|l| l.contains("idgate::audit")).collect();
    let has = |parts: &[&str]| audit.iter().any(|l| parts.iter().all(|p| l.contains(p)));
    assert!(has(&["event=\"bind\"", ADMIN_DN, "result=Success"]), "{log}");
    assert!(has(&["event=\"bind\"", DAVE, "result=InvalidCredentials"]), "{log}");
    assert!(
        has(&[
            "op=\"update_user\"",
            "target=\"user:dave\"",
            &format!("who={ADMIN_DN}"),
            "source=127.0.0.1",
            "outcome=\"ok\""
        ]),
        "{log}"
    );
    assert!(has(&["op=\"set_password\"", "target=\"user:dave\"", "outcome=\"ok\""]), "{log}");
    for secret in ["demo-admin", "Secret-Audit-Pw-1", "wrong-Audit-Pw"] {
        assert!(!log.contains(secret), "{secret} leaked into the log");
    }
    d.running.shutdown().await;
}
