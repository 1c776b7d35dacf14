//! Searches cannot starve the server: costly filters run off the request workers under the
//! costly-search limits and stop at their time limit, paged-search state is bounded, and a
//! shutdown keeps its bound while such searches run. Every test runs the real server against a
//! directory of about 1 200 users.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::scim::Scim;
use common::*;
use idgate::config::{BackendConfig, Config, MemoryConfig};
use ldap3_proto::LdapCodec;
use ldap3_proto::control::LdapControl;
use ldap3_proto::proto::{
    LdapDerefAliases, LdapFilter, LdapMsg, LdapOp, LdapResultCode as Code, LdapSearchRequest, LdapSearchScope,
    LdapSubstringFilter,
};
use tokio_util::bytes::BytesMut;
use tokio_util::codec::Encoder;

const EXTRA_USERS: usize = 1137;
const READER_DN: &str = "cn=reader,ou=services,dc=example,dc=com";
const READER_PW: &str = "demo-reader";

/// The demo directory plus `EXTRA_USERS` users (`user00000`…, mail `user00000@example.com`),
/// written as a seed file in `dir`.
fn big_seed(dir: &Path) -> PathBuf {
    let demo = std::fs::read_to_string(demo_config_path().with_file_name("demo-directory.json")).expect("demo seed");
    let mut seed: serde_json::Value = serde_json::from_str(&demo).expect("demo seed is JSON");
    let users = seed["users"].as_array_mut().expect("users");
    for i in 0..EXTRA_USERS {
        users.push(serde_json::json!({
            "login": format!("user{i:05}"), "firstname": "User", "lastname": format!("N{i}"),
            "email": format!("user{i:05}@example.com"),
        }));
    }
    let path = dir.join("seed.json");
    std::fs::write(&path, serde_json::to_vec(&seed).expect("seed")).expect("write seed");
    path
}

async fn start_big(dir: &Path, edit: impl FnOnce(&mut Config)) -> Demo {
    let seed = big_seed(dir);
    start_demo_with(|c| {
        c.backend = BackendConfig::Memory(MemoryConfig { seed: Some(seed) });
        edit(c);
    })
    .await
}

/// About a megabyte of filter that really costs: every term walks each user's mail through eleven
/// components before its last one fails.
fn hostile_filter() -> LdapFilter {
    let any: Vec<String> = "example.com".chars().map(String::from).collect();
    LdapFilter::Or(
        (0..19_000)
            .map(|i| {
                LdapFilter::Substring(
                    "mail".into(),
                    LdapSubstringFilter { initial: None, any: any.clone(), final_: Some(format!("zz{i}")) },
                )
            })
            .collect(),
    )
}

fn request(base: &str, filter: LdapFilter, timelimit: i32) -> LdapSearchRequest {
    LdapSearchRequest {
        base: base.into(),
        scope: LdapSearchScope::Subtree,
        aliases: LdapDerefAliases::Never,
        sizelimit: 0,
        timelimit,
        typesonly: false,
        filter,
        attrs: vec!["uid".into()],
    }
}

/// The request encoded once, so that clients resending it cost the test nothing.
fn encode(msgid: i32, req: LdapSearchRequest, ctrl: Vec<LdapControl>) -> Vec<u8> {
    let mut buf = BytesMut::new();
    LdapCodec::default()
        .encode(LdapMsg::new_with_ctrls(msgid, LdapOp::SearchRequest(req), ctrl), &mut buf)
        .expect("encode");
    buf.to_vec()
}

/// Reads a search's answer: entries, then the final result and its controls.
async fn answer(raw: &mut Raw, msgid: i32) -> (usize, ldap3_proto::proto::LdapResult, Vec<LdapControl>) {
    let mut entries = 0;
    loop {
        let m = raw.recv_some().await;
        assert_eq!(m.msgid, msgid, "answer to another request: {m:?}");
        match m.op {
            LdapOp::SearchResultEntry(_) => entries += 1,
            LdapOp::SearchResultDone(r) => return (entries, r, m.ctrl),
            other => panic!("unexpected message in a search: {other:?}"),
        }
    }
}

