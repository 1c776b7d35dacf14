//! Foreman's nested user groups and hidden accounts through the real protocols: the gateway
//! (the demo's listeners, tree and tokens) in front of the simulated Foreman holding three levels
//! of nesting (`company` ⊃ `engineering` ⊃ `backend`) and a cycle (`ring-a` ⊃ `ring-b` ⊃ `ring-a`).

mod common;
mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use common::scim::Scim;
use common::{ADMIN_DN, ADMIN_PW, PEOPLE, WAIT, attr, bind, connect, group_dn, norm_dn, search_ok, try_bind, user_dn};
use idgate::app::{self, Running};
use idgate::config::{BackendConfig, ForemanConfig, Secret};
use ldap3::Scope;
use serde_json::{Value, json};
use support::foreman_sim::{ADMIN_PASSWORD, ForemanSim, Nesting};

const IN_CHAIN: &str = "1.2.840.113556.1.4.1941";

/// The demo gateway with the Foreman backend; the gateway's Foreman account is `admin`.
async fn start(sim: &ForemanSim) -> Running {
    let mut cfg = common::demo_config();
    // The demo's custom attribute is a memory-backend field; Foreman has none of it.
    cfg.directory.attributes.clear();
    cfg.backend = BackendConfig::Foreman(ForemanConfig {
        url: sim.url(),
        username: "admin".into(),
        password: Secret::new(ADMIN_PASSWORD),
        timeout: Duration::from_secs(3),
        retries: 0,
        page_size: 100,
        failed_check_burst: 10,
        failed_check_window: Duration::from_secs(300),
    });
    tokio::time::timeout(WAIT, app::start(cfg)).await.expect("starts in time").expect("gateway starts")
}

async fn nested() -> (ForemanSim, Nesting, Running) {
    let sim = ForemanSim::start().await;
    let n = sim.seed_nesting();
    let running = start(&sim).await;
    (sim, n, running)
}

fn dns(list: &[String]) -> BTreeSet<String> {
    list.iter().map(|d| norm_dn(d)).collect()
}

fn users(logins: &[&str]) -> BTreeSet<String> {
    logins.iter().map(|l| norm_dn(&user_dn(l))).collect()
}

fn groups(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| norm_dn(&group_dn(n))).collect()
}

#[tokio::test]
async fn ldap_groups_list_child_groups_and_member_of_is_transitive() {
    let (_sim, _n, r) = nested().await;
    let url = format!("ldap://{}", r.ldap_addr);
    let mut ldap = bind(&url, ADMIN_DN, ADMIN_PW).await;

    let member = |e: &[ldap3::SearchEntry]| dns(&attr(&e[0], "member"));
    let company = search_ok(&mut ldap, &group_dn("company"), Scope::Base, "(objectClass=*)", &["member"]).await;
    let mut want = users(&["mmouse"]);
    want.extend(groups(&["engineering"]));
    assert_eq!(member(&company), want, "users and child groups, the hidden foreman_admin not");
    let ring = search_ok(&mut ldap, &group_dn("ring-b"), Scope::Base, "(objectClass=*)", &["member"]).await;
    let mut want = users(&["tstark"]);
    want.extend(groups(&["ring-a"]));
    assert_eq!(member(&ring), want);

    // memberOf: every ancestor, each once, also around the cycle.
    for (login, want) in [
        ("jdoe", groups(&["backend", "engineering", "company", "ops"])),
        ("pparker", groups(&["engineering", "company"])),
        ("bbanner", groups(&["ring-a", "ring-b"])),
        ("tstark", groups(&["ring-a", "ring-b"])),
    ] {
        let e = search_ok(&mut ldap, &user_dn(login), Scope::Base, "(objectClass=*)", &["memberOf"]).await;
        let values = attr(&e[0], "memberOf");
        assert_eq!(values.len(), want.len(), "{login}: each group once: {values:?}");
        assert_eq!(dns(&values), want, "{login}");
    }
    // A plain equality filter on memberOf matches transitive groups too.
    let e =
        search_ok(&mut ldap, PEOPLE, Scope::OneLevel, &format!("(memberOf={})", group_dn("company")), &["uid"]).await;
    assert_eq!(
        dns(&e.iter().map(|e| e.dn.clone()).collect::<Vec<_>>()),
        users(&["dprince", "jdoe", "mmouse", "pparker"])
    );
}

#[tokio::test]
async fn ldap_in_chain_filter_finds_users_at_any_depth() {
    let (_sim, _n, r) = nested().await;
    let url = format!("ldap://{}", r.ldap_addr);
    let mut ldap = bind(&url, ADMIN_DN, ADMIN_PW).await;
    for (group, want) in [
        ("company", users(&["dprince", "jdoe", "mmouse", "pparker"])),
        ("engineering", users(&["dprince", "jdoe", "pparker"])),
        ("backend", users(&["dprince", "jdoe"])),
        ("ring-a", users(&["bbanner", "tstark"])),
        ("ring-b", users(&["bbanner", "tstark"])),
    ] {
        let filter = format!("(memberOf:{IN_CHAIN}:={})", group_dn(group));
        let e = search_ok(&mut ldap, PEOPLE, Scope::Subtree, &filter, &["uid"]).await;
        let found: Vec<String> = e.iter().map(|e| e.dn.clone()).collect();
        assert_eq!(found.len(), want.len(), "{group}: each user once: {found:?}");
        assert_eq!(dns(&found), want, "{group}");
    }
    // Combined with other terms, and the unknown group matches nothing.
    let filter = format!("(&(uid=j*)(memberOf:{IN_CHAIN}:={}))", group_dn("company"));
    let e = search_ok(&mut ldap, PEOPLE, Scope::Subtree, &filter, &["uid"]).await;
    assert_eq!(dns(&e.iter().map(|e| e.dn.clone()).collect::<Vec<_>>()), users(&["jdoe"]));
    let filter = format!("(memberOf:{IN_CHAIN}:={})", group_dn("nosuch"));
    assert!(search_ok(&mut ldap, PEOPLE, Scope::Subtree, &filter, &["uid"]).await.is_empty());
}

