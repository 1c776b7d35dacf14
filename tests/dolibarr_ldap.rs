//! idgate in front of the Dolibarr simulator, seen through a real LDAP client: changes made in the
//! ERP appear after a refresh, and an ERP outage degrades exactly as documented (cached reads and
//! cached binds keep working, other binds answer unavailable, never invalidCredentials).

mod common;
mod support;

use std::time::Duration;

use common::{DirFixture, TouchFn, replays};
use idgate::app::Running;
use idgate::config::Config;
use ldap3::{LdapConnAsync, Scope, SearchEntry};
use support::dolibarr_sim::{DolibarrSim, JDOE_PASSWORD, NORIGHTS_PASSWORD, READER_PASSWORD, Version};

const BASE: &str = "dc=example,dc=com";
const SVC: &str = "cn=reader,ou=services,dc=example,dc=com";

async fn start(sim: &DolibarrSim, cache: &str) -> Running {
    let text = format!(
        r#"
        [ldap]
        listen = "127.0.0.1:0"
        [[ldap.service_accounts]]
        name = "reader"
        password = "svc-pw"
        access = "read"
        [http]
        listen = "127.0.0.1:0"
        [cache]
        {cache}
        [backend]
        kind = "dolibarr"
        url = "{}"
        api_key = "{}"
        timeout = "2s"
        retries = 0
        "#,
        sim.url(),
        sim.admin_key()
    );
    let cfg = Config::parse(&text).expect("config");
    idgate::app::start(cfg).await.expect("server starts")
}

async fn conn(r: &Running) -> ldap3::Ldap {
    let (c, ldap) = LdapConnAsync::new(&format!("ldap://{}", r.ldap_addr)).await.expect("connect");
    ldap3::drive!(c);
    ldap
}

async fn bind_rc(r: &Running, dn: &str, pw: &str) -> u32 {
    let mut l = conn(r).await;
    l.simple_bind(dn, pw).await.expect("bind round trip").rc
}

async fn find(r: &Running, filter: &str) -> (u32, Vec<SearchEntry>) {
    let mut l = conn(r).await;
    l.simple_bind(SVC, "svc-pw").await.unwrap().success().unwrap();
    let res = l.search(BASE, Scope::Subtree, filter, vec!["*", "+"]).await.expect("search round trip");
    (res.1.rc, res.0.into_iter().map(SearchEntry::construct).collect())
}

fn first(e: &SearchEntry, attr: &str) -> Option<String> {
    e.attrs.get(attr).and_then(|v| v.first()).cloned()
}

#[tokio::test]
async fn dolibarr_erp_changes_appear_after_the_next_refresh() {
    let sim = DolibarrSim::start(Version::V22).await;
    let r = start(&sim, "refresh_interval = \"1h\"\nfull_refresh_interval = \"1h\"").await;

    let (rc, found) = find(&r, "(uid=jdoe)").await;
    assert_eq!(rc, 0);
    assert_eq!(found.len(), 1);
    let groups = &found[0].attrs["memberOf"];
    assert!(groups.iter().any(|g| g.eq_ignore_ascii_case("cn=developers,ou=groups,dc=example,dc=com")), "{groups:?}");

    // created in the ERP
    let id = sim.add_user("newbie", "New", "Bie", "newbie@example.com", Some("Newbie-Secret-1"));
    assert!(find(&r, "(uid=newbie)").await.1.is_empty(), "not visible before a refresh");
    r.directory.refresh_incremental().await.expect("refresh");
    let (_, found) = find(&r, "(uid=newbie)").await;
    assert_eq!(found.len(), 1);
    assert_eq!(first(&found[0], "mail").as_deref(), Some("newbie@example.com"));
    assert_eq!(bind_rc(&r, "uid=newbie,ou=people,dc=example,dc=com", "Newbie-Secret-1").await, 0);

    // changed in the ERP
    sim.set_user_field(id, "email", serde_json::json!("renamed@example.com"));
    r.directory.refresh_incremental().await.expect("refresh");
    let (_, found) = find(&r, "(mail=renamed@example.com)").await;
    assert_eq!(found.len(), 1, "the mail index follows the change");

    // disabled in the ERP: still visible, locked, and binds fail
    sim.disable_user(id);
    r.directory.refresh_incremental().await.expect("refresh");
    let (_, found) = find(&r, "(uid=newbie)").await;
    assert!(first(&found[0], "pwdAccountLockedTime").is_some(), "{:?}", found[0].attrs);
    assert_eq!(bind_rc(&r, "uid=newbie,ou=people,dc=example,dc=com", "Newbie-Secret-1").await, 49);

    // deleted in the ERP: gone after the full refresh
    sim.delete_user(id);
    r.directory.refresh_full().await.expect("refresh");
    assert!(find(&r, "(uid=newbie)").await.1.is_empty());
    r.shutdown().await;
}

