//! LDAP writes end to end: Keycloak's WRITABLE-mode sequence and Nextcloud's password change against
//! the demo (memory backend) and the Dolibarr simulator, Dolibarr 22's missing group API, backend
//! failures in the middle of a write, and who may write what.

mod common;
mod support;

use common::{ADMIN_DN, GROUPS, PEOPLE, group_dn, user_dn};
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use idgate::app::Running;
use idgate::backend::Backend;
use idgate::backend::memory::MemoryBackend;
use idgate::config::{Access, Config, Rights, Secret, ServiceAccount};
use ldap3::exop::PasswordModify;
use ldap3::{Ldap, LdapResult, Mod, Scope};
use support::dolibarr_sim::{DolibarrSim, JDOE_PASSWORD, Version};

const BASE: &str = "dc=example,dc=com";
const READER_DN: &str = "cn=reader,ou=services,dc=example,dc=com";
const PLACEHOLDER: &str = "cn=empty-membership-placeholder";

fn set(vals: &[&str]) -> HashSet<String> {
    vals.iter().map(|v| v.to_string()).collect()
}

fn attrs(list: &[(&str, &[&str])]) -> Vec<(String, HashSet<String>)> {
    list.iter().map(|(a, v)| (a.to_string(), set(v))).collect()
}

fn replace(a: &str, v: &str) -> Mod<String> {
    Mod::Replace(a.to_string(), set(&[v]))
}

fn add_val(a: &str, v: &str) -> Mod<String> {
    Mod::Add(a.to_string(), set(&[v]))
}

fn del_val(a: &str, v: &str) -> Mod<String> {
    Mod::Delete(a.to_string(), set(&[v]))
}

async fn add(l: &mut Ldap, dn: &str, a: Vec<(String, HashSet<String>)>) -> LdapResult {
    l.with_timeout(WAIT).add(dn, a).await.expect("add answered")
}

async fn modify(l: &mut Ldap, dn: &str, mods: Vec<Mod<String>>) -> LdapResult {
    l.with_timeout(WAIT).modify(dn, mods).await.expect("modify answered")
}

async fn delete(l: &mut Ldap, dn: &str) -> LdapResult {
    l.with_timeout(WAIT).delete(dn).await.expect("delete answered")
}

async fn modrdn(l: &mut Ldap, dn: &str, rdn: &str) -> LdapResult {
    l.with_timeout(WAIT).modifydn(dn, rdn, true, None).await.expect("modify DN answered")
}

async fn passwd(l: &mut Ldap, who: Option<&str>, old: Option<&str>, new: Option<&str>) -> LdapResult {
    l.with_timeout(WAIT)
        .extended(PasswordModify { user_id: who, old_pass: old, new_pass: new })
        .await
        .expect("password modify answered")
        .1
}

/// Result code of a fresh connection's bind.
async fn bind_rc(url: &str, dn: &str, pw: &str) -> u32 {
    let mut l = connect(url).await;
    let rc = try_bind(&mut l, dn, pw).await.rc;
    let _ = l.unbind().await;
    rc
}

/// The one entry a subtree search for `filter` finds (as the admin), if any.
async fn find_one(l: &mut Ldap, filter: &str) -> Option<ldap3::SearchEntry> {
    let mut e = search_ok(l, BASE, Scope::Subtree, filter, &["*", "memberOf", "entryUUID"]).await;
    assert!(e.len() <= 1, "{filter}: {} entries", e.len());
    e.pop()
}

fn member_of(e: &ldap3::SearchEntry) -> BTreeSet<String> {
    attr(e, "memberOf").iter().map(|d| norm_dn(d)).collect()
}

/// A password nobody else uses, long enough for Dolibarr.
fn fresh_password(tag: &str) -> String {
    let n = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    format!("{tag}-{:x}-Pw", n % 0xffff_ffff)
}

// ---- the backend behind the gateway, read directly ------------------------------------------------

#[derive(Debug, PartialEq, Eq)]
struct BackUser {
    first: String,
    last: String,
    mail: String,
}

enum Back {
    Mem(Arc<MemoryBackend>),
    Sim(Arc<DolibarrSim>),
}

impl Back {
    async fn user(&self, login: &str) -> Option<BackUser> {
        match self {
            Back::Mem(m) => m.find_user_by_login(login).await.expect("backend read").map(|u| BackUser {
                first: u.first_name,
                last: u.last_name,
                mail: u.email,
            }),
            Back::Sim(s) => {
                let id = s.user_id(login)?;
                let f = |k: &str| s.user_field(id, k).and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
                Some(BackUser { first: f("firstname"), last: f("lastname"), mail: f("email") })
            }
        }
    }

