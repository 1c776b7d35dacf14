//! Writes with OpenLDAP's command-line tools over clear text, StartTLS and LDAPS; `require_tls`;
//! StartTLS edge cases on the wire. A tool test skips (with a message) only when the tool is missing.

mod common;

use std::io::Write;
use std::process::Output;
use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use ldap3::exop::Exop;
use ldap3::{LdapConnAsync, LdapConnSettings, Scope};
use ldap3_proto::LdapCodec;
use ldap3_proto::proto::{LdapBindCred, LdapBindRequest, LdapExtendedRequest, LdapMsg, LdapOp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::bytes::BytesMut;
use tokio_util::codec::{Encoder, FramedRead};

const ADMIN_DN: &str = "cn=admin,ou=services,dc=example,dc=com";
const READER_DN: &str = "cn=reader,ou=services,dc=example,dc=com";
const BASE: &str = "dc=example,dc=com";
const STARTTLS_OID: &str = "1.3.6.1.4.1.1466.20037";

// ---- OpenLDAP tools ---------------------------------------------------------------------------------

/// Runs an OpenLDAP tool (no system or user configuration; certificates not verified, the demo's is
/// self-signed); `None` when it is not installed.
async fn run(tool: &str, args: &[String]) -> Option<Output> {
    let mut cmd = tokio::process::Command::new(tool);
    cmd.args(args)
        .env("LDAPCONF", "/dev/null")
        .env("LDAPRC", "/nonexistent-ldaprc")
        .env("LDAPTLS_REQCERT", "never")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    match cmd.spawn() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("SKIPPED: {tool} is not installed (Debian package ldap-utils)");
            None
        }
        Err(e) => panic!("cannot run {tool}: {e}"),
        Ok(child) => Some(
            tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
                .await
                .unwrap_or_else(|_| panic!("{tool} did not finish in time"))
                .expect("tool output"),
        ),
    }
}

fn out(o: &Output) -> String {
    format!("stdout: {}\nstderr: {}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exit code")
}

fn ldif_values(text: &str, name: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.split_once(": "))
        .filter(|(a, _)| a.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.to_string())
        .collect()
}

/// How the tools reach the server.
struct Transport {
    name: &'static str,
    uri: String,
    extra: Vec<String>,
}

impl Transport {
    /// `-x -H <uri> [-ZZ] -D <dn> -w <pw>` followed by `rest`.
    fn args(&self, dn: &str, pw: &str, rest: &[&str]) -> Vec<String> {
        let mut a: Vec<String> = vec!["-x".into(), "-H".into(), self.uri.clone()];
        a.extend(self.extra.iter().cloned());
        a.extend(["-D", dn, "-w", pw].iter().map(|s| s.to_string()));
        a.extend(rest.iter().map(|s| s.to_string()));
        a
    }
}

fn transports(demo: &Demo) -> Vec<Transport> {
    let ldaps = demo.running.ldaps_addr.expect("the demo has an LDAPS listener");
    vec![
        Transport { name: "clear", uri: demo.url.clone(), extra: vec![] },
        Transport { name: "starttls", uri: demo.url.clone(), extra: vec!["-ZZ".into()] },
        Transport { name: "ldaps", uri: format!("ldaps://{ldaps}"), extra: vec![] },
    ]
}

fn ldif_file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(text.as_bytes()).expect("write ldif");
    f
}