async fn bound(addr: std::net::SocketAddr, dn: &str, pw: &str) -> Raw {
    let mut raw = Raw::connect(addr).await;
    let r = raw.bind(dn, pw).await;
    assert_eq!(r.code, Code::Success, "bind as {dn}: {r:?}");
    raw
}

fn p99(mut lat: Vec<Duration>) -> Duration {
    lat.sort();
    lat[(lat.len() * 99).div_ceil(100) - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_filters_do_not_stall_scim() {
    let dir = tempfile::tempdir().unwrap();
    let demo = start_big(dir.path(), |_| {}).await;
    let addr = demo.running.ldap_addr;
    let scim = Scim::new(demo.running.http_addr);
    scim.warm_up().await;
    let alice = scim.filter("Users", "userName eq \"alice\"").await;
    let alice_id = alice.body["Resources"][0]["id"].as_str().expect("alice over SCIM").to_string();

    // Eight clients, half bound as a plain user and half as the reader service account, each
    // sending a megabyte filter with a one-second time limit again and again.
    let bytes = std::sync::Arc::new(encode(2, request("dc=example,dc=com", hostile_filter(), 1), vec![]));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut hostile = Vec::new();
    for n in 0..8 {
        let (dn, pw) = if n % 2 == 0 { (user_dn("alice"), "alice-demo") } else { (READER_DN.into(), READER_PW) };
        let (bytes, stop) = (bytes.clone(), stop.clone());
        hostile.push(tokio::spawn(async move {
            let mut raw = bound(addr, &dn, pw).await;
            let mut answers = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = Instant::now();
                raw.write_bytes(&bytes).await;
                let (_, r, _) = answer(&mut raw, 2).await;
                answers.push((dn.clone(), r.code, r.message, t.elapsed()));
            }
            answers
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut lat = Vec::new();
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        let t = Instant::now();
        let r = scim.get(&format!("/Users/{alice_id}")).await;
        lat.push(t.elapsed());
        assert_eq!(r.status, 200, "{r}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut answers = Vec::new();
    for h in hostile {
        answers.extend(h.await.expect("hostile client"));
    }

    let n = lat.len();
    let (p99, max) = (p99(lat.clone()), lat.iter().max().copied().unwrap_or_default());
    println!("SCIM GET during hostile searches: {n} requests, p99 {p99:?}, max {max:?}");
    assert!(n >= 100, "only {n} SCIM requests in 6 s");
    assert!(p99 < Duration::from_millis(100), "SCIM GET p99 {p99:?} (max {max:?}) over {n} requests");

    assert!(answers.len() >= 8, "every hostile client got answers: {}", answers.len());
    let slowest = answers.iter().map(|a| a.3).max().unwrap_or_default();
    println!("{} hostile answers, slowest after {slowest:?}", answers.len());
    for (who, code, msg, took) in &answers {
        // The reader may read every user: its searches cost far beyond the time limit. Alice reads
        // a handful of entries, so hers may also finish within it.
        let ok = *code == Code::TimeLimitExceeded || (*code == Code::Success && who.starts_with("uid=alice"));
        assert!(ok, "hostile search as {who}: {code:?} {msg}");
        // One second of time limit, which counts from the message's arrival; large messages are
        // decoded one at a time (ldap.costly_searches), so a search may also wait for the other
        // seven megabytes to be decoded, slow in a debug build on a shared machine. Before, the
        // reader's searches ran for about a minute each.
        assert!(*took < Duration::from_secs(5), "hostile search as {who} answered after {took:?} ({code:?})");
    }
    assert!(
        answers.iter().any(|(who, c, _, _)| who == READER_DN && *c == Code::TimeLimitExceeded),
        "the reader's searches hit the time limit"
    );
    demo.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_time_limit_holds_for_costly_filters() {
    let dir = tempfile::tempdir().unwrap();
    let demo = start_big(dir.path(), |c| c.ldap.time_limit = Duration::from_secs(1)).await;
    let mut raw = bound(demo.running.ldap_addr, READER_DN, READER_PW).await;

    // The server's limit, then a client's shorter than the server's.
    for (timelimit, limit) in [(0, Duration::from_secs(1)), (1, Duration::from_secs(1))] {
        let t = Instant::now();
        raw.write_bytes(&encode(2, request("dc=example,dc=com", hostile_filter(), timelimit), vec![])).await;
        let (_, r, _) = answer(&mut raw, 2).await;
        let took = t.elapsed();
        assert_eq!(r.code, Code::TimeLimitExceeded, "{r:?}");
        // The limit runs from the request's arrival; sending and decoding a megabyte comes before.
        assert!(took < limit + Duration::from_millis(700), "answered after {took:?} for a {limit:?} limit");
    }

    // A 1.2 MB substring assertion used to be normalised again for every entry (about a minute
    // over this tree); it is normalised once, and no value is long enough to hold it.
    let big = LdapFilter::Substring(
        "cn".into(),
        LdapSubstringFilter { initial: None, any: vec!["a".repeat(1_200_000)], final_: None },
    );
    let t = Instant::now();
    raw.write_bytes(&encode(3, request("dc=example,dc=com", big, 0), vec![])).await;
    let (entries, r, _) = answer(&mut raw, 3).await;
    assert_eq!((r.code.clone(), entries), (Code::Success, 0), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(1), "took {:?}", t.elapsed());

    // The server stays responsive for everyone else.
    assert_healthy(&demo.url, &demo.fixture()).await;
    demo.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn costly_scim_lists_do_not_stall_scim_gets() {
    let dir = tempfile::tempdir().unwrap();
    let demo = start_big(dir.path(), |_| {}).await;
    let scim = Scim::new(demo.running.http_addr);
    scim.warm_up().await;
    let alice = scim.filter("Users", "userName eq \"alice\"").await;
    let alice_id = alice.body["Resources"][0]["id"].as_str().expect("alice over SCIM").to_string();

    // Close to the 8 KB filter limit: some 300 comparisons per user, over every user.
    let mut filter = String::from("userName sw \"user0000\"");
    let mut n = 0;
    while filter.len() < 8000 {
        filter.push_str(&format!(" or title co \"nothing{n}\""));
        n += 1;
    }
    let q: String = url::form_urlencoded::byte_serialize(filter.as_bytes()).collect();
    let path = format!("/Users?filter={q}&attributes=userName");
    let mut lists = Vec::new();
    for _ in 0..4 {
        let (client, path) = (Scim::new(demo.running.http_addr), path.clone());
        lists.push(tokio::spawn(async move {
            let mut totals = Vec::new();
            for _ in 0..3 {
                let t = Instant::now();
                let r = client.get(&path).await;
                assert_eq!(r.status, 200, "{r}");
                totals.push((r.total(), t.elapsed()));
            }
            totals
        }));
    }
    let mut lat = Vec::new();
    while lists.iter().any(|l| !l.is_finished()) {
        let t = Instant::now();
        let r = scim.get(&format!("/Users/{alice_id}")).await;
        lat.push(t.elapsed());
        assert_eq!(r.status, 200, "{r}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut slowest = Duration::ZERO;
    for l in lists {
        for (total, took) in l.await.expect("list client") {
            assert_eq!(total, 10, "user00000 to user00009 match");
            slowest = slowest.max(took);
        }
    }
    let (n, p99) = (lat.len(), p99(lat));
    println!("SCIM GET during costly SCIM lists: {n} requests, p99 {p99:?}; slowest list {slowest:?}");
    assert!(n >= 20, "only {n} SCIM GETs while the lists ran");
    assert!(p99 < Duration::from_millis(100), "SCIM GET p99 {p99:?} over {n} requests");
    demo.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_gives_its_turn_back() {
    let dir = tempfile::tempdir().unwrap();
    let demo = start_big(dir.path(), |_| {}).await;
    let addr = demo.running.ldap_addr;

    // The reader takes the only costly-search turn with a search that could run for a minute,
    // then hangs up.
    let mut reader = bound(addr, READER_DN, READER_PW).await;
    reader.write_bytes(&encode(2, request("dc=example,dc=com", hostile_filter(), 0), vec![])).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    reader.drop_socket();

    // Alice's costly search (a large assertion, cheap once compiled) gets the turn at once rather
    // than after the minute.
    let mut alice = bound(addr, &user_dn("alice"), "alice-demo").await;
    let big = LdapFilter::And(vec![
        eq("uid", "alice"),
        LdapFilter::Not(Box::new(eq("description", &"x".repeat(512 * 1024)))),
    ]);
    let t = Instant::now();
    alice.write_bytes(&encode(3, request("dc=example,dc=com", big, 10), vec![])).await;
    let (entries, r, _) = answer(&mut alice, 3).await;
    println!("alice's costly search answered after {:?}", t.elapsed());
    assert_eq!((r.code.clone(), entries), (Code::Success, 1), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(5), "waited {:?} for a turn", t.elapsed());
    demo.running.shutdown().await;
}

/// A paged search of `filter` with page size 1; the cookie, or the refusal.
async fn open_paged(raw: &mut Raw, msgid: i32, filter: LdapFilter) -> Result<Vec<u8>, ldap3_proto::proto::LdapResult> {
    let ctrl = vec![LdapControl::SimplePagedResults { size: 1, cookie: Vec::new() }];
    raw.write_bytes(&encode(msgid, request(PEOPLE, filter, 0), ctrl)).await;
    let (entries, r, ctrl) = answer(raw, msgid).await;
    if r.code != Code::Success {
        assert_eq!(entries, 0, "a refused paged search sends no entries");
        return Err(r);
    }
    assert_eq!(entries, 1);
    match ctrl.into_iter().next() {
        Some(LdapControl::SimplePagedResults { cookie, .. }) if !cookie.is_empty() => Ok(cookie),
        other => panic!("expected a cookie, got {other:?}"),
    }
}

/// The paged-state gauge from `/metrics`.
async fn paged_state_gauge(http: std::net::SocketAddr) -> f64 {
    let text = reqwest::get(format!("http://{http}/metrics")).await.expect("metrics").text().await.expect("body");
    text.lines()
        .find_map(|l| l.strip_prefix("idgate_ldap_paged_state_bytes "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no paged-state gauge in /metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paged_state_is_bounded_and_refusals_are_clear() {
    const BUDGET: usize = 64 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let demo = start_big(dir.path(), |c| c.ldap.max_paged_state_bytes = BUDGET).await;
    let addr = demo.running.ldap_addr;
    // 110 users (user00000 to user00109), and 256 KB of filter that the state must not keep.
    let filter = |n: usize| {
        LdapFilter::And(vec![
            eq("objectClass", "inetOrgPerson"),
            LdapFilter::Or(vec![
                LdapFilter::Substring(
                    "uid".into(),
                    LdapSubstringFilter { initial: Some("user000".into()), any: vec![], final_: None },
                ),
                LdapFilter::Substring(
                    "uid".into(),
                    LdapSubstringFilter { initial: Some("user0010".into()), any: vec![], final_: None },
                ),
            ]),
            LdapFilter::Not(Box::new(eq("description", &format!("{n}{}", "x".repeat(256 * 1024))))),
        ])
    };

    // One connection keeps sixteen (ldap.max_paged_searches) open, each with its own big filter.
    let mut first = bound(addr, READER_DN, READER_PW).await;
    let mut cookies = Vec::new();
    for n in 0..16 {
        cookies.push(open_paged(&mut first, 10 + n as i32, filter(n)).await.expect("within the budget"));
    }
    let held = paged_state_gauge(demo.running.http_addr).await;
    println!("16 paged searches with 256 KB filters hold {held} bytes");
    assert!(held > 0.0 && held <= (16 * 4096) as f64, "paged state {held} bytes for 16 searches");
    // Each continues: the state is the search's, the filter is only a hash.
    for (n, cookie) in cookies.iter_mut().enumerate() {
        let ctrl = vec![LdapControl::SimplePagedResults { size: 1, cookie: cookie.clone() }];
        first.write_bytes(&encode(40 + n as i32, request(PEOPLE, filter(n), 0), ctrl)).await;
        let (entries, r, ctrl) = answer(&mut first, 40 + n as i32).await;
        assert_eq!((r.code.clone(), entries), (Code::Success, 1), "page 2 of search {n}: {r:?}");
        let Some(LdapControl::SimplePagedResults { cookie: next, .. }) = ctrl.into_iter().next() else { panic!() };
        *cookie = next;
    }
    // A continuation must repeat its search.
    let ctrl = vec![LdapControl::SimplePagedResults { size: 1, cookie: cookies[0].clone() }];
    first.write_bytes(&encode(60, request(PEOPLE, filter(99), 0), ctrl)).await;
    let (_, r, _) = answer(&mut first, 60).await;
    assert_eq!(r.code, Code::UnwillingToPerform, "{r:?}");

    // Other connections fill the server-wide budget; the next paged search is refused clearly.
    let mut others = Vec::new();
    let refusal = 'fill: {
        for c in 0..40 {
            let mut raw = bound(addr, READER_DN, READER_PW).await;
            for n in 0..16 {
                if let Err(r) = open_paged(&mut raw, 100 + n, filter(n as usize)).await {
                    others.push(raw);
                    break 'fill (c, r);
                }
            }
            others.push(raw);
        }
        panic!("no refusal within 40 connections × 16 paged searches under a {BUDGET}-byte budget");
    };
    let (connections, r) = refusal;
    println!("refused after {connections} more connections: {}", r.message);
    assert_eq!(r.code, Code::AdminLimitExceeded, "{r:?}");
    assert!(r.message.contains("ldap.max_paged_state_bytes"), "{}", r.message);
    assert!(paged_state_gauge(demo.running.http_addr).await <= BUDGET as f64);
    // Paged searches already open continue when the budget is full.
    let ctrl = vec![LdapControl::SimplePagedResults { size: 1, cookie: cookies[1].clone() }];
    first.write_bytes(&encode(61, request(PEOPLE, filter(1), 0), ctrl)).await;
    let (entries, r, _) = answer(&mut first, 61).await;
    assert_eq!((r.code.clone(), entries), (Code::Success, 1), "an open paged search continues: {r:?}");
    // A search that needs no state (it fits in one page) is still answered.
    let mut probe = bound(addr, READER_DN, READER_PW).await;
    let ctrl = vec![LdapControl::SimplePagedResults { size: 500, cookie: Vec::new() }];
    probe.write_bytes(&encode(5, request(PEOPLE, filter(1), 0), ctrl)).await;
    let (entries, r, _) = answer(&mut probe, 5).await;
    assert_eq!((r.code.clone(), entries), (Code::Success, 110), "{r:?}");

    // Closing connections gives their state back.
    drop(others);
    drop(first);
    let deadline = Instant::now() + WAIT;
    loop {
        match open_paged(&mut probe, 6, filter(2)).await {
            Ok(_) => break,
            Err(r) => assert!(Instant::now() < deadline, "state never released: {r:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    demo.running.shutdown().await;
}

/// Kills the child if a test fails before it exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_hostile_searches_exits_within_the_shutdown_bound() {
    let dir = tempfile::tempdir().unwrap();
    let seed = big_seed(dir.path()).to_string_lossy().into_owned();
    let gw = common::process::Gateway::start_with(common::process::Options {
        edit: Some(Box::new(move |doc| {
            doc.insert("shutdown_timeout".into(), "2s".into());
            common::process::table(doc, "backend").insert("seed".into(), seed.into());
        })),
        ..Default::default()
    });
    let addr = gw.ldap_addr;

    // Searches that would run for a minute each (the default time limit): one evaluating, the
    // others waiting for their turn.
    let bytes = encode(2, request("dc=example,dc=com", hostile_filter(), 0), vec![]);
    let mut clients = Vec::new();
    for _ in 0..4 {
        let mut raw = bound(addr, READER_DN, READER_PW).await;
        raw.write_bytes(&bytes).await;
        clients.push(raw);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    let stopped = tokio::task::spawn_blocking(move || gw.stop(WAIT)).await.unwrap();
    println!("exited {:?} after SIGTERM with {}", stopped.took, stopped.status);
    assert!(stopped.status.success(), "{}", stopped.status);
    assert!(stopped.took < Duration::from_millis(3500), "shutdown took {:?} for a 2 s bound", stopped.took);
    drop(clients);
}
