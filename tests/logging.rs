//! What the real binary writes, at the most verbose level: no credential (bind and Password Modify
//! passwords, SCIM passwords and tokens) anywhere, one line per event whatever a client sends (a
//! bind name with a newline cannot forge an audit line), and nothing on stdout.

mod common;

use std::time::Duration;

use common::process::{Gateway, Options};
use common::{ADMIN_DN, ADMIN_PW, PEOPLE, WAIT};
use ldap3::LdapConnAsync;
use ldap3::exop::PasswordModify;

const SECRETS: &[&str] = &["Wr0ng-Secret-Guess", "N3w-Secret-Passw0rd", "Sc1m-Secret-Passw0rd", "demo-token", ADMIN_PW];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_is_logged_at_trace_and_client_values_cannot_forge_lines() {
    let gw = Gateway::start_with(Options { env: vec![("RUST_LOG".into(), "trace".into())], ..Default::default() });
    let url = format!("ldap://{}", gw.ldap_addr);
    let connect = || async {
        let (c, ldap) = LdapConnAsync::new(&url).await.expect("connect");
        ldap3::drive!(c);
        ldap
    };
    // A bind name carrying a newline, and a wrong password.
    let mut l = connect().await;
    let r = l.with_timeout(WAIT).simple_bind(&format!("uid=x\nforged=1,{PEOPLE}"), "Wr0ng-Secret-Guess").await;
    assert_eq!(r.expect("answered").rc, 49);
    // The admin binds and sets a password with Password Modify.
    let mut admin = connect().await;
    admin.with_timeout(WAIT).simple_bind(ADMIN_DN, ADMIN_PW).await.expect("answered").success().expect("bind");
    let pm = PasswordModify {
        user_id: Some(&format!("uid=alice,{PEOPLE}")),
        old_pass: None,
        new_pass: Some("N3w-Secret-Passw0rd"),
    };
    admin.with_timeout(WAIT).extended(pm).await.expect("answered").success().expect("password set");
    // SCIM: a user created with a password, with the bearer token.
    let http = reqwest::Client::new();
    let r = http
        .post(format!("http://{}/scim/v2/Users", gw.http_addr))
        .bearer_auth("demo-token")
        .header("content-type", "application/scim+json")
        .body(r#"{"userName":"logcheck","password":"Sc1m-Secret-Passw0rd","name":{"givenName":"L","familyName":"C"}}"#)
        .send()
        .await
        .expect("SCIM answers");
    assert_eq!(r.status().as_u16(), 201);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let stopped = tokio::task::spawn_blocking(move || gw.stop(Duration::from_secs(20))).await.expect("stop");
    let logs = stopped.logs;
    assert!(logs.contains("\"level\":\"DEBUG\"") || logs.contains("\"level\":\"TRACE\""), "verbose logging is on");
    for s in SECRETS {
        // As text, and as the byte lists and hex a protocol crate's debug output would show.
        let bytes = s.bytes().map(|b| b.to_string()).collect::<Vec<_>>().join(", ");
        let hex: String = s.bytes().map(|b| format!("{b:02x}")).collect();
        let hit = logs.lines().find(|l| l.contains(s) || l.contains(&bytes) || l.contains(&hex));
        assert!(hit.is_none(), "{s} was logged: {}", hit.unwrap_or_default());
    }
    // Every line is one JSON event; the bind name stays on its own audit line, escaped.
    for line in logs.lines() {
        assert!(serde_json::from_str::<serde_json::Value>(line).is_ok(), "not one event: {line}");
    }
    let bind = logs
        .lines()
        .find(|l| l.contains("\"event\":\"bind\"") && l.contains("forged=1"))
        .expect("the bind's audit line");
    assert!(bind.contains(r"uid=x\\nforged=1") || bind.contains(r"uid=x\nforged=1"), "{bind}");
    assert!(!logs.lines().any(|l| l.starts_with("forged")));
    assert!(stopped.stdout.is_empty(), "stdout: {}", String::from_utf8_lossy(&stopped.stdout));
    assert!(stopped.status.success(), "{:?}", stopped.status);
}

/// The human format, as the demo and most installs log: the same bind name stays on one line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn human_logs_keep_one_event_per_line() {
    let gw = Gateway::start_with(Options {
        edit: Some(Box::new(|doc| {
            common::process::table(doc, "log").insert("format".into(), "human".into());
        })),
        ..Default::default()
    });
    let (c, mut l) = LdapConnAsync::new(&format!("ldap://{}", gw.ldap_addr)).await.expect("connect");
    ldap3::drive!(c);
    let r = l.with_timeout(WAIT).simple_bind(&format!("uid=x\nforged=1 result=Success\r\n,{PEOPLE}"), "wrong").await;
    assert_eq!(r.expect("answered").rc, 49);
    let r = l.with_timeout(WAIT).simple_bind(&format!("uid=y\nforged=2,{PEOPLE}"), "wrong").await;
    assert_eq!(r.expect("answered").rc, 49);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopped = tokio::task::spawn_blocking(move || gw.stop(Duration::from_secs(20))).await.expect("stop");
    let logs = stopped.logs;
    assert!(!logs.lines().any(|l| l.starts_with("forged")), "{logs}");
    for n in [1, 2] {
        let line = logs.lines().find(|l| l.contains(&format!("forged={n}"))).expect("the bind's line");
        assert!(line.contains("bind") && line.contains("uid="), "{line}");
    }
    assert!(stopped.stdout.is_empty());
}