#[tokio::test]
async fn dolibarr_erp_outage_serves_cache_and_answers_unavailable() {
    let sim = DolibarrSim::start(Version::V22).await;
    let r = start(&sim, "refresh_interval = \"1h\"\nfull_refresh_interval = \"1h\"").await;
    let jdoe = "uid=jdoe,ou=people,dc=example,dc=com";
    let reader = "uid=reader,ou=people,dc=example,dc=com";
    assert_eq!(bind_rc(&r, jdoe, JDOE_PASSWORD).await, 0, "bind checked by the ERP, now cached");

    sim.stop();
    assert!(r.directory.refresh_full().await.is_err(), "the refresh fails while the ERP is down");
    let (rc, found) = find(&r, "(objectClass=inetOrgPerson)").await;
    assert_eq!(rc, 0, "cached searches still answer");
    assert!(found.len() >= 6, "{}", found.len());
    assert_eq!(bind_rc(&r, jdoe, JDOE_PASSWORD).await, 0, "bind cache answers");
    assert_eq!(bind_rc(&r, reader, READER_PASSWORD).await, 52, "uncached bind: unavailable, never 49");
    assert_eq!(bind_rc(&r, jdoe, "wrong-password").await, 52, "a password the cache cannot confirm needs the ERP");

    sim.restart().await;
    assert_eq!(bind_rc(&r, reader, READER_PASSWORD).await, 0, "recovers without a restart");
    assert_eq!(bind_rc(&r, jdoe, "wrong-password").await, 49);
    r.shutdown().await;
}

#[tokio::test]
async fn dolibarr_beyond_max_stale_reads_are_unavailable_not_stale() {
    let sim = DolibarrSim::start(Version::V22).await;
    let r = start(&sim, "refresh_interval = \"1s\"\nmax_stale = \"2s\"").await;
    assert_eq!(find(&r, "(uid=jdoe)").await.0, 0);
    sim.stop();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (rc, found) = find(&r, "(uid=jdoe)").await;
    assert_eq!(rc, 52, "older than max_stale: unavailable");
    assert!(found.is_empty());
    sim.restart().await;
    // the background refresher notices the recovery on its own
    let mut ok = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if find(&r, "(uid=jdoe)").await.0 == 0 {
            ok = true;
            break;
        }
    }
    assert!(ok, "reads recover after the ERP is back");
    r.shutdown().await;
}

#[tokio::test]
async fn dolibarr_concurrent_binds_of_an_unknown_login_make_one_erp_lookup() {
    let sim = DolibarrSim::start(Version::V22).await;
    let r = start(&sim, "refresh_interval = \"1h\"\nfull_refresh_interval = \"1h\"").await;
    // Created after the snapshot was loaded: the directory must ask the ERP for it.
    sim.add_user("latecomer", "Late", "Comer", "late@example.com", Some("Latecomer-Secret-1"));
    sim.set_delay(Duration::from_millis(200));
    sim.reset_counts();
    let dn = "uid=latecomer,ou=people,dc=example,dc=com";
    let binds: Vec<_> = (0..20)
        .map(|_| {
            let r = &r;
            async move { bind_rc(r, dn, "Latecomer-Secret-1").await }
        })
        .collect();
    let codes = futures_util::future::join_all(binds).await;
    assert!(codes.iter().all(|&c| c == 0), "{codes:?}");
    assert_eq!(sim.count("GET /users/login/{id}"), 1, "lookups coalesced");
    r.shutdown().await;
}

#[tokio::test]
async fn dolibarr_a_partial_refresh_never_replaces_the_snapshot() {
    let sim = DolibarrSim::start(Version::V22).await;
    let r = start(&sim, "refresh_interval = \"1h\"\nfull_refresh_interval = \"1h\"").await;
    let before = r.directory.health();
    assert!(before.groups >= 3, "{before:?}");
    sim.add_user("halfway", "Half", "Way", "half@example.com", None);
    // The user list succeeds, then one group read fails: the whole refresh must be dropped.
    sim.fail_route("GET /users/groups/{id}", 500);
    assert!(r.directory.refresh_full().await.is_err());
    let after = r.directory.health();
    assert_eq!(after.generation, before.generation, "snapshot kept");
    assert_eq!(after.groups, before.groups);
    assert!(find(&r, "(uid=halfway)").await.1.is_empty(), "nothing from the failed refresh leaked in");
    let (_, jdoe) = find(&r, "(uid=jdoe)").await;
    assert!(jdoe[0].attrs.contains_key("memberOf"), "memberships intact");
    assert!(after.last_error.is_some(), "the failure is reported in health");
    r.directory.refresh_full().await.expect("the next refresh succeeds");
    assert_eq!(find(&r, "(uid=halfway)").await.1.len(), 1);
    r.shutdown().await;
}

