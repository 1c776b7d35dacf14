//! Hostile and malformed input on the LDAP port. After every case a fresh client must still be
//! able to bind and search.

mod common;

use std::time::Duration;

use common::*;
use ldap3::Scope;
use ldap3_proto::proto::{
    LdapBindCred, LdapBindRequest, LdapBindResponse, LdapExtendedRequest, LdapFilter, LdapMsg, LdapOp, LdapResult,
    LdapResultCode, LdapSearchScope,
};

// ---- a tiny BER writer, for messages the codec cannot produce ----------------------------------

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes: Vec<u8> = n.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

fn int(v: i64) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let mut start = 0;
    while start < 7
        && ((bytes[start] == 0 && bytes[start + 1] & 0x80 == 0)
            || (bytes[start] == 0xff && bytes[start + 1] & 0x80 != 0))
    {
        start += 1;
    }
    tlv(0x02, &bytes[start..])
}

fn octets(v: &[u8]) -> Vec<u8> {
    tlv(0x04, v)
}

/// A subtree search whose filter is `(attr=value)` with raw value bytes.
fn raw_search(msgid: i64, base: &str, attr: &str, value: &[u8]) -> Vec<u8> {
    let filter = tlv(0xa3, &[octets(attr.as_bytes()), octets(value)].concat());
    let body = [
        octets(base.as_bytes()),
        tlv(0x0a, &[2]),
        tlv(0x0a, &[0]),
        int(0),
        int(0),
        tlv(0x01, &[0]),
        filter,
        tlv(0x30, &[]),
    ]
    .concat();
    tlv(0x30, &[int(msgid), tlv(0x63, &body)].concat())
}

/// The next message must be a Notice of Disconnection, then the server closes.
async fn expect_notice_then_close(raw: &mut Raw, what: &str) -> LdapResult {
    let m = raw.recv().await.unwrap_or_else(|| panic!("{what}: connection closed without a Notice of Disconnection"));
    assert_eq!(m.msgid, 0, "{what}: notice has message id 0: {m:?}");
    let LdapOp::ExtendedResponse(x) = m.op else { panic!("{what}: expected a notice, got {m:?}") };
    assert_eq!(x.name.as_deref(), Some(NOTICE_OID), "{what}: notice OID");
    assert_ne!(x.res.code, LdapResultCode::Success, "{what}: notice carries an error code");
    assert!(!x.res.message.is_empty(), "{what}: notice explains itself");
    assert!(raw.recv().await.is_none(), "{what}: the server closes after the notice");
    x.res
}

async fn bound_raw(demo: &Demo, fx: &DirFixture) -> Raw {
    let mut raw = Raw::connect(demo.running.ldap_addr).await;
    assert_eq!(raw.bind(&fx.service_dn, &fx.service_password).await.code, LdapResultCode::Success);
    raw
}