    async fn password_is(&self, login: &str, pw: &str) -> bool {
        match self {
            Back::Mem(m) => {
                let u = m.find_user_by_login(login).await.expect("backend read").expect("user exists");
                m.check_password(&u, pw).await.expect("password check")
            }
            Back::Sim(s) => s.user_password(s.user_id(login).expect("user exists")).as_deref() == Some(pw),
        }
    }

    /// Logins of a group's members; `None` when there is no such group.
    async fn members(&self, group: &str) -> Option<BTreeSet<String>> {
        match self {
            Back::Mem(m) => {
                let groups = m.list_groups().await.expect("backend read");
                let g = groups.into_iter().find(|g| g.name == group)?;
                let mut out = BTreeSet::new();
                for id in g.members {
                    out.insert(m.get_user(&id).await.expect("backend read").expect("member exists").login);
                }
                Some(out)
            }
            Back::Sim(s) => {
                let id = sim_group(s, group)?;
                let ids = s.group_members(id).expect("group exists");
                Some(
                    ids.into_iter()
                        .map(|u| {
                            s.user_field(u, "login").and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
                        })
                        .collect(),
                )
            }
        }
    }
}

fn sim_group(s: &DolibarrSim, name: &str) -> Option<u64> {
    (1..1000).find(|&id| s.group_name(id).as_deref() == Some(name))
}

// ---- idgate in front of the simulator -------------------------------------------------------------

async fn start_on_sim(sim: &DolibarrSim, timeout: &str) -> Running {
    let text = format!(
        r#"
        [ldap]
        listen = "127.0.0.1:0"
        [[ldap.service_accounts]]
        name = "admin"
        password = "demo-admin"
        access = "write"
        [[ldap.service_accounts]]
        name = "reader"
        password = "demo-reader"
        access = "read"
        [http]
        listen = "127.0.0.1:0"
        [cache]
        refresh_interval = "1h"
        full_refresh_interval = "1h"
        [backend]
        kind = "dolibarr"
        url = "{}"
        api_key = "{}"
        timeout = "{timeout}"
        retries = 0
        "#,
        sim.url(),
        sim.admin_key()
    );
    let cfg = Config::parse(&text).expect("config");
    tokio::time::timeout(WAIT, idgate::app::start(cfg)).await.expect("starts in time").expect("server starts")
}

// ---- 1. Keycloak WRITABLE mode --------------------------------------------------------------------