/// The seven application replays of the demo, this time with Dolibarr (simulated) behind idgate.
#[tokio::test]
async fn client_replays_against_dolibarr() {
    for version in [Version::V22, Version::V23] {
        let sim = std::sync::Arc::new(DolibarrSim::start(version).await);
        // A disabled account with a password, as an administrator would leave it in the ERP.
        let disabled = sim.user_id("borndisabled").expect("seeded");
        sim.set_password(disabled, Some("Borndisabled-Secret-1"));
        sim.disable_user(disabled);
        let r = start(&sim, "refresh_interval = \"1h\"\nfull_refresh_interval = \"1h\"").await;
        let url = format!("ldap://{}", r.ldap_addr);
        let users = r.directory.health().users;
        assert!(users >= 7, "{users}");
        let (sim2, dir) = (sim.clone(), r.directory.clone());
        let touch: TouchFn = std::sync::Arc::new(move |login: String| {
            let (sim, dir) = (sim2.clone(), dir.clone());
            Box::pin(async move {
                let id = sim.user_id(&login).expect("user exists");
                let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
                sim.set_user_field(id, "job", serde_json::json!(format!("changed at {stamp}")));
                dir.refresh_incremental().await.expect("incremental refresh");
            })
        });
        let fx = DirFixture {
            base_dn: BASE.into(),
            users_base: "ou=people,dc=example,dc=com".into(),
            groups_base: "ou=groups,dc=example,dc=com".into(),
            service_dn: SVC.into(),
            service_password: "svc-pw".into(),
            user_login: "jdoe".into(),
            user_password: JDOE_PASSWORD.into(),
            user_dn: "uid=jdoe,ou=people,dc=example,dc=com".into(),
            user_mail: "jdoe@example.com".into(),
            user_groups: vec!["developers".into(), "sales".into()],
            user_nested_groups: Vec::new(),
            primary_group: Some("users".into()),
            login_group: "developers".into(),
            admin_group: "sales".into(),
            outsider_login: "norights".into(),
            outsider_password: NORIGHTS_PASSWORD.into(),
            disabled_login: "borndisabled".into(),
            disabled_password: "Borndisabled-Secret-1".into(),
            user_count: users,
            touch: Some(touch),
        };
        replays::replay_nextcloud(&url, &fx).await;
        replays::replay_gitea(&url, &fx).await;
        replays::replay_grafana(&url, &fx).await;
        replays::replay_jenkins(&url, &fx).await;
        replays::replay_sssd(&url, &fx).await;
        replays::replay_keycloak(&url, &fx).await;
        replays::replay_foreman(&url, &fx).await;
        r.shutdown().await;
    }
}

/// A rejected API key is the gateway's configuration problem: `/readyz` says so, and binds answer
/// unavailable, never invalidCredentials.
#[tokio::test]
async fn dolibarr_a_rejected_api_key_is_a_configuration_problem() {
    let sim = DolibarrSim::start(Version::V22).await;
    let text = format!(
        "[ldap]\nlisten = \"127.0.0.1:0\"\n[http]\nlisten = \"127.0.0.1:0\"\n[backend]\nkind = \"dolibarr\"\n\
         url = \"{}\"\napi_key = \"0000000000000000000000000000000000000000\"\ntimeout = \"2s\"\nretries = 0\n",
        sim.url()
    );
    let r = idgate::app::start(Config::parse(&text).unwrap()).await.expect("starts even so");
    let ready = reqwest::get(format!("http://{}/readyz", r.http_addr)).await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    let err = body["last_error"].as_str().unwrap_or_default();
    assert!(err.contains("gateway's credentials"), "{body}");
    assert!(!err.contains("0000000000"), "the key never appears: {err}");
    let rc = bind_rc(&r, "uid=jdoe,ou=people,dc=example,dc=com", JDOE_PASSWORD).await;
    assert_eq!(rc, 52, "unavailable, not a wrong password");
    let health = reqwest::get(format!("http://{}/healthz", r.http_addr)).await.unwrap();
    assert_eq!(health.status(), 200, "the process itself is alive");
    r.shutdown().await;
}