/// `ldapsearch` as the admin for one filter; the LDIF text.
async fn tool_search(t: &Transport, filter: &str, attrs: &[&str]) -> String {
    let mut rest = vec!["-LLL", "-o", "ldif_wrap=no", "-b", BASE, filter];
    rest.extend_from_slice(attrs);
    let o = run("ldapsearch", &t.args(ADMIN_DN, "demo-admin", &rest)).await.expect("ldapsearch installed");
    assert_eq!(code(&o), 0, "{}: ldapsearch {filter}: {}", t.name, out(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

async fn whoami_rc(t: &Transport, dn: &str, pw: &str) -> (i32, String) {
    let o = run("ldapwhoami", &t.args(dn, pw, &[])).await.expect("ldapwhoami installed");
    (code(&o), String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// The issue's acceptance sequence with one transport.
async fn tool_lifecycle(t: &Transport) {
    let login = format!("tool{}", t.name);
    let dn = format!("uid={login},ou=people,dc=example,dc=com");
    let renamed_login = format!("{login}2");
    let renamed = format!("uid={renamed_login},ou=people,dc=example,dc=com");
    let group = "cn=staff,ou=groups,dc=example,dc=com";

    // ldapadd with a password, then ldapwhoami as the new user.
    let f = ldif_file(&format!(
        "dn: {dn}\nobjectClass: inetOrgPerson\nobjectClass: posixAccount\nuid: {login}\ncn: Tool User\nsn: User\n\
         givenName: Tool\nmail: {login}@example.com\nuidNumber: 1\ngidNumber: 1\nhomeDirectory: /x\n\
         userPassword: First-Pass-1\n"
    ));
    let Some(o) = run("ldapadd", &t.args(ADMIN_DN, "demo-admin", &["-f", f.path().to_str().expect("path")])).await
    else {
        return;
    };
    assert_eq!(code(&o), 0, "{}: ldapadd: {}", t.name, out(&o));
    let (rc, who) = whoami_rc(t, &dn, "First-Pass-1").await;
    assert_eq!(rc, 0, "{}: ldapwhoami as the new user", t.name);
    assert_eq!(norm_dn(who.trim_start_matches("dn:")), norm_dn(&dn));
    let found = tool_search(t, &format!("(uid={login})"), &["uidNumber", "homeDirectory"]).await;
    assert_ne!(ldif_values(&found, "uidNumber"), vec!["1".to_string()], "POSIX numbers assigned by the gateway");
    assert_eq!(ldif_values(&found, "homeDirectory"), vec![format!("/home/{login}")]);

    // ldapmodify: replace mail, add to a group; visible at once.
    let f = ldif_file(&format!(
        "dn: {dn}\nchangetype: modify\nreplace: mail\nmail: {login}@changed.example\n\n\
         dn: {group}\nchangetype: modify\nadd: member\nmember: {dn}\n"
    ));
    let o = run("ldapmodify", &t.args(ADMIN_DN, "demo-admin", &["-f", f.path().to_str().expect("path")]))
        .await
        .expect("ldapmodify installed");
    assert_eq!(code(&o), 0, "{}: ldapmodify: {}", t.name, out(&o));
    let found = tool_search(t, &format!("(uid={login})"), &["mail", "memberOf"]).await;
    assert_eq!(ldif_values(&found, "mail"), vec![format!("{login}@changed.example")], "{found}");
    assert!(ldif_values(&found, "memberOf").iter().any(|g| norm_dn(g) == norm_dn(group)), "{found}");

    // ldappasswd as the user, with the old password.
    let o = run("ldappasswd", &t.args(&dn, "First-Pass-1", &["-a", "First-Pass-1", "-s", "Second-Pass-2"]))
        .await
        .expect("ldappasswd installed");
    assert_eq!(code(&o), 0, "{}: ldappasswd as the user: {}", t.name, out(&o));
    assert_eq!(whoami_rc(t, &dn, "First-Pass-1").await.0, 49, "{}: old password refused", t.name);
    assert_eq!(whoami_rc(t, &dn, "Second-Pass-2").await.0, 0, "{}: new password accepted", t.name);
    // ldappasswd by the admin, without the old one.
    let o = run("ldappasswd", &t.args(ADMIN_DN, "demo-admin", &["-s", "Third-Pass-3", &dn]))
        .await
        .expect("ldappasswd installed");
    assert_eq!(code(&o), 0, "{}: ldappasswd by the admin: {}", t.name, out(&o));
    assert_eq!(whoami_rc(t, &dn, "Second-Pass-2").await.0, 49, "{}", t.name);
    assert_eq!(whoami_rc(t, &dn, "Third-Pass-3").await.0, 0, "{}", t.name);
    // Without -s: a generated password, printed, that works.
    let o = run("ldappasswd", &t.args(ADMIN_DN, "demo-admin", &[&dn])).await.expect("ldappasswd installed");
    assert_eq!(code(&o), 0, "{}: ldappasswd generating: {}", t.name, out(&o));
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let generated = stdout.lines().find_map(|l| l.strip_prefix("New password: ")).expect("generated password shown");
    assert_eq!(whoami_rc(t, &dn, generated.trim()).await.0, 0, "{}: generated password works", t.name);

    // ldapmodrdn.
    let o = run("ldapmodrdn", &t.args(ADMIN_DN, "demo-admin", &["-r", &dn, &format!("uid={renamed_login}")]))
        .await
        .expect("ldapmodrdn installed");
    assert_eq!(code(&o), 0, "{}: ldapmodrdn: {}", t.name, out(&o));
    assert!(tool_search(t, &format!("(uid={login})"), &["uid"]).await.trim().is_empty(), "{}: old name gone", t.name);
    let found = tool_search(t, &format!("(uid={renamed_login})"), &["memberOf"]).await;
    assert_eq!(ldif_values(&found, "dn").iter().map(|d| norm_dn(d)).collect::<Vec<_>>(), vec![norm_dn(&renamed)]);
    assert!(ldif_values(&found, "memberOf").iter().any(|g| norm_dn(g) == norm_dn(group)), "memberships follow");

    // ldapdelete.
    let o = run("ldapdelete", &t.args(ADMIN_DN, "demo-admin", &[&renamed])).await.expect("ldapdelete installed");
    assert_eq!(code(&o), 0, "{}: ldapdelete: {}", t.name, out(&o));
    assert!(tool_search(t, &format!("(uid={renamed_login})"), &["uid"]).await.trim().is_empty());
    let members = tool_search(t, "(cn=staff)", &["member"]).await;
    assert!(!ldif_values(&members, "member").iter().any(|m| norm_dn(m) == norm_dn(&renamed)), "{members}");

    // The reader service account: 50 for every write.
    let f = ldif_file("dn: uid=readeradd,ou=people,dc=example,dc=com\nobjectClass: inetOrgPerson\ncn: R A\nsn: A\n");
    let alice = "uid=alice,ou=people,dc=example,dc=com";
    let m = ldif_file(&format!("dn: {alice}\nchangetype: modify\nreplace: mail\nmail: r@example.com\n"));
    for (tool, rest) in [
        ("ldapadd", vec!["-f", f.path().to_str().expect("path")]),
        ("ldapmodify", vec!["-f", m.path().to_str().expect("path")]),
        ("ldapmodrdn", vec![alice, "uid=alicia"]),
        ("ldapdelete", vec![alice]),
        ("ldappasswd", vec!["-s", "Reader-Set-1", alice]),
    ] {
        let o = run(tool, &t.args(READER_DN, "demo-reader", &rest)).await.expect("tool installed");
        if tool == "ldappasswd" {
            // ldappasswd exits with 1 and prints the result code.
            assert_ne!(code(&o), 0, "{}: {tool} as the reader: {}", t.name, out(&o));
            assert!(String::from_utf8_lossy(&o.stdout).contains("(50)"), "{}: {tool}: {}", t.name, out(&o));
        } else {
            assert_eq!(code(&o), 50, "{}: {tool} as the reader: {}", t.name, out(&o));
        }
    }
    let found = tool_search(t, "(uid=alice)", &["mail"]).await;
    assert_eq!(ldif_values(&found, "mail"), vec!["alice@example.com".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openldap_tools_write_over_clear_starttls_and_ldaps() {
    let demo = start_demo_full().await;
    for t in transports(&demo) {
        tool_lifecycle(&t).await;
    }
    demo.running.shutdown().await;
}

// ---- require_tls ------------------------------------------------------------------------------------

async fn connect_with(url: &str, starttls: bool) -> ldap3::Ldap {
    let settings =
        LdapConnSettings::new().set_conn_timeout(Duration::from_secs(5)).set_starttls(starttls).set_no_tls_verify(true);
    let (conn, ldap) = LdapConnAsync::with_settings(settings, url).await.expect("connect");
    ldap3::drive!(conn);
    ldap
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_tls_refuses_clear_text_credentials() {
    let demo = start_demo_with(|c| c.ldap.require_tls = true).await;
    let ldaps = format!("ldaps://{}", demo.running.ldaps_addr.expect("ldaps"));

    // Clear text: a password bind is refused, and so is a search of the tree.
    let mut l = connect(&demo.url).await;
    let r = try_bind(&mut l, READER_DN, "demo-reader").await;
    assert_eq!(r.rc, 13, "{r}");
    let (e, r) = search(&mut l, BASE, Scope::Subtree, "(uid=alice)", &["uid"]).await;
    assert_eq!(r.rc, 13, "{r}");
    assert!(e.is_empty());
    // ... but an anonymous bind and the Root DSE are allowed, and advertise StartTLS.
    let r = try_bind(&mut l, "", "").await;
    assert_eq!(r.rc, 0, "{r}");
    let dse = search_ok(&mut l, "", Scope::Base, "(objectClass=*)", &["supportedExtension"]).await;
    assert!(attr(&dse[0], "supportedExtension").iter().any(|x| x == STARTTLS_OID));
    let r = l
        .with_timeout(WAIT)
        .modify(
            "uid=alice,ou=people,dc=example,dc=com",
            vec![ldap3::Mod::Replace("mail", std::collections::HashSet::from(["x@y.z"]))],
        )
        .await
        .expect("answered");
    assert_eq!(r.rc, 13, "a write in clear text: {r}");
    let _ = l.unbind().await;

    // After StartTLS and over LDAPS, everything works.
    for (how, url, starttls) in [("starttls", demo.url.as_str(), true), ("ldaps", ldaps.as_str(), false)] {
        let mut l = connect_with(url, starttls).await;
        let r = try_bind(&mut l, READER_DN, "demo-reader").await;
        assert_eq!(r.rc, 0, "{how}: {r}");
        let e = search_ok(&mut l, BASE, Scope::Subtree, "(uid=alice)", &["mail"]).await;
        assert_eq!(first(&e[0], "mail"), "alice@example.com", "{how}");
        let r = try_bind(&mut l, "uid=alice,ou=people,dc=example,dc=com", "alice-demo").await;
        assert_eq!(r.rc, 0, "{how}: user bind: {r}");
        let _ = l.unbind().await;
    }
    demo.running.shutdown().await;
}

// ---- StartTLS on the wire ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_with_pipelined_data_closes_the_connection() {
    let demo = start_demo_full().await;
    let starttls =
        LdapMsg::new(1, LdapOp::ExtendedRequest(LdapExtendedRequest { name: STARTTLS_OID.into(), value: None }));
    let bind = LdapMsg::new(
        2,
        LdapOp::BindRequest(LdapBindRequest {
            version: 3,
            dn: READER_DN.into(),
            cred: LdapBindCred::Simple("demo-reader".into()),
        }),
    );
    let mut buf = BytesMut::new();
    let mut codec = LdapCodec::default();
    codec.encode(starttls, &mut buf).expect("encode");
    codec.encode(bind, &mut buf).expect("encode");
    let mut sock = tokio::net::TcpStream::connect(demo.running.ldap_addr).await.expect("connect");
    sock.write_all(&buf).await.expect("one write with both requests");

    // Whatever comes back is at most the StartTLS answer, then the end of the stream: no bind
    // response, and no TLS handshake (a ServerHello would not decode as LDAP).
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, sock.read_to_end(&mut got)).await.expect("closed in time").ok();
    let mut frames = FramedRead::new(&got[..], LdapCodec::default());
    let mut msgs = Vec::new();
    while let Some(m) = frames.next().await {
        msgs.push(m.expect("only LDAP messages, no TLS records"));
    }
    assert!(msgs.len() <= 1, "{msgs:?}");
    for m in &msgs {
        assert_eq!(m.msgid, 1, "{m:?}");
        assert!(matches!(m.op, LdapOp::ExtendedResponse(_)), "{m:?}");
    }
    // The server is fine afterwards.
    assert_healthy(&demo.url, &demo.fixture()).await;
    demo.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_inside_tls_is_an_operations_error() {
    let demo = start_demo_full().await;
    let ldaps = format!("ldaps://{}", demo.running.ldaps_addr.expect("ldaps"));
    for (how, url, starttls) in [("starttls", demo.url.as_str(), true), ("ldaps", ldaps.as_str(), false)] {
        let mut l = connect_with(url, starttls).await;
        let r = l
            .with_timeout(WAIT)
            .extended(Exop { name: Some(STARTTLS_OID.into()), val: None })
            .await
            .expect("answered")
            .1;
        assert_eq!(r.rc, 1, "{how}: a second StartTLS: {r}");
        // The connection stays usable.
        let r = try_bind(&mut l, READER_DN, "demo-reader").await;
        assert_eq!(r.rc, 0, "{how}: {r}");
        let e = search_ok(&mut l, BASE, Scope::Subtree, "(uid=bob)", &["uid"]).await;
        assert_eq!(e.len(), 1, "{how}");
        let _ = l.unbind().await;
    }
    demo.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldaps_serves_reads_and_writes() {
    let demo = start_demo_full().await;
    let ldaps = format!("ldaps://{}", demo.running.ldaps_addr.expect("ldaps"));
    let mut l = connect_with(&ldaps, false).await;
    let r = try_bind(&mut l, ADMIN_DN, "demo-admin").await;
    assert_eq!(r.rc, 0, "{r}");
    let r = l
        .with_timeout(WAIT)
        .modify(
            "uid=bob,ou=people,dc=example,dc=com",
            vec![ldap3::Mod::Replace("title", std::collections::HashSet::from(["Over TLS"]))],
        )
        .await
        .expect("answered");
    assert_eq!(r.rc, 0, "{r}");
    let e = search_ok(&mut l, BASE, Scope::Subtree, "(uid=bob)", &["title"]).await;
    assert_eq!(first(&e[0], "title"), "Over TLS");
    // Plain LDAP on the LDAPS port does not get an LDAP answer.
    let mut raw = Raw::connect(demo.running.ldaps_addr.expect("ldaps")).await;
    let id = raw
        .send(
            LdapOp::BindRequest(LdapBindRequest {
                version: 3,
                dn: String::new(),
                cred: LdapBindCred::Simple(String::new()),
            }),
            vec![],
        )
        .await;
    assert!(raw.recv().await.is_none_or(|m| m.msgid != id), "no LDAP answer in clear text on the LDAPS port");
    demo.running.shutdown().await;
}