/// Keycloak's writes (reference §4.6 step 7), each checked through LDAP and in the backend.
async fn keycloak_writable(url: &str, back: &Back) {
    let mut admin = bind(url, ADMIN_DN, "demo-admin").await;
    let (login, dn, group) = ("kcuser", user_dn("kcuser"), "kcgroup");
    let initial = fresh_password("Initial");

    // Registration: the configured classes, the names, a random initial password.
    let r = add(
        &mut admin,
        &dn,
        attrs(&[
            ("objectClass", &["inetOrgPerson", "organizationalPerson"]),
            ("uid", &[login]),
            ("cn", &["Karl Cloak"]),
            ("sn", &["Cloak"]),
            ("givenName", &["Karl"]),
            ("mail", &["kcuser@example.com"]),
            ("userPassword", &[initial.as_str()]),
        ]),
    )
    .await;
    assert_eq!(r.rc, 0, "add: {r}");
    // Then a base read of the new DN for its entryUUID, requested explicitly.
    let e = search_ok(&mut admin, &dn, Scope::Base, "(objectClass=*)", &["entryUUID"]).await;
    assert_eq!(e.len(), 1);
    let uuid = first(&e[0], "entryUUID");
    assert_eq!(uuid.len(), 36, "{uuid}");
    assert!(!has_attr(&e[0], "mail"), "only what was asked for: {:?}", e[0].attrs);
    let lookup = search_ok(&mut admin, PEOPLE, Scope::Subtree, &format!("(entryUUID={uuid})"), &["uid"]).await;
    assert_eq!(lookup.len(), 1, "lookup by entryUUID finds the new user");
    assert_eq!(
        back.user(login).await,
        Some(BackUser { first: "Karl".into(), last: "Cloak".into(), mail: "kcuser@example.com".into() })
    );
    assert!(back.password_is(login, &initial).await, "initial password stored in the backend");
    assert_eq!(bind_rc(url, &dn, &initial).await, 0);

    // Password reset: userIdentity, no old password, on the admin connection.
    let newpw = fresh_password("Reset");
    let r = passwd(&mut admin, Some(&dn), None, Some(&newpw)).await;
    assert_eq!(r.rc, 0, "password modify: {r}");
    assert!(back.password_is(login, &newpw).await);
    assert_eq!(bind_rc(url, &dn, &newpw).await, 0);
    assert_eq!(bind_rc(url, &dn, &initial).await, 49, "the initial password no longer works");

    // Profile edit.
    let r = modify(
        &mut admin,
        &dn,
        vec![replace("givenName", "Carla"), replace("sn", "Kloak"), replace("mail", "carla@example.com")],
    )
    .await;
    assert_eq!(r.rc, 0, "profile replace: {r}");
    let e = find_one(&mut admin, "(uid=kcuser)").await.expect("user found");
    assert_eq!(first(&e, "givenName"), "Carla");
    assert_eq!(first(&e, "sn"), "Kloak");
    assert_eq!(first(&e, "mail"), "carla@example.com");
    assert_eq!(first(&e, "cn"), "Carla Kloak");
    assert_eq!(first(&e, "entryUUID"), uuid, "the entry keeps its identity");
    assert!(find_one(&mut admin, "(mail=kcuser@example.com)").await.is_none(), "old mail no longer indexed");
    assert_eq!(
        back.user(login).await,
        Some(BackUser { first: "Carla".into(), last: "Kloak".into(), mail: "carla@example.com".into() })
    );

    // A group with Keycloak's placeholder member, which lies outside the tree.
    let gdn = group_dn(group);
    let r = add(
        &mut admin,
        &gdn,
        attrs(&[("objectClass", &["groupOfNames"]), ("cn", &[group]), ("member", &[PLACEHOLDER])]),
    )
    .await;
    assert_eq!(r.rc, 0, "group add: {r}");
    let g = find_one(&mut admin, &format!("(&(objectClass=groupOfNames)(cn={group}))")).await.expect("group found");
    assert!(!attr(&g, "member").iter().any(|m| norm_dn(m) == norm_dn(&dn)));
    assert_eq!(back.members(group).await, Some(BTreeSet::new()), "created empty in the backend");

    // Membership add, then delete.
    let r = modify(&mut admin, &gdn, vec![add_val("member", &dn)]).await;
    assert_eq!(r.rc, 0, "member add: {r}");
    let e = find_one(&mut admin, "(uid=kcuser)").await.expect("user");
    assert!(member_of(&e).contains(&norm_dn(&gdn)), "{:?}", member_of(&e));
    let g = find_one(&mut admin, &format!("(member={dn})")).await.expect("group found by member");
    assert_eq!(norm_dn(&g.dn), norm_dn(&gdn));
    assert_eq!(back.members(group).await, Some(BTreeSet::from([login.to_string()])));

    let r = modify(&mut admin, &gdn, vec![del_val("member", &dn)]).await;
    assert_eq!(r.rc, 0, "member delete: {r}");
    let e = find_one(&mut admin, "(uid=kcuser)").await.expect("user");
    assert!(!member_of(&e).contains(&norm_dn(&gdn)), "{:?}", member_of(&e));
    assert!(find_one(&mut admin, &format!("(member={dn})")).await.is_none());
    assert_eq!(back.members(group).await, Some(BTreeSet::new()));

    // User delete.
    let r = delete(&mut admin, &dn).await;
    assert_eq!(r.rc, 0, "delete: {r}");
    assert!(find_one(&mut admin, "(uid=kcuser)").await.is_none(), "gone from searches");
    let (e, res) = search(&mut admin, &dn, Scope::Base, "(objectClass=*)", &["uid"]).await;
    assert!(e.is_empty());
    assert_eq!(res.rc, 32, "base read of a deleted entry: {res}");
    assert_eq!(back.user(login).await, None, "gone from the backend");
    assert_eq!(bind_rc(url, &dn, &newpw).await, 49);
    let _ = admin.unbind().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keycloak_writable_on_demo() {
    let demo = start_demo_full().await;
    keycloak_writable(&demo.url, &Back::Mem(demo.backend.clone())).await;
    demo.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keycloak_writable_on_dolibarr_23() {
    let sim = Arc::new(DolibarrSim::start(Version::V23).await);
    let r = start_on_sim(&sim, "5s").await;
    keycloak_writable(&format!("ldap://{}", r.ldap_addr), &Back::Sim(sim.clone())).await;
    r.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dolibarr_22_group_writes_fail_cleanly() {
    let sim = Arc::new(DolibarrSim::start(Version::V22).await);
    let server = start_on_sim(&sim, "5s").await;
    let url = format!("ldap://{}", server.ldap_addr);
    let back = Back::Sim(sim.clone());
    let mut admin = bind(&url, ADMIN_DN, "demo-admin").await;
    let jdoe = user_dn("jdoe");
    let devs = group_dn("developers");
    let devs_before = back.members("developers").await.expect("seeded group");
    assert!(devs_before.contains("jdoe"));
    let group_count = (1..1000).filter(|&id| sim.group_name(id).is_some()).count();
    let names_v22 = |r: &LdapResult| r.text.contains("Dolibarr 22");

    // Group create.
    let r = add(
        &mut admin,
        &group_dn("kcgroup"),
        attrs(&[("objectClass", &["groupOfNames"]), ("cn", &["kcgroup"]), ("member", &[PLACEHOLDER])]),
    )
    .await;
    assert_eq!(r.rc, 53, "group add: {r}");
    assert!(names_v22(&r), "{r}");
    assert_eq!(back.members("kcgroup").await, None);
    assert!(find_one(&mut admin, "(cn=kcgroup)").await.is_none());

    // Group rename.
    let r = modrdn(&mut admin, &devs, "cn=devs").await;
    assert_eq!(r.rc, 53, "group rename: {r}");
    assert!(names_v22(&r), "{r}");
    assert!(sim_group(&sim, "developers").is_some() && sim_group(&sim, "devs").is_none());
    assert!(find_one(&mut admin, "(cn=developers)").await.is_some());
    assert!(find_one(&mut admin, "(cn=devs)").await.is_none());

    // Group delete.
    let r = delete(&mut admin, &devs).await;
    assert_eq!(r.rc, 53, "group delete: {r}");
    assert!(names_v22(&r), "{r}");
    assert!(find_one(&mut admin, "(cn=developers)").await.is_some());

    // Member removal.
    let r = modify(&mut admin, &devs, vec![del_val("member", &jdoe)]).await;
    assert_eq!(r.rc, 53, "member removal: {r}");
    assert!(names_v22(&r), "{r}");
    let e = find_one(&mut admin, "(uid=jdoe)").await.expect("jdoe");
    assert!(member_of(&e).contains(&norm_dn(&devs)), "membership kept: {:?}", member_of(&e));

    // Nothing changed in the ERP.
    assert_eq!(back.members("developers").await, Some(devs_before));
    assert_eq!((1..1000).filter(|&id| sim.group_name(id).is_some()).count(), group_count);

    // What Dolibarr 22 can do still works: adding a member.
    let r = modify(&mut admin, &devs, vec![add_val("member", &user_dn("norights"))]).await;
    assert_eq!(r.rc, 0, "member add on 22: {r}");
    assert!(back.members("developers").await.expect("group").contains("norights"));
    server.shutdown().await;
}

// ---- 2. Nextcloud's password change ---------------------------------------------------------------

/// Reference §4.1 step 8: the extended operation (userIdentity = DN, no old password) on the agent
/// connection, then the modify fallback.
async fn nextcloud_password_change(url: &str, back: &Back, login: &str, old: &str) {
    let dn = user_dn(login);
    let mut agent = bind(url, ADMIN_DN, "demo-admin").await;
    let pw1 = fresh_password("Nextcloud1");
    let r = passwd(&mut agent, Some(&dn), None, Some(&pw1)).await;
    assert_eq!(r.rc, 0, "password modify: {r}");
    assert_eq!(bind_rc(url, &dn, old).await, 49, "old password refused");
    assert_eq!(bind_rc(url, &dn, &pw1).await, 0, "new password accepted");
    assert!(back.password_is(login, &pw1).await);

    let pw2 = fresh_password("Nextcloud2");
    let r = modify(&mut agent, &dn, vec![replace("userPassword", &pw2)]).await;
    assert_eq!(r.rc, 0, "modify fallback: {r}");
    assert_eq!(bind_rc(url, &dn, &pw1).await, 49);
    assert_eq!(bind_rc(url, &dn, &pw2).await, 0);
    assert!(back.password_is(login, &pw2).await);
    let _ = agent.unbind().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nextcloud_password_change_on_demo() {
    let demo = start_demo_full().await;
    let back = Back::Mem(demo.backend.clone());
    nextcloud_password_change(&demo.url, &back, "bob", "bob-demo").await;
    // The gateway's own policy (8 characters here).
    let mut agent = bind(&demo.url, ADMIN_DN, "demo-admin").await;
    let r = passwd(&mut agent, Some(&user_dn("carol")), None, Some("short")).await;
    assert_eq!(r.rc, 19, "{r}");
    assert!(r.text.contains('8'), "names the minimum: {r}");
    assert!(back.password_is("carol", "carol-demo").await);
    demo.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nextcloud_password_change_on_dolibarr() {
    let sim = Arc::new(DolibarrSim::start(Version::V23).await);
    let r = start_on_sim(&sim, "5s").await;
    let url = format!("ldap://{}", r.ldap_addr);
    let back = Back::Sim(sim.clone());
    nextcloud_password_change(&url, &back, "jdoe", JDOE_PASSWORD).await;

    // Long enough for the gateway (8), too short for Dolibarr (12): refused before the ERP is called.
    let dn = user_dn("reader");
    let before = sim.user_password(sim.user_id("reader").expect("seeded"));
    let mut agent = bind(&url, ADMIN_DN, "demo-admin").await;
    sim.reset_counts();
    for r in [
        passwd(&mut agent, Some(&dn), None, Some("Short-pw-1")).await,
        modify(&mut agent, &dn, vec![replace("userPassword", "Short-pw-1")]).await,
    ] {
        assert_eq!(r.rc, 19, "{r}");
        assert!(r.text.contains("12"), "the message names Dolibarr's minimum: {r}");
    }
    assert_eq!(sim.count("PUT /users/{id}"), 0, "the ERP was not asked");
    assert_eq!(sim.user_password(sim.user_id("reader").expect("seeded")), before);
    r.shutdown().await;
}

// ---- 4. Backend failures in the middle of a write ---------------------------------------------------

/// What an interrupted write must answer: unavailable or other, with a message.
fn assert_failed(r: &LdapResult, what: &str) {
    assert!(r.rc == 52 || r.rc == 80, "{what}: expected unavailable (52) or other (80), got {r}");
    assert!(!r.text.is_empty(), "{what}: the answer explains: {r}");
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    Status500,
    Timeout,
}

impl Fault {
    fn arm(self, sim: &DolibarrSim, route: &str) {
        match self {
            Fault::Status500 => sim.fail_route(route, 500),
            // The backend timeout is 1 s.
            Fault::Timeout => sim.set_delay(Duration::from_millis(1800)),
        }
    }

    async fn recover(self, sim: &DolibarrSim) {
        sim.clear_failures();
        sim.set_delay(Duration::ZERO);
        if let Fault::Timeout = self {
            // Let the abandoned request finish on the simulator's side.
            tokio::time::sleep(Duration::from_millis(1200)).await;
        }
    }
}

async fn faults_during_writes(fault: Fault) {
    let sim = Arc::new(DolibarrSim::start(Version::V23).await);
    let r = start_on_sim(&sim, "1s").await;
    let url = format!("ldap://{}", r.ldap_addr);
    let mut admin = bind(&url, ADMIN_DN, "demo-admin").await;

    // Add.
    let dn = user_dn("faulty");
    let new_user = || {
        attrs(&[
            ("objectClass", &["inetOrgPerson"]),
            ("cn", &["Fay Ulty"]),
            ("sn", &["Ulty"]),
            ("givenName", &["Fay"]),
            ("mail", &["faulty@example.com"]),
            ("userPassword", &["Faulty-Secret-1"]),
        ])
    };
    fault.arm(&sim, "POST /users");
    let res = add(&mut admin, &dn, new_user()).await;
    assert_failed(&res, &format!("add during {fault:?}"));
    fault.recover(&sim).await;
    assert!(find_one(&mut admin, "(uid=faulty)").await.is_none(), "{fault:?}: the cache shows no new user");
    if let Fault::Status500 = fault {
        assert!(sim.user_id("faulty").is_none(), "nothing created in the ERP");
    }
    let res = add(&mut admin, &dn, new_user()).await;
    assert_eq!(res.rc, 0, "{fault:?}: add retried after recovery: {res}");
    assert!(find_one(&mut admin, "(uid=faulty)").await.is_some());
    assert!(sim.user_id("faulty").is_some());

    // Modify.
    let jdoe = user_dn("jdoe");
    let jid = sim.user_id("jdoe").expect("seeded");
    fault.arm(&sim, "PUT /users/{id}");
    let res = modify(&mut admin, &jdoe, vec![replace("mail", "jd@example.org")]).await;
    assert_failed(&res, &format!("modify during {fault:?}"));
    fault.recover(&sim).await;
    let e = find_one(&mut admin, "(uid=jdoe)").await.expect("jdoe");
    if let Fault::Status500 = fault {
        assert_eq!(first(&e, "mail"), "jdoe@example.com", "the cache keeps what the ERP has");
        assert_eq!(
            sim.user_field(jid, "email").and_then(|v| v.as_str().map(String::from)).as_deref(),
            Some("jdoe@example.com")
        );
    } else {
        // The abandoned request may have landed late in the ERP; the cache must not claim it did.
        assert_eq!(first(&e, "mail"), "jdoe@example.com", "the cache shows no unconfirmed change");
    }
    let res = modify(&mut admin, &jdoe, vec![replace("mail", "jd@example.org")]).await;
    assert_eq!(res.rc, 0, "{fault:?}: modify retried: {res}");
    assert_eq!(first(&find_one(&mut admin, "(uid=jdoe)").await.expect("jdoe"), "mail"), "jd@example.org");

    // Password change.
    let new_pw = "Changed-Secret-9";
    fault.arm(&sim, "PUT /users/{id}");
    let res = passwd(&mut admin, Some(&jdoe), None, Some(new_pw)).await;
    assert_failed(&res, &format!("password change during {fault:?}"));
    fault.recover(&sim).await;
    if let Fault::Status500 = fault {
        assert_eq!(sim.user_password(jid).as_deref(), Some(JDOE_PASSWORD));
        assert_eq!(bind_rc(&url, &jdoe, new_pw).await, 49, "the new password is not in force");
        assert_eq!(bind_rc(&url, &jdoe, JDOE_PASSWORD).await, 0);
    }
    let res = passwd(&mut admin, Some(&jdoe), None, Some(new_pw)).await;
    assert_eq!(res.rc, 0, "{fault:?}: password change retried: {res}");
    assert_eq!(bind_rc(&url, &jdoe, new_pw).await, 0);
    assert_eq!(sim.user_password(jid).as_deref(), Some(new_pw));
    let _ = admin.unbind().await;
    r.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erp_error_in_the_middle_of_writes() {
    faults_during_writes(Fault::Status500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erp_timeout_in_the_middle_of_writes() {
    faults_during_writes(Fault::Timeout).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_applied_then_password_fails() {
    let sim = Arc::new(DolibarrSim::start(Version::V23).await);
    let r = start_on_sim(&sim, "5s").await;
    let url = format!("ldap://{}", r.ldap_addr);
    let mut admin = bind(&url, ADMIN_DN, "demo-admin").await;
    let jdoe = user_dn("jdoe");
    let jid = sim.user_id("jdoe").expect("seeded");

    // Profile and password both go through PUT /users/{id}: let the first one through and fail the
    // next. Every answer is slowed down so the watcher arms the failure in time.
    sim.set_delay(Duration::from_millis(300));
    sim.reset_counts();
    let watcher = {
        let sim = sim.clone();
        tokio::spawn(async move {
            while sim.count("PUT /users/{id}") == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            sim.fail_route("PUT /users/{id}", 500);
        })
    };
    let res =
        modify(&mut admin, &jdoe, vec![replace("title", "Chief Tester"), replace("userPassword", "Combined-Secret-7")])
            .await;
    tokio::time::timeout(WAIT, watcher).await.expect("watcher done").expect("watcher ok");
    sim.set_delay(Duration::ZERO);
    sim.clear_failures();
    assert_ne!(res.rc, 0, "{res}");
    assert!(res.text.contains("profile") && res.text.contains("applied"), "says what was applied: {res}");
    assert!(res.text.contains("password"), "says what failed: {res}");
    assert_eq!(sim.count("PUT /users/{id}"), 2);
    // Exactly what the answer said: the profile is in the ERP and in the cache, the password is not.
    assert_eq!(sim.user_field(jid, "job").and_then(|v| v.as_str().map(String::from)).as_deref(), Some("Chief Tester"));
    assert_eq!(first(&find_one(&mut admin, "(uid=jdoe)").await.expect("jdoe"), "title"), "Chief Tester");
    assert_eq!(sim.user_password(jid).as_deref(), Some(JDOE_PASSWORD));
    assert_eq!(bind_rc(&url, &jdoe, "Combined-Secret-7").await, 49);
    assert_eq!(bind_rc(&url, &jdoe, JDOE_PASSWORD).await, 0);
    r.shutdown().await;
}

// ---- 5. Who may write what ------------------------------------------------------------------------

fn account(name: &str, users: Access, groups: Access) -> ServiceAccount {
    ServiceAccount {
        name: name.into(),
        password: Secret::new(format!("{name}-pw")),
        access: Rights { users, groups },
        networks: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_rights_per_subtree() {
    let demo = start_demo_with(|cfg| {
        cfg.ldap.service_accounts.push(account("provisioner", Access::Write, Access::Read));
        cfg.ldap.service_accounts.push(account("userreader", Access::Read, Access::None));
    })
    .await;
    let url = demo.url.clone();
    let back = Back::Mem(demo.backend.clone());

    // users = write, groups = read
    let mut p = bind(&url, "cn=provisioner,ou=services,dc=example,dc=com", "provisioner-pw").await;
    let r = add(
        &mut p,
        &user_dn("provisioned"),
        attrs(&[("objectClass", &["inetOrgPerson"]), ("cn", &["Pro Visioned"]), ("sn", &["Visioned"])]),
    )
    .await;
    assert_eq!(r.rc, 0, "user add with users = write: {r}");
    assert!(back.user("provisioned").await.is_some());
    let r =
        add(&mut p, &group_dn("provgroup"), attrs(&[("objectClass", &["groupOfNames"]), ("cn", &["provgroup"])])).await;
    assert_eq!(r.rc, 50, "group add with groups = read: {r}");
    assert_eq!(back.members("provgroup").await, None);
    let r = modify(&mut p, &group_dn("staff"), vec![add_val("member", &user_dn("provisioned"))]).await;
    assert_eq!(r.rc, 50, "member add with groups = read: {r}");
    let groups = search_ok(&mut p, GROUPS, Scope::OneLevel, "(objectClass=*)", &["cn"]).await;
    assert!(!groups.is_empty(), "groups readable");

    // users = read, groups = none
    let mut u = bind(&url, "cn=userreader,ou=services,dc=example,dc=com", "userreader-pw").await;
    let all = search_ok(&mut u, BASE, Scope::Subtree, "(objectClass=*)", &["objectClass"]).await;
    assert!(all.iter().any(|e| norm_dn(&e.dn) == norm_dn(&user_dn("alice"))), "users visible");
    assert!(!all.iter().any(|e| norm_dn(&e.dn).ends_with(&norm_dn(GROUPS)) && norm_dn(&e.dn) != norm_dn(GROUPS)));
    let (g, _) =
        search(&mut u, BASE, Scope::Subtree, "(|(objectClass=groupOfNames)(objectClass=posixGroup))", &["cn"]).await;
    assert!(g.is_empty(), "no group entries: {:?}", g.iter().map(|e| &e.dn).collect::<Vec<_>>());
    let (g, _) = search(&mut u, &group_dn("staff"), Scope::Base, "(objectClass=*)", &["cn"]).await;
    assert!(g.is_empty(), "a group read by DN");
    let r = modify(&mut u, &user_dn("alice"), vec![replace("mail", "x@example.com")]).await;
    assert_eq!(r.rc, 50, "users = read cannot write: {r}");
    demo.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_account_gets_50_for_every_write() {
    let demo = start_demo_full().await;
    let mut l = bind(&demo.url, READER_DN, "demo-reader").await;
    let alice = user_dn("alice");
    let results = [
        (
            "add",
            add(
                &mut l,
                &user_dn("newbie"),
                attrs(&[("objectClass", &["inetOrgPerson"]), ("cn", &["N B"]), ("sn", &["B"])]),
            )
            .await,
        ),
        ("modify", modify(&mut l, &alice, vec![replace("mail", "a@b.c")]).await),
        ("member add", modify(&mut l, &group_dn("staff"), vec![add_val("member", &user_dn("dave"))]).await),
        ("delete", delete(&mut l, &alice).await),
        ("modrdn", modrdn(&mut l, &alice, "uid=alicia").await),
        ("password modify", passwd(&mut l, Some(&alice), None, Some("Another-Pw-1")).await),
    ];
    for (what, r) in results {
        assert_eq!(r.rc, 50, "{what} as reader: {r}");
    }
    let e = find_one(&mut l, "(uid=alice)").await.expect("alice unchanged");
    assert_eq!(first(&e, "mail"), "alice@example.com");
    assert!(find_one(&mut l, "(uid=newbie)").await.is_none());
    demo.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_change_only_their_own_password() {
    let demo = start_demo_full().await;
    let url = demo.url.clone();
    let back = Back::Mem(demo.backend.clone());
    let alice = user_dn("alice");
    let bob = user_dn("bob");
    let mut a = bind(&url, &alice, "alice-demo").await;

    // Their own profile: no.
    let r = modify(&mut a, &alice, vec![replace("mail", "alice@evil.example")]).await;
    assert_eq!(r.rc, 50, "{r}");
    // Another user's password: no, by either route.
    let r = modify(&mut a, &bob, vec![replace("userPassword", "Stolen-Pw-1")]).await;
    assert_eq!(r.rc, 50, "{r}");
    let r = passwd(&mut a, Some(&bob), Some("bob-demo"), Some("Stolen-Pw-1")).await;
    assert_eq!(r.rc, 50, "{r}");
    assert!(back.password_is("bob", "bob-demo").await);
    // Their own password without proof: no.
    let r = modify(&mut a, &alice, vec![replace("userPassword", "Alice-New-1")]).await;
    assert_eq!(r.rc, 53, "replace without the old value: {r}");
    let r = passwd(&mut a, None, None, Some("Alice-New-1")).await;
    assert_eq!(r.rc, 53, "password modify without oldPasswd: {r}");
    // A wrong proof: invalidCredentials.
    let r = modify(&mut a, &alice, vec![del_val("userPassword", "wrong-old"), add_val("userPassword", "Alice-New-1")])
        .await;
    assert_eq!(r.rc, 49, "{r}");
    assert!(back.password_is("alice", "alice-demo").await);
    // With proof: delete old value + add new value.
    let r = modify(&mut a, &alice, vec![del_val("userPassword", "alice-demo"), add_val("userPassword", "Alice-New-1")])
        .await;
    assert_eq!(r.rc, 0, "{r}");
    assert!(back.password_is("alice", "Alice-New-1").await);
    assert_eq!(bind_rc(&url, &alice, "alice-demo").await, 49);
    // And by the extended operation with the old password.
    let r = passwd(&mut a, None, Some("Alice-New-1"), Some("Alice-New-2")).await;
    assert_eq!(r.rc, 0, "{r}");
    assert_eq!(bind_rc(&url, &alice, "Alice-New-2").await, 0);
    // The profile did not change on the way.
    let mut admin = bind(&url, ADMIN_DN, "demo-admin").await;
    assert_eq!(first(&find_one(&mut admin, "(uid=alice)").await.expect("alice"), "mail"), "alice@example.com");
    demo.running.shutdown().await;
}

/// Each kind of unacceptable modification gets its own result code and names the attribute, and a
/// request with one bad change among good ones applies nothing.
#[tokio::test]
async fn modify_error_codes_name_the_attribute_and_apply_nothing() {
    let d = start_demo_full().await;
    let mut admin = bind(&d.url, ADMIN_DN, "demo-admin").await;
    let alice = user_dn("alice");
    let cases: Vec<(Vec<Mod<String>>, u32, &str)> = vec![
        (vec![replace("uidNumber", "5")], 19, "uidNumber"),
        (vec![replace("memberOf", "cn=x,ou=groups,dc=example,dc=com")], 19, "memberOf"),
        (vec![replace("description", "x")], 53, "description"),
        (vec![replace("uid", "alice2")], 67, "uid"),
        (vec![Mod::Replace("objectClass".into(), set(&["device"]))], 69, "object classes"),
        (vec![add_val("mail", "second@example.com")], 20, "mail"),
        (vec![del_val("telephoneNumber", "+1 not hers")], 16, "telephoneNumber"),
        (vec![replace("mail", "new@example.com"), replace("gidNumber", "1")], 19, "gidNumber"),
    ];
    for (mods, code, needle) in cases {
        let r = modify(&mut admin, &alice, mods).await;
        assert_eq!(r.rc, code, "{needle}: {}", r.text);
        assert!(r.text.contains(needle), "the message names {needle}: {}", r.text);
    }
    let r = modify(&mut admin, &alice, vec![replace("nosuchattribute", "x")]).await;
    assert_eq!(r.rc, 17, "{}", r.text);
    let e = search_ok(&mut admin, &alice, Scope::Base, "(objectClass=*)", &["mail"]).await;
    assert_eq!(first(&e[0], "mail"), "alice@example.com", "the rejected request changed nothing");
    let u = d.backend.find_user_by_login("alice").await.unwrap().unwrap();
    assert_eq!(u.email, "alice@example.com");
}

/// With `delete_mode = "disable"`, an LDAP delete disables the user instead of deleting it.
#[tokio::test]
async fn delete_mode_disable_keeps_the_user_but_locks_it() {
    let d = start_demo_with(|c| c.ldap.delete_mode = idgate::config::DeleteMode::Disable).await;
    let mut admin = bind(&d.url, ADMIN_DN, "demo-admin").await;
    assert_eq!(delete(&mut admin, &user_dn("bob")).await.rc, 0);
    let e = search_ok(&mut admin, &user_dn("bob"), Scope::Base, "(objectClass=*)", &["+"]).await;
    assert!(has_attr(&e[0], "pwdAccountLockedTime"), "still there, locked");
    assert_eq!(try_bind(&mut connect(&d.url).await, &user_dn("bob"), "bob-demo").await.rc, 49);
    let u = d.backend.find_user_by_login("bob").await.unwrap().expect("kept in the backend");
    assert!(!u.active);
}

/// ModifyDN renames in place only: another parent, or a fixed container, is refused.
#[tokio::test]
async fn modify_dn_refuses_moves_and_containers() {
    let d = start_demo_full().await;
    let mut admin = bind(&d.url, ADMIN_DN, "demo-admin").await;
    let r = admin.with_timeout(WAIT).modifydn(&user_dn("carol"), "uid=carol", true, Some(GROUPS)).await.unwrap();
    assert_eq!(r.rc, 53, "{}", r.text);
    assert!(r.text.contains("moving"), "{}", r.text);
    assert_eq!(modrdn(&mut admin, PEOPLE, "ou=staff").await.rc, 53);
    let r = modrdn(&mut admin, &user_dn("carol"), "cn=carol").await;
    assert_eq!(r.rc, 64, "users are named by uid: {}", r.text);
    assert!(d.backend.find_user_by_login("carol").await.unwrap().is_some(), "nothing renamed");
}