fn typed_members(group: &Value) -> BTreeSet<(String, String)> {
    group["members"]
        .as_array()
        .unwrap_or_else(|| panic!("no members in {group}"))
        .iter()
        .map(|m| (m["value"].as_str().unwrap_or("").to_string(), m["type"].as_str().unwrap_or("").to_string()))
        .collect()
}

#[tokio::test]
async fn scim_groups_carry_child_groups_as_members() {
    let (_sim, n, r) = nested().await;
    let scim = Scim::new(r.http_addr);
    let g = scim.get(&format!("/Groups/g{}", n.company)).await;
    assert_eq!(g.status, 200, "{g}");
    let want: BTreeSet<(String, String)> =
        [("6".to_string(), "User".to_string()), (format!("g{}", n.engineering), "Group".to_string())].into();
    assert_eq!(typed_members(&g.body), want, "the hidden foreman_admin (1) is not a member");
    let g = scim.get(&format!("/Groups/g{}", n.ring_a)).await;
    let want: BTreeSet<(String, String)> =
        [("13".to_string(), "User".to_string()), (format!("g{}", n.ring_b), "Group".to_string())].into();
    assert_eq!(typed_members(&g.body), want);
}

#[tokio::test]
async fn scim_nesting_writes_reach_foreman_and_cycles_are_refused_before_it() {
    let (sim, n, r) = nested().await;
    let scim = Scim::new(r.http_addr);
    // Remove the ring's cycle first: Foreman refuses every new nesting while one exists.
    let p = scim
        .patch(
            &format!("/Groups/g{}", n.ring_b),
            json!([{"op": "remove", "path": format!("members[value eq \"g{}\"]", n.ring_a)}]),
        )
        .await;
    assert!(p.status == 200 || p.status == 204, "{p}");
    assert_eq!(sim.group_children(n.ring_b), Some(vec![]));
    let p = scim
        .patch("/Groups/g12", json!([{"op": "add", "path": "members", "value": [{"value": "g13", "type": "Group"}]}]))
        .await;
    assert!(p.status == 200 || p.status == 204, "{p}");
    assert_eq!(sim.group_children(12), Some(vec![13]));

    sim.reset_counts();
    let p = scim
        .patch(
            &format!("/Groups/g{}", n.backend),
            json!([{"op": "add", "path": "members", "value": [{"value": format!("g{}", n.company), "type": "Group"}]}]),
        )
        .await;
    assert_eq!(p.status, 400, "a cycle: {p}");
    assert!(p.detail().contains("cycle"), "{p}");
    assert_eq!(sim.count("PUT /usergroups/{id}"), 0, "refused before Foreman saw it");
}

/// Hidden accounts: Foreman's own system users (never listed by Foreman) and the gateway's own
/// Foreman account (listed, kept out by the gateway) are neither found nor able to bind.
#[tokio::test]
async fn hidden_foreman_accounts_are_not_served() {
    let (sim, _n, r) = nested().await;
    let url = format!("ldap://{}", r.ldap_addr);
    let mut ldap = bind(&url, ADMIN_DN, ADMIN_PW).await;
    for login in ["admin", "foreman_admin", "foreman_api_admin"] {
        let e = search_ok(&mut ldap, PEOPLE, Scope::Subtree, &format!("(uid={login})"), &["uid"]).await;
        assert!(e.is_empty(), "{login} is not served: {e:?}");
    }
    let company = search_ok(&mut ldap, &group_dn("company"), Scope::Base, "(objectClass=*)", &["member"]).await;
    assert!(
        !attr(&company[0], "member").iter().any(|m| norm_dn(m) == norm_dn(&user_dn("foreman_admin"))),
        "a hidden member is not published"
    );
    let before = sim.count("GET /current_user");
    for (login, pw) in [("admin", ADMIN_PASSWORD), ("foreman_admin", "hidden-1"), ("foreman_api_admin", "hidden-1")] {
        let mut c = connect(&url).await;
        let res = try_bind(&mut c, &user_dn(login), pw).await;
        assert_eq!(res.rc, 49, "{login} cannot bind: {res}");
    }
    assert_eq!(sim.count("GET /current_user"), before, "no password of a hidden account is checked at Foreman");
    // A published user still binds.
    let mut c = connect(&url).await;
    assert_eq!(try_bind(&mut c, &user_dn("jdoe"), support::foreman_sim::JDOE_PASSWORD).await.rc, 0);
    assert_eq!(sim.count("GET /current_user"), before + 1, "a published user's password is checked at Foreman");

    let scim = Scim::new(r.http_addr);
    for login in ["admin", "foreman_admin"] {
        let found = scim.filter("Users", &format!("userName eq \"{login}\"")).await;
        assert_eq!(found.status, 200, "{found}");
        assert_eq!(found.total(), 0, "{login}: {found}");
    }
    assert_eq!(scim.get("/Users/4").await.status, 404, "the gateway's own account (id 4)");
    assert_eq!(scim.get("/Users/1").await.status, 404, "foreman_admin (id 1)");
}