async fn whoami_ok(raw: &mut Raw) {
    let id = raw
        .send(
            LdapOp::ExtendedRequest(LdapExtendedRequest { name: "1.3.6.1.4.1.4203.1.11.3".into(), value: None }),
            vec![],
        )
        .await;
    let m = raw.recv_some().await;
    assert_eq!(m.msgid, id);
    match m.op {
        LdapOp::ExtendedResponse(x) => assert_eq!(x.res.code, LdapResultCode::Success),
        other => panic!("expected a WhoAmI response, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_gets_a_notice_and_the_server_survives() {
    let demo = start_demo_full().await;
    let fx = demo.fixture();

    // Plain garbage (an HTTP request on the LDAP port).
    let mut raw = Raw::connect(demo.running.ldap_addr).await;
    raw.write_bytes(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    let r = expect_notice_then_close(&mut raw, "garbage").await;
    assert_eq!(r.code, LdapResultCode::ProtocolError);
    assert_healthy(&demo.url, &fx).await;

    // Bytes that start like a SEQUENCE but are not an LDAPMessage.
    for junk in [&[0x00u8, 0x00, 0x00, 0x00][..], &[0x30, 0x03, 0x04, 0x01, 0x41][..], &[0x30, 0x80, 0x00, 0x00][..]] {
        let mut raw = Raw::connect(demo.running.ldap_addr).await;
        raw.write_bytes(junk).await;
        expect_notice_then_close(&mut raw, &format!("junk {junk:02x?}")).await;
        assert_healthy(&demo.url, &fx).await;
    }

    // Garbage after a valid exchange on a bound connection.
    let mut raw = bound_raw(&demo, &fx).await;
    raw.write_bytes(&[0x30, 0x03, 0x02, 0x01]).await; // truncated, then nonsense
    raw.write_bytes(&[0xff, 0xff, 0xff, 0xff, 0x00, 0x00]).await;
    expect_notice_then_close(&mut raw, "garbage after bind").await;
    assert_healthy(&demo.url, &fx).await;

    // An operation tag that does not exist ([APPLICATION 26]).
    let mut raw = Raw::connect(demo.running.ldap_addr).await;
    raw.write_bytes(&tlv(0x30, &[int(1), tlv(0x7a, &octets(b"what"))].concat())).await;
    expect_notice_then_close(&mut raw, "unknown op tag").await;
    assert_healthy(&demo.url, &fx).await;

    // A non-UTF-8 assertion value.
    let mut raw = bound_raw(&demo, &fx).await;
    raw.write_bytes(&raw_search(2, &fx.users_base, "uid", &[0xff, 0xfe, 0x80])).await;
    expect_notice_then_close(&mut raw, "non-UTF-8 assertion value").await;
    assert_healthy(&demo.url, &fx).await;

    // A response-only message sent by the client.
    let mut raw = Raw::connect(demo.running.ldap_addr).await;
    raw.send(
        LdapOp::BindResponse(LdapBindResponse {
            res: LdapResult {
                code: LdapResultCode::Success,
                matcheddn: String::new(),
                message: String::new(),
                referral: vec![],
            },
            saslcreds: None,
        }),
        vec![],
    )
    .await;
    expect_notice_then_close(&mut raw, "response from a client").await;
    assert_healthy(&demo.url, &fx).await;

    // Disconnecting in the middle of a message.
    let mut raw = Raw::connect(demo.running.ldap_addr).await;
    let msg = raw_search(1, &fx.users_base, "uid", b"alice");
    raw.write_bytes(&msg[..msg.len() / 2]).await;
    drop(raw);
    assert_healthy(&demo.url, &fx).await;
    demo.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_message_is_refused() {
    let limit = 64 * 1024;
    let demo = start_demo_with(|c| c.ldap.max_message_bytes = limit).await;
    let fx = demo.fixture();

    // Just under the limit is fine.
    let mut raw = bound_raw(&demo, &fx).await;
    let (entries, done, _) = raw
        .search(
            search_req(
                &fx.users_base,
                LdapSearchScope::Subtree,
                &format!("(|(uid={})(description={}))", fx.user_login, "x".repeat(limit - 512)),
                &["uid"],
            ),
            vec![],
        )
        .await;
    assert_eq!(done.code, LdapResultCode::Success);
    assert_eq!(entries.len(), 1);

    // Over the limit: a notice, then the connection is closed.
    let mut req = search_req(&fx.users_base, LdapSearchScope::Subtree, "(uid=alice)", &["uid"]);
    req.filter = LdapFilter::Equality("description".into(), "y".repeat(100 * 1024));
    raw.send(LdapOp::SearchRequest(req), vec![]).await;
    let r = expect_notice_then_close(&mut raw, "oversized message").await;
    assert_eq!(r.code, LdapResultCode::ProtocolError);
    assert_healthy(&demo.url, &fx).await;
    demo.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_filters_wide_filters_and_old_versions() {
    let demo = start_demo_full().await;
    let fx = demo.fixture();

    // A filter nested 100 deep: unwillingToPerform with a message; the connection stays.
    let mut raw = bound_raw(&demo, &fx).await;
    let mut filter = eq("uid", &fx.user_login);
    for i in 0..100 {
        filter = if i % 2 == 0 { LdapFilter::And(vec![filter]) } else { LdapFilter::Or(vec![filter]) };
    }
    let mut req = search_req(&fx.users_base, LdapSearchScope::Subtree, "(uid=x)", &["uid"]);
    req.filter = filter;
    let (entries, done, _) = raw.search(req, vec![]).await;
    assert_eq!(done.code, LdapResultCode::UnwillingToPerform, "{}", done.message);
    assert!(done.message.contains("max_filter_depth"), "the message names the limit: {:?}", done.message);
    assert!(entries.is_empty());
    whoami_ok(&mut raw).await;
    // 60 deep is within the limit and matches.
    let mut filter = eq("uid", &fx.user_login);
    for _ in 0..60 {
        filter = LdapFilter::And(vec![filter]);
    }
    let mut req = search_req(&fx.users_base, LdapSearchScope::Subtree, "(uid=x)", &["uid"]);
    req.filter = filter;
    let (entries, done, _) = raw.search(req, vec![]).await;
    assert_eq!((done.code, entries.len()), (LdapResultCode::Success, 1));
    assert_healthy(&demo.url, &fx).await;

    // A 10 000-term OR of (uid=…) terms.
    let mut ldap = bind_service(&demo.url, &fx).await;
    let all = search_ok(&mut ldap, &fx.users_base, Scope::Subtree, "(objectClass=inetOrgPerson)", &["uid"]).await;
    let logins: std::collections::BTreeSet<String> = all.iter().map(|e| first(e, "uid")).collect();
    let n = logins.len();
    let mut terms: Vec<String> = (0..10_000 - n).map(|i| format!("(uid=nobody{i})")).collect();
    // the real logins are spread through the list
    for (k, l) in logins.iter().enumerate() {
        terms.insert(k * (10_000 / n), format!("(uid={l})"));
    }
    let f = format!("(|{})", terms.concat());
    assert_eq!(f.matches("(uid=").count(), 10_000);
    let found = search_ok(&mut ldap, &fx.users_base, Scope::Subtree, &f, &["uid"]).await;
    let got: std::collections::BTreeSet<String> = found.iter().map(|e| first(e, "uid")).collect();
    assert_eq!(found.len(), logins.len());
    assert_eq!(got, logins, "the wide OR finds exactly the real users");
    assert_healthy(&demo.url, &fx).await;

    // Protocol version 2: protocolError on the bind, connection usable afterwards.
    let mut raw = Raw::connect(demo.running.ldap_addr).await;
    let id = raw
        .send(
            LdapOp::BindRequest(LdapBindRequest {
                version: 2,
                dn: fx.service_dn.clone(),
                cred: LdapBindCred::Simple(fx.service_password.clone()),
            }),
            vec![],
        )
        .await;
    let m: LdapMsg = raw.recv_some().await;
    assert_eq!(m.msgid, id);
    match m.op {
        LdapOp::BindResponse(b) => {
            assert_eq!(b.res.code, LdapResultCode::ProtocolError);
            assert!(b.res.message.contains('3'), "the message says which version to use: {:?}", b.res.message);
        }
        other => panic!("expected a bind response, got {other:?}"),
    }
    assert_eq!(raw.bind(&fx.service_dn, &fx.service_password).await.code, LdapResultCode::Success);
    whoami_ok(&mut raw).await;
    assert_healthy(&demo.url, &fx).await;
    demo.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_connections() {
    let demo = start_demo_full().await;
    let fx = demo.fixture();

    // 200 idle connections held open...
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(Raw::connect(demo.running.ldap_addr).await);
    }
    // ...while 64 clients bind and search at the same time.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..64 {
        let url = demo.url.clone();
        let fx = fx.clone();
        tasks.spawn(async move {
            let mut ldap = if i % 2 == 0 {
                bind_service(&url, &fx).await
            } else {
                bind(&url, &fx.user_dn, &fx.user_password).await
            };
            let e = search_ok(
                &mut ldap,
                &fx.users_base,
                Scope::Subtree,
                &format!("(uid={})", fx.user_login),
                &["uid", "mail"],
            )
            .await;
            assert_eq!(e.len(), 1);
            assert_eq!(first(&e[0], "mail"), fx.user_mail);
            let _ = ldap.unbind().await;
        });
    }
    let all = tokio::time::timeout(Duration::from_secs(120), async {
        let mut n = 0;
        while let Some(r) = tasks.join_next().await {
            r.expect("client task");
            n += 1;
        }
        n
    })
    .await
    .expect("clients finish in time");
    assert_eq!(all, 64);
    // The idle connections still answer.
    for raw in idle.iter_mut().step_by(40) {
        whoami_ok(raw).await;
    }
    assert_healthy(&demo.url, &fx).await;
    drop(idle);
    assert_healthy(&demo.url, &fx).await;
    demo.running.shutdown().await;
}
