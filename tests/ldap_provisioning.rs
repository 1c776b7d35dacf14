//! Provisioning fidelity over LDAP, against the demo gateway: nested groups (member, memberOf, the
//! in-chain rule, nested writes), managers, custom attributes (schema, values, filters, writes),
//! primary groups (shared and private), binds by an identity provider's user name, and hidden
//! accounts. Clients' queries (the acceptance script, SSSD, Nextcloud, Keycloak) are replayed as
//! they send them.

mod common;
mod support;

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use common::scim::{ENTERPRISE_URN, Scim};
use common::tools::{args, code, ldif_values, run, stdout};
use common::*;
use idgate::backend::Backend;
use idgate::backend::memory::MemoryBackend;
use idgate::config::{AttributeSyntax, Config, CustomAttribute, MemberOf};
use idgate::directory::{Caller, UserSpec};
use idgate::model::{Group, NewUser, User};
use ldap3::{Ldap, LdapResult, Mod, Scope};
use serde_json::json;
use support::dolibarr_sim::{DolibarrSim, Version};

const BASE: &str = "dc=example,dc=com";
const READER_DN: &str = "cn=reader,ou=services,dc=example,dc=com";
const READER_PW: &str = "demo-reader";
const IN_CHAIN: &str = "1.2.840.113556.1.4.1941";

fn set(vals: &[&str]) -> HashSet<String> {
    vals.iter().map(|v| v.to_string()).collect()
}

fn replace(a: &str, v: &[&str]) -> Mod<String> {
    Mod::Replace(a.to_string(), set(v))
}

fn add_val(a: &str, v: &[&str]) -> Mod<String> {
    Mod::Add(a.to_string(), set(v))
}

fn del_val(a: &str, v: &[&str]) -> Mod<String> {
    Mod::Delete(a.to_string(), set(v))
}

async fn modify(l: &mut Ldap, dn: &str, mods: Vec<Mod<String>>) -> LdapResult {
    l.with_timeout(WAIT).modify(dn, mods).await.expect("modify answered")
}

async fn add(l: &mut Ldap, dn: &str, attrs: &[(&str, &[&str])]) -> LdapResult {
    let attrs: Vec<(String, HashSet<String>)> = attrs.iter().map(|(a, v)| (a.to_string(), set(v))).collect();
    l.with_timeout(WAIT).add(dn, attrs).await.expect("add answered")
}

async fn bind_rc(url: &str, dn: &str, pw: &str) -> u32 {
    let mut l = connect(url).await;
    let rc = try_bind(&mut l, dn, pw).await.rc;
    let _ = l.unbind().await;
    rc
}

/// Normalised DNs of the entries a search finds.
async fn dns(l: &mut Ldap, base: &str, filter: &str) -> BTreeSet<String> {
    search_ok(l, base, Scope::Subtree, filter, &["1.1"]).await.iter().map(|e| norm_dn(&e.dn)).collect()
}

/// Normalised values of a DN-valued attribute of one entry.
async fn dn_values(l: &mut Ldap, dn: &str, attr_name: &str) -> BTreeSet<String> {
    let e = search_ok(l, dn, Scope::Base, "(objectClass=*)", &[attr_name]).await;
    assert_eq!(e.len(), 1, "{dn}");
    attr(&e[0], attr_name).iter().map(|v| norm_dn(v)).collect()
}

async fn values(l: &mut Ldap, dn: &str, attr_name: &str) -> Vec<String> {
    let e = search_ok(l, dn, Scope::Base, "(objectClass=*)", &[attr_name]).await;
    assert_eq!(e.len(), 1, "{dn}");
    attr(&e[0], attr_name)
}

fn u(login: &str) -> String {
    norm_dn(&user_dn(login))
}

fn g(name: &str) -> String {
    norm_dn(&group_dn(name))
}

fn names(v: &[String]) -> BTreeSet<String> {
    v.iter().cloned().collect()
}

async fn backend_user(b: &MemoryBackend, login: &str) -> User {
    b.find_user_by_login(login).await.expect("backend answers").unwrap_or_else(|| panic!("backend has {login}"))
}

async fn backend_group(b: &MemoryBackend, name: &str) -> Group {
    let groups = b.list_groups().await.expect("backend answers");
    groups.into_iter().find(|x| x.name == name).unwrap_or_else(|| panic!("backend has group {name}"))
}

/// Names of a backend group's member groups.
async fn backend_member_groups(b: &MemoryBackend, name: &str) -> BTreeSet<String> {
    let groups = b.list_groups().await.expect("backend answers");
    let group = groups.iter().find(|x| x.name == name).unwrap_or_else(|| panic!("backend has group {name}"));
    group.member_groups.iter().filter_map(|id| groups.iter().find(|x| x.id == *id)).map(|x| x.name.clone()).collect()
}

/// Everyone in the demo's developers group (which engineering contains), and dave.
fn engineering_people() -> BTreeSet<String> {
    ["alice", "bob", "carol", "ivan", "olivia", "zoe", "grace", "dave"].iter().map(|l| u(l)).collect()
}

// ---- The acceptance script's queries ----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acceptance_queries_over_ldap() {
    let demo = start_demo_full().await;
    let mut r = bind(&demo.url, READER_DN, READER_PW).await;
    let people = "ou=people,dc=example,dc=com";

    // bob is in developers, which engineering contains: memberOf lists both, and staff.
    let bob_groups = dn_values(&mut r, &user_dn("bob"), "memberOf").await;
    assert!(bob_groups.contains(&g("engineering")) && bob_groups.contains(&g("developers")), "{bob_groups:?}");
    assert!(!bob_groups.contains(&g("sales")), "{bob_groups:?}");

    // In-chain on engineering: its direct user, and developers' users; not everyone.
    let chain = dns(&mut r, people, &format!("(memberOf:{IN_CHAIN}:={})", group_dn("engineering"))).await;
    assert_eq!(chain, engineering_people());
    let everyone = dns(&mut r, people, "(objectClass=inetOrgPerson)").await;
    assert!(chain.len() < everyone.len());
    // Without the rule, memberOf is transitive too (member_of = "transitive").
    assert_eq!(dns(&mut r, people, &format!("(memberOf={})", group_dn("engineering"))).await, chain);

    // engineering's member lists the developers group's DN, and dave; memberUid users only.
    let members = dn_values(&mut r, &group_dn("engineering"), "member").await;
    assert_eq!(members, BTreeSet::from([g("developers"), u("dave")]));
    assert_eq!(dn_values(&mut r, &group_dn("engineering"), "uniqueMember").await, members);
    assert_eq!(values(&mut r, &group_dn("engineering"), "memberUid").await, vec!["dave"]);
    // The developers group carries memberOf: engineering.
    assert_eq!(dn_values(&mut r, &group_dn("developers"), "memberOf").await, BTreeSet::from([g("engineering")]));
    // member=<group DN> finds the groups that contain it.
    assert_eq!(
        dns(&mut r, BASE, &format!("(member={})", group_dn("developers"))).await,
        BTreeSet::from([g("engineering")])
    );

    // Managers: bob's is alice, filterable.
    assert_eq!(dn_values(&mut r, &user_dn("bob"), "manager").await, BTreeSet::from([u("alice")]));
    assert_eq!(
        dns(&mut r, BASE, &format!("(manager={})", user_dn("alice"))).await,
        BTreeSet::from([u("bob"), u("carol")])
    );
    assert!(dn_values(&mut r, &user_dn("alice"), "manager").await.is_empty());

    // Custom attribute: alice's costCenter, found by equality.
    assert_eq!(values(&mut r, &user_dn("alice"), "costCenter").await, vec!["CC-100"]);
    assert_eq!(dns(&mut r, BASE, "(costCenter=CC-100)").await, BTreeSet::from([u("alice")]));
    assert_eq!(dns(&mut r, BASE, "(costcenter=cc-100)").await, BTreeSet::from([u("alice")]), "caseIgnoreMatch");
    assert_eq!(dns(&mut r, BASE, "(costCenter=CC-*)").await, BTreeSet::from([u("alice"), u("carol")]));
    assert_eq!(dns(&mut r, BASE, "(costCenter=*)").await.len(), 2);

    // The hidden system account: absent, and it cannot bind.
    assert!(dns(&mut r, BASE, "(uid=svc-erp)").await.is_empty());
    assert_eq!(bind_rc(&demo.url, &user_dn("svc-erp"), "svc-erp-demo").await, 49);
    assert_eq!(bind_rc(&demo.url, "svc-erp@example.com", "svc-erp-demo").await, 49);
    assert_eq!(bind_rc(&demo.url, "svc-erp", "svc-erp-demo").await, 49);
    let _ = r.unbind().await;
    demo.running.shutdown().await;
}

/// The acceptance script's own command lines (the provisioning acceptance checks over LDAP).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acceptance_queries_with_openldap_tools() {
    let demo = start_demo_full().await;
    let s = |extra: &[&str]| {
        let mut a = args(&["-x", "-LLL", "-o", "ldif-wrap=no", "-H", &demo.url, "-D", READER_DN, "-w", READER_PW]);
        a.extend(extra.iter().map(|x| x.to_string()));
        a
    };
    let Some(o) = run("ldapsearch", &s(&["-b", &user_dn("bob"), "-s", "base", "(objectClass=*)", "memberOf"])).await
    else {
        return;
    };
    assert_eq!(code(&o), 0);
    assert!(ldif_values(&stdout(&o), "memberOf").iter().any(|v| norm_dn(v) == g("engineering")), "{}", stdout(&o));

    let filter = format!("(memberOf:{IN_CHAIN}:={})", group_dn("engineering"));
    let o = run("ldapsearch", &s(&["-b", "ou=people,dc=example,dc=com", &filter, "1.1"])).await.expect("installed");
    let found: BTreeSet<String> = ldif_values(&stdout(&o), "dn").iter().map(|d| norm_dn(d)).collect();
    assert_eq!(found, engineering_people());

    let o = run("ldapsearch", &s(&["-b", &group_dn("engineering"), "-s", "base", "(objectClass=*)", "member"]))
        .await
        .expect("installed");
    assert!(ldif_values(&stdout(&o), "member").iter().any(|v| norm_dn(v) == g("developers")), "{}", stdout(&o));

    let o = run("ldapsearch", &s(&["-b", &user_dn("bob"), "-s", "base", "(objectClass=*)", "manager"]))
        .await
        .expect("installed");
    assert_eq!(ldif_values(&stdout(&o), "manager").iter().map(|v| norm_dn(v)).collect::<Vec<_>>(), vec![u("alice")]);

    let o = run("ldapsearch", &s(&["-b", BASE, "(costCenter=CC-100)", "1.1"])).await.expect("installed");
    assert_eq!(ldif_values(&stdout(&o), "dn").iter().map(|v| norm_dn(v)).collect::<Vec<_>>(), vec![u("alice")]);

    let o = run("ldapsearch", &s(&["-b", BASE, "(uid=svc-erp)", "1.1"])).await.expect("installed");
    assert_eq!(code(&o), 0);
    assert!(ldif_values(&stdout(&o), "dn").is_empty());
    let o = run("ldapwhoami", &args(&["-x", "-H", &demo.url, "-D", &user_dn("svc-erp"), "-w", "svc-erp-demo"]))
        .await
        .expect("installed");
    assert_eq!(code(&o), 49, "invalidCredentials");
    demo.running.shutdown().await;
}

// ---- Clients' nested-group queries ------------------------------------------------------------

/// SSSD (ldap_schema = rfc2307bis and rfc2307), Nextcloud user_ldap and Keycloak's group mapper, as
/// the clients' documented query sequences.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sssd_nextcloud_and_keycloak_nested_queries() {
    let demo = start_demo_full().await;
    let mut r = bind(&demo.url, READER_DN, READER_PW).await;
    let groups = "ou=groups,dc=example,dc=com";
    let people = "ou=people,dc=example,dc=com";
    let posix = "(objectClass=posixGroup)(cn=*)";

    // SSSD rfc2307bis initgroups(bob): the groups listing bob, then each group's own parents
    // (per-group lookups, up to ldap_group_nesting_level).
    let direct = dns(&mut r, groups, &format!("(&(member={}){posix})", user_dn("bob"))).await;
    assert_eq!(direct, BTreeSet::from([g("developers"), g("staff"), g("nextcloud_users")]));
    let parents = dns(&mut r, groups, &format!("(&(member={}){posix})", group_dn("developers"))).await;
    assert_eq!(parents, BTreeSet::from([g("engineering")]));
    assert!(dns(&mut r, groups, &format!("(&(member={}){posix})", group_dn("engineering"))).await.is_empty());
    // SSSD getgrnam(engineering), rfc2307bis attributes: member holds the nested group's DN.
    let e = search_ok(
        &mut r,
        groups,
        Scope::Subtree,
        "(&(cn=engineering)(objectClass=posixGroup)(cn=*)(&(gidNumber=*)(!(gidNumber=0))))",
        &["objectClass", "cn", "userPassword", "gidNumber", "member", "modifyTimestamp"],
    )
    .await;
    assert_eq!(e.len(), 1);
    assert!(attr(&e[0], "member").iter().any(|m| norm_dn(m) == g("developers")));
    assert!(!has_attr(&e[0], "userPassword"));
    // SSSD rfc2307 initgroups(bob): memberUid holds users only (direct groups), plus the primary group.
    let by_uid =
        dns(&mut r, groups, "(&(memberuid=bob)(objectClass=posixGroup)(cn=*)(&(gidNumber=*)(!(gidNumber=0))))").await;
    assert_eq!(by_uid, BTreeSet::from([g("developers"), g("staff"), g("nextcloud_users"), g("users")]));

    // Nextcloud: login filter on a group bob is in only through nesting (memberOf is transitive).
    let login = format!("(&(&(objectclass=person)(memberOf={}))(uid=bob))", group_dn("engineering"));
    assert_eq!(dns(&mut r, people, &login).await, BTreeSet::from([u("bob")]));
    // Nextcloud: memberOf read of the user entry, for group membership detection.
    let e = search_ok(&mut r, &user_dn("bob"), Scope::Base, "objectClass=*", &["memberof"]).await;
    assert!(attr(&e[0], "memberOf").iter().any(|m| norm_dn(m) == g("engineering")));
    // Nextcloud with nested groups: members of a group through the in-chain rule, paged.
    let filter = format!("(&(objectclass=inetOrgPerson)(memberof:{IN_CHAIN}:={}))", group_dn("engineering"));
    let paged = paged_search(&mut r, 3, false, people, Scope::Subtree, &filter, &["dn", "uid", "entryuuid"]).await;
    assert_eq!(paged.entries.iter().map(|e| norm_dn(&e.dn)).collect::<BTreeSet<_>>(), engineering_people());
    // Nextcloud's group association (member attribute), groups of bob.
    let assoc = dns(&mut r, groups, &format!("(&(objectClass=groupOfNames)(member={}))", user_dn("bob"))).await;
    assert_eq!(assoc, direct);

    // Keycloak's recursive group mapper (AD style): every group bob is in at any depth.
    let rec =
        dns(&mut r, groups, &format!("(&(member:{IN_CHAIN}:={})(objectclass=groupOfNames))", user_dn("bob"))).await;
    assert_eq!(rec, BTreeSet::from([g("developers"), g("staff"), g("nextcloud_users"), g("engineering")]));
    // Groups within engineering at any depth, through memberOf in-chain on groups.
    let inner = dns(&mut r, groups, &format!("(memberOf:{IN_CHAIN}:={})", group_dn("engineering"))).await;
    assert_eq!(inner, BTreeSet::from([g("developers")]));
    // An in-chain assertion on a DN that is no group matches nothing, and is no error.
    assert!(dns(&mut r, people, &format!("(memberOf:{IN_CHAIN}:=cn=nosuch,{groups})")).await.is_empty());
    assert!(dns(&mut r, people, &format!("(memberOf:{IN_CHAIN}:=not a dn)")).await.is_empty());
    let _ = r.unbind().await;
    demo.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_member_of_keeps_in_chain_transitive() {
    let demo = start_demo_with(|c| c.directory.member_of = MemberOf::Direct).await;
    let mut r = bind(&demo.url, READER_DN, READER_PW).await;
    let bob_groups = dn_values(&mut r, &user_dn("bob"), "memberOf").await;
    assert!(bob_groups.contains(&g("developers")) && !bob_groups.contains(&g("engineering")), "{bob_groups:?}");
    let people = "ou=people,dc=example,dc=com";
    assert_eq!(
        dns(&mut r, people, &format!("(memberOf={})", group_dn("engineering"))).await,
        BTreeSet::from([u("dave")]),
        "equality follows what memberOf lists"
    );
    let chain = dns(&mut r, people, &format!("(memberOf:{IN_CHAIN}:={})", group_dn("engineering"))).await;
    assert_eq!(chain, engineering_people(), "the in-chain rule still walks the nesting");
    let _ = r.unbind().await;
    demo.running.shutdown().await;
}

// ---- Nested group writes ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_group_writes_and_hostile_ones() {
    let demo = start_demo_full().await;
    let b = demo.backend.clone();
    let mut a = bind(&demo.url, ADMIN_DN, ADMIN_PW).await;
    let eng = group_dn("engineering");

    // Add a group as a member: backend and LDAP agree; niaj (sales) is now inside engineering.
    let rc = modify(&mut a, &eng, vec![add_val("member", &[&group_dn("sales")])]).await;
    assert_eq!(rc.rc, 0, "{rc}");
    assert_eq!(backend_member_groups(&b, "engineering").await, names(&["developers".into(), "sales".into()]));
    assert!(dn_values(&mut a, &user_dn("niaj"), "memberOf").await.contains(&g("engineering")));
    assert_eq!(dn_values(&mut a, &eng, "member").await, BTreeSet::from([g("developers"), g("sales"), u("dave")]));
    // uniqueMember speaks of the same members.
    let rc = modify(&mut a, &eng, vec![del_val("uniqueMember", &[&group_dn("sales")])]).await;
    assert_eq!(rc.rc, 0, "{rc}");
    assert_eq!(backend_member_groups(&b, "engineering").await, names(&["developers".into()]));
    // Adding one that is there already, deleting one that is not.
    let rc = modify(&mut a, &eng, vec![add_val("member", &[&group_dn("developers")])]).await;
    assert_eq!(rc.rc, 20, "attributeOrValueExists: {rc}");
    let rc = modify(&mut a, &eng, vec![del_val("member", &[&group_dn("admins")])]).await;
    assert_eq!(rc.rc, 16, "noSuchAttribute: {rc}");

    // A cycle: developers inside engineering, and now engineering inside developers. Refused, and
    // nothing changed, in LDAP or in the backend.
    let rc = modify(&mut a, &group_dn("developers"), vec![add_val("member", &[&eng])]).await;
    assert_eq!(rc.rc, 19, "constraintViolation: {rc}");
    assert!(rc.text.contains("cycle"), "{rc}");
    assert!(backend_member_groups(&b, "developers").await.is_empty());
    assert!(dn_values(&mut a, &group_dn("developers"), "member").await.iter().all(|m| m.starts_with("uid=")));
    // A group inside itself.
    let rc = modify(&mut a, &eng, vec![add_val("member", &[&eng])]).await;
    assert_eq!(rc.rc, 19, "{rc}");
    // A longer cycle, with a user change in the same request: nothing of it is applied.
    let rc = modify(
        &mut a,
        &group_dn("developers"),
        vec![add_val("member", &[&user_dn("dave")]), add_val("member", &[&group_dn("sales")])],
    )
    .await;
    assert_eq!(rc.rc, 0, "{rc}");
    let rc =
        modify(&mut a, &group_dn("sales"), vec![add_val("member", &[&user_dn("erin")]), add_val("member", &[&eng])])
            .await;
    assert_eq!(rc.rc, 19, "sales ⊂ developers ⊂ engineering: {rc}");
    assert!(!dn_values(&mut a, &group_dn("sales"), "member").await.contains(&u("erin")), "nothing applied");
    assert!(backend_group(&b, "sales").await.member_groups.is_empty());

    // A DN outside the tree is ignored (Keycloak's placeholder); a DN in the tree that is no
    // user or group, or a group that does not exist, is refused; a value that is no DN is bad syntax.
    let before = dn_values(&mut a, &eng, "member").await;
    let rc = modify(&mut a, &eng, vec![add_val("member", &["cn=empty-membership-placeholder"])]).await;
    assert_eq!(rc.rc, 0, "{rc}");
    assert_eq!(dn_values(&mut a, &eng, "member").await, before);
    let rc = modify(&mut a, &eng, vec![add_val("member", &["cn=reader,ou=services,dc=example,dc=com"])]).await;
    assert_eq!(rc.rc, 19, "{rc}");
    let rc = modify(&mut a, &eng, vec![add_val("member", &[&group_dn("nosuch")])]).await;
    assert_eq!(rc.rc, 19, "{rc}");
    assert!(rc.text.contains("no group"), "{rc}");
    let rc = modify(&mut a, &eng, vec![add_val("member", &["not a DN"])]).await;
    assert_eq!(rc.rc, 21, "invalidAttributeSyntax: {rc}");
    // member and uniqueMember in one request must agree on groups too.
    let rc = modify(
        &mut a,
        &eng,
        vec![add_val("member", &[&group_dn("admins")]), add_val("uniqueMember", &[&group_dn("staff")])],
    )
    .await;
    assert_eq!(rc.rc, 19, "{rc}");
    assert_eq!(dn_values(&mut a, &eng, "member").await, before);

    // Replace with users only drops the member groups; memberUid edits leave them alone.
    let rc = modify(&mut a, &eng, vec![add_val("member", &[&group_dn("admins")])]).await;
    assert_eq!(rc.rc, 0, "{rc}");
    let rc = modify(&mut a, &eng, vec![add_val("memberUid", &["erin"])]).await;
    assert_eq!(rc.rc, 0, "{rc}");
    assert_eq!(backend_member_groups(&b, "engineering").await, names(&["admins".into(), "developers".into()]));
    let rc = modify(&mut a, &eng, vec![replace("member", &[&user_dn("dave")])]).await;
    assert_eq!(rc.rc, 0, "{rc}");
    assert!(backend_member_groups(&b, "engineering").await.is_empty());
    assert_eq!(dn_values(&mut a, &eng, "member").await, BTreeSet::from([u("dave")]));
    assert!(!dn_values(&mut a, &user_dn("bob"), "memberOf").await.contains(&g("engineering")));

    // LDAP add of a group with a group among its members.
    let rc = add(
        &mut a,
        &group_dn("platform"),
        &[("objectClass", &["groupOfNames"]), ("cn", &["platform"]), ("member", &[&user_dn("erin"), &eng])],
    )
    .await;
    assert_eq!(rc.rc, 0, "{rc}");
    assert_eq!(backend_member_groups(&b, "platform").await, names(&["engineering".into()]));
    assert!(dn_values(&mut a, &user_dn("dave"), "memberOf").await.contains(&g("platform")));
    let _ = a.unbind().await;
    demo.running.shutdown().await;
}

/// Many clients at once adding and removing member groups of one group, and values of one user's
/// custom attribute: every change lands, none is lost, LDAP and the backend agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_nested_membership_and_custom_values() {
    let demo = start_demo_with(|c| c.directory.attributes.push(attribute("tags", AttributeSyntax::String, true))).await;
    let b = demo.backend.clone();
    let url = demo.url.clone();
    let mut a = bind(&url, ADMIN_DN, ADMIN_PW).await;
    const N: usize = 12;
    for i in 0..N {
        let rc = add(
            &mut a,
            &group_dn(&format!("team{i}")),
            &[("objectClass", &["groupOfNames"]), ("cn", &[&format!("team{i}")])],
        )
        .await;
        assert_eq!(rc.rc, 0, "{rc}");
    }
    let mut tasks = Vec::new();
    for i in 0..N {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut l = bind(&url, ADMIN_DN, ADMIN_PW).await;
            let eng = group_dn("engineering");
            let team = group_dn(&format!("team{i}"));
            let rc = modify(&mut l, &eng, vec![add_val("member", &[&team])]).await;
            assert_eq!(rc.rc, 0, "team{i}: {rc}");
            let rc = modify(&mut l, &user_dn("alice"), vec![add_val("tags", &[&format!("tag-{i}")])]).await;
            assert_eq!(rc.rc, 0, "tag-{i}: {rc}");
            if i % 3 == 0 {
                let rc = modify(&mut l, &eng, vec![del_val("uniqueMember", &[&team])]).await;
                assert_eq!(rc.rc, 0, "team{i} out: {rc}");
                let rc = modify(&mut l, &user_dn("alice"), vec![del_val("tags", &[&format!("TAG-{i}")])]).await;
                assert_eq!(rc.rc, 0, "tag-{i} out: {rc}");
            }
            let _ = l.unbind().await;
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    let kept: Vec<usize> = (0..N).filter(|i| i % 3 != 0).collect();
    let mut want: BTreeSet<String> = kept.iter().map(|i| format!("team{i}")).collect();
    want.insert("developers".into());
    assert_eq!(backend_member_groups(&b, "engineering").await, want);
    let mut want_dns: BTreeSet<String> = want.iter().map(|n| g(n)).collect();
    want_dns.insert(u("dave"));
    assert_eq!(dn_values(&mut a, &group_dn("engineering"), "member").await, want_dns);
    let want_tags: BTreeSet<String> = kept.iter().map(|i| format!("tag-{i}")).collect();
    let backend_tags: BTreeSet<String> =
        backend_user(&b, "alice").await.custom.get("tags").cloned().unwrap_or_default().into_iter().collect();
    assert_eq!(backend_tags, want_tags);
    assert_eq!(names(&values(&mut a, &user_dn("alice"), "tags").await), want_tags);
    // The directory's own view agrees with the backend's.
    let dir = demo.directory();
    let snap = dir.snapshot().expect("snapshot");
    let eng = snap.group_index_by_name("engineering").expect("engineering");
    assert_eq!(snap.child_groups_of(eng).len(), kept.len() + 1);
    let _ = a.unbind().await;
    demo.running.shutdown().await;
}

/// LDAP and SCIM clients nest and un-nest groups in one parent at the same time: nothing is lost,
/// and LDAP, SCIM and the backend agree at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_ldap_and_scim_clients_nest_groups_concurrently() {
    let demo = start_demo_with(|_| {}).await;
    let b = demo.backend.clone();
    let url = demo.url.clone();
    let addr = demo.running.http_addr;
    let s = Scim::new(addr);
    let mut a = bind(&url, ADMIN_DN, ADMIN_PW).await;
    const N: usize = 16;
    let mut ids = Vec::new();
    for i in 0..N {
        let r = s.post("/Groups", json!({"displayName": format!("mix{i}")})).await;
        assert_eq!(r.status, 201, "{r}");
        ids.push(r.id());
    }
    let eng_id = common::scim::group_named(&s, "engineering").await["id"].as_str().expect("id").to_string();
    let ids = Arc::new(ids);
    let mut tasks = Vec::new();
    for i in 0..N {
        let (url, ids, eng_id) = (url.clone(), ids.clone(), eng_id.clone());
        tasks.push(tokio::spawn(async move {
            let remove = i % 4 == 0;
            if i % 2 == 0 {
                let mut l = bind(&url, ADMIN_DN, ADMIN_PW).await;
                let (eng, child) = (group_dn("engineering"), group_dn(&format!("mix{i}")));
                let rc = modify(&mut l, &eng, vec![add_val("member", &[&child])]).await;
                assert_eq!(rc.rc, 0, "LDAP add mix{i}: {rc}");
                if remove {
                    let rc = modify(&mut l, &eng, vec![del_val("member", &[&child])]).await;
                    assert_eq!(rc.rc, 0, "LDAP remove mix{i}: {rc}");
                }
                let _ = l.unbind().await;
            } else {
                let c = Scim::new(addr);
                let add = json!([{"op": "add", "path": "members", "value": [{"value": ids[i], "type": "Group"}]}]);
                let r = c.patch(&format!("/Groups/{eng_id}"), add).await;
                assert_eq!(r.status, 200, "SCIM add mix{i}: {r}");
                if i % 4 == 1 {
                    let rm = json!([{"op": "remove", "path": format!("members[value eq \"{}\"]", ids[i])}]);
                    let r = c.patch(&format!("/Groups/{eng_id}"), rm).await;
                    assert_eq!(r.status, 200, "SCIM remove mix{i}: {r}");
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    let kept: Vec<usize> = (0..N).filter(|i| i % 4 != 0 && i % 4 != 1).collect();
    let mut want: BTreeSet<String> = kept.iter().map(|i| format!("mix{i}")).collect();
    want.insert("developers".into());
    assert_eq!(backend_member_groups(&b, "engineering").await, want, "backend");
    let mut want_dns: BTreeSet<String> = want.iter().map(|n| g(n)).collect();
    want_dns.insert(u("dave"));
    assert_eq!(dn_values(&mut a, &group_dn("engineering"), "member").await, want_dns, "LDAP");
    let scim_members = common::scim::member_ids(&s.get(&format!("/Groups/{eng_id}")).await.body);
    let mut want_ids: BTreeSet<String> = kept.iter().map(|i| ids[*i].clone()).collect();
    want_ids.insert(common::scim::group_named(&s, "developers").await["id"].as_str().expect("id").to_string());
    want_ids.insert(common::scim::user_named(&s, "dave").await["id"].as_str().expect("id").to_string());
    assert_eq!(scim_members, want_ids, "SCIM");
    let _ = a.unbind().await;
    demo.running.shutdown().await;
}

// ---- Managers ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_writes_and_hostile_values() {
    let demo = start_demo_full().await;
    let b = demo.backend.clone();
    let mut a = bind(&demo.url, ADMIN_DN, ADMIN_PW).await;
    let dave = user_dn("dave");
    let carol_id = backend_user(&b, "carol").await.id;

    let rc = modify(&mut a, &dave, vec![replace("manager", &[&user_dn("carol")])]).await;
    assert_eq!(rc.rc, 0, "{rc}");
    assert_eq!(backend_user(&b, "dave").await.manager, Some(carol_id));
    assert_eq!(dn_values(&mut a, &dave, "manager").await, BTreeSet::from([u("carol")]));
    assert_eq!(dns(&mut a, BASE, &format!("(manager={})", user_dn("carol"))).await, BTreeSet::from([u("dave")]));
    // A second value: single-valued in this directory.
    let rc = modify(&mut a, &dave, vec![add_val("manager", &[&user_dn("erin")])]).await;
    assert_eq!(rc.rc, 20, "{rc}");
    // Not a user: a group, a service account, a DN outside the tree, a missing user, no DN at all.
    for (v, code) in [
        (group_dn("sales"), 19),
        ("cn=admin,ou=services,dc=example,dc=com".to_string(), 19),
        ("uid=carol,ou=people,dc=other,dc=org".to_string(), 19),
        (user_dn("nobody"), 19),
        ("carol".to_string(), 21),
    ] {
        let rc = modify(&mut a, &dave, vec![replace("manager", &[&v])]).await;
        assert_eq!(rc.rc, code, "{v}: {rc}");
        assert!(rc.text.contains("manager"), "{rc}");
    }
    // Oneself.
    let rc = modify(&mut a, &dave, vec![replace("manager", &[&dave])]).await;
    assert_eq!(rc.rc, 19, "{rc}");
    assert_eq!(dn_values(&mut a, &dave, "manager").await, BTreeSet::from([u("carol")]), "unchanged");
    // Delete of another value, then of the right one; replace with nothing clears too.
    let rc = modify(&mut a, &dave, vec![del_val("manager", &[&user_dn("alice")])]).await;
    assert_eq!(rc.rc, 16, "{rc}");
    let rc = modify(&mut a, &dave, vec![del_val("manager", &[&user_dn("carol")])]).await;
    assert_eq!(rc.rc, 0, "{rc}");
    assert_eq!(backend_user(&b, "dave").await.manager, None);
    assert!(dn_values(&mut a, &dave, "manager").await.is_empty());
    let rc = modify(&mut a, &user_dn("bob"), vec![Mod::Replace("manager".into(), HashSet::new())]).await;
    assert_eq!(rc.rc, 0, "{rc}");
    assert_eq!(backend_user(&b, "bob").await.manager, None);

    // LDAP add with a manager.
    let rc = add(
        &mut a,
        &user_dn("newbie"),
        &[
            ("objectClass", &["inetOrgPerson"]),
            ("cn", &["New Bie"]),
            ("sn", &["Bie"]),
            ("manager", &[&user_dn("alice")]),
        ],
    )
    .await;
    assert_eq!(rc.rc, 0, "{rc}");
    assert_eq!(backend_user(&b, "newbie").await.manager, Some(backend_user(&b, "alice").await.id));
    assert_eq!(dn_values(&mut a, &user_dn("newbie"), "manager").await, BTreeSet::from([u("alice")]));
    let _ = a.unbind().await;
    demo.running.shutdown().await;
}

// ---- Custom attributes ------------------------------------------------------------------------

fn attribute(name: &str, syntax: AttributeSyntax, multi: bool) -> CustomAttribute {
    CustomAttribute {
        name: name.into(),
        field: name.to_lowercase(),
        scim_name: None,
        syntax,
        multi,
        separator: ",".into(),
        writable: true,
        indexed: true,
    }
}

fn with_typed_attributes(c: &mut Config) {
    c.directory.attributes.push(attribute("level", AttributeSyntax::Integer, false));
    c.directory.attributes.push(attribute("remote", AttributeSyntax::Boolean, false));
    c.directory.attributes.push(CustomAttribute { indexed: false, ..attribute("hired", AttributeSyntax::Date, false) });
    c.directory.attributes.push(attribute("tags", AttributeSyntax::String, true));
    c.directory
        .attributes
        .push(CustomAttribute { writable: false, ..attribute("badge", AttributeSyntax::String, false) });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_attributes_in_the_schema_and_on_users() {
    let demo = start_demo_with(with_typed_attributes).await;
    let mut r = bind(&demo.url, READER_DN, READER_PW).await;
    let e =
        search_ok(&mut r, "cn=schema", Scope::Base, "(objectClass=subschema)", &["attributeTypes", "objectClasses"])
            .await;
    let types = attr(&e[0], "attributeTypes");
    let type_of = |name: &str| {
        types
            .iter()
            .find(|t| t.contains(&format!("NAME '{name}'")))
            .unwrap_or_else(|| panic!("{name} in the schema"))
            .clone()
    };
    let cc = type_of("costCenter");
    assert!(cc.starts_with("( 2.25."), "{cc}");
    assert!(cc.contains("SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE"), "{cc}");
    assert!(
        type_of("level")
            .contains("EQUALITY integerMatch ORDERING integerOrderingMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27")
    );
    assert!(type_of("remote").contains("EQUALITY booleanMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.7"));
    assert!(type_of("hired").contains(
        "EQUALITY generalizedTimeMatch ORDERING generalizedTimeOrderingMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.24"
    ));
    assert!(!type_of("tags").contains("SINGLE-VALUE"));
    assert!(type_of("manager").contains("0.9.2342.19200300.100.1.10"));
    let class = attr(&e[0], "objectClasses").into_iter().find(|c| c.contains("'idgateUser'")).expect("idgateUser");
    assert!(class.contains("AUXILIARY MAY ( costCenter $ level $ remote $ hired $ tags $ badge )"), "{class}");
    // The OIDs are the same on every start.
    let again = start_demo_with(with_typed_attributes).await;
    let mut r2 = bind(&again.url, READER_DN, READER_PW).await;
    let e2 = search_ok(&mut r2, "cn=schema", Scope::Base, "(objectClass=*)", &["attributeTypes"]).await;
    assert!(attr(&e2[0], "attributeTypes").contains(&cc));
    again.running.shutdown().await;
    // Users carry the class; the attribute is known by name and by OID.
    assert!(values(&mut r, &user_dn("bob"), "objectClass").await.iter().any(|c| c == "idgateUser"));
    assert_eq!(dns(&mut r, BASE, "(objectClass=idgateUser)").await.len(), 21);
    let oid = cc.split_whitespace().nth(1).expect("oid").to_string();
    let e = search_ok(&mut r, &user_dn("alice"), Scope::Base, "(objectClass=*)", &[&oid]).await;
    assert_eq!(attr(&e[0], "costCenter"), vec!["CC-100"], "asked for by OID");
    assert_eq!(dns(&mut r, BASE, &format!("({oid}=cc-100)")).await, BTreeSet::from([u("alice")]));
    let _ = r.unbind().await;
    demo.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_attribute_writes_filters_and_bad_values() {
    let demo = start_demo_with(with_typed_attributes).await;
    let b = demo.backend.clone();
    let mut a = bind(&demo.url, ADMIN_DN, ADMIN_PW).await;
    let bob = user_dn("bob");
    let rc = modify(
        &mut a,
        &bob,
        vec![
            replace("level", &["+42"]),
            replace("remote", &["true"]),
            replace("hired", &["20240229123456Z"]),
            add_val("tags", &["on call", "mentor"]),
            replace("costCenter", &["CC-300"]),
        ],
    )
    .await;
    assert_eq!(rc.rc, 0, "{rc}");
    // Canonical in the backend, LDAP forms on the entry.
    let custom = backend_user(&b, "bob").await.custom;
    assert_eq!(custom.get("level"), Some(&vec!["42".to_string()]));
    assert_eq!(custom.get("remote"), Some(&vec!["true".to_string()]));
    assert_eq!(custom.get("hired"), Some(&vec!["1709210096".to_string()]));
    assert_eq!(custom.get("costCenter"), Some(&vec!["CC-300".to_string()]));
    assert_eq!(names(custom.get("tags").expect("tags")), names(&["on call".into(), "mentor".into()]));
    assert_eq!(values(&mut a, &bob, "level").await, vec!["42"]);
    assert_eq!(values(&mut a, &bob, "remote").await, vec!["TRUE"]);
    assert_eq!(values(&mut a, &bob, "hired").await, vec!["20240229123456Z"]);
    // Filters with each syntax's rules.
    let only_bob = BTreeSet::from([u("bob")]);
    assert_eq!(dns(&mut a, BASE, "(level=042)").await, only_bob);
    assert_eq!(dns(&mut a, BASE, "(level>=40)").await, only_bob);
    assert!(dns(&mut a, BASE, "(level<=41)").await.is_empty());
    assert_eq!(dns(&mut a, BASE, "(remote=TRUE)").await, only_bob);
    assert!(dns(&mut a, BASE, "(remote=FALSE)").await.is_empty());
    assert_eq!(dns(&mut a, BASE, "(hired>=20240101000000Z)").await, only_bob);
    assert_eq!(dns(&mut a, BASE, "(hired=20240229133456+0100)").await, only_bob);
    assert_eq!(dns(&mut a, BASE, "(tags=ON  CALL)").await, only_bob);
    assert_eq!(dns(&mut a, BASE, "(tags=*ento*)").await, only_bob);
    assert_eq!(dns(&mut a, BASE, "(&(objectClass=posixAccount)(costCenter=cc-3*))").await, only_bob);
    assert_eq!(
        dns(&mut a, BASE, "(|(costCenter=CC-300)(costCenter=CC-100))").await,
        BTreeSet::from([u("bob"), u("alice")])
    );

    // Bad values: the entry and the backend are unchanged.
    for (attr_name, v) in [
        ("level", "forty-two"),
        ("level", "4.2"),
        ("remote", "yes"),
        ("hired", "2024-02-29"),
        ("hired", "20241301000000Z"),
    ] {
        let rc = modify(&mut a, &bob, vec![replace(attr_name, &[v])]).await;
        assert_eq!(rc.rc, 21, "{attr_name}={v}: invalidAttributeSyntax: {rc}");
        assert!(rc.text.contains(attr_name), "{rc}");
    }
    let huge = "9".repeat(400);
    let rc = modify(&mut a, &bob, vec![replace("level", &[&huge])]).await;
    assert_eq!(rc.rc, 21, "{rc}");
    let rc = modify(&mut a, &bob, vec![replace("level", &["1", "2"])]).await;
    assert_eq!(rc.rc, 19, "single-valued: {rc}");
    let rc = modify(&mut a, &bob, vec![replace("costCenter", &["CC\u{0}1"])]).await;
    assert_eq!(rc.rc, 21, "control characters: {rc}");
    let rc = modify(&mut a, &bob, vec![replace("badge", &["B-1"])]).await;
    assert_eq!(rc.rc, 50, "read-only: {rc}");
    assert!(rc.text.contains("badge"), "{rc}");
    let rc = modify(&mut a, &bob, vec![replace("noSuchAttribute", &["x"])]).await;
    assert_eq!(rc.rc, 17, "undefinedAttributeType: {rc}");
    assert_eq!(backend_user(&b, "bob").await.custom, custom, "nothing changed");
    // Multi-valued semantics: add an existing value, delete a missing one, delete one, delete all.
    let rc = modify(&mut a, &bob, vec![add_val("tags", &["Mentor"])]).await;
    assert_eq!(rc.rc, 20, "{rc}");
    let rc = modify(&mut a, &bob, vec![del_val("tags", &["nope"])]).await;
    assert_eq!(rc.rc, 16, "{rc}");
    let rc = modify(&mut a, &bob, vec![del_val("tags", &["MENTOR"])]).await;
    assert_eq!(rc.rc, 0, "{rc}");
    assert_eq!(values(&mut a, &bob, "tags").await, vec!["on call"]);
    let rc = modify(&mut a, &bob, vec![Mod::Delete("level".into(), HashSet::new()), replace("tags", &[])]).await;
    assert_eq!(rc.rc, 0, "{rc}");
    let custom = backend_user(&b, "bob").await.custom;
    assert!(!custom.contains_key("level") && !custom.contains_key("tags"), "{custom:?}");
    assert!(dns(&mut a, BASE, "(level=*)").await.is_empty());

    // LDAP add with custom values, including the auxiliary class.
    let rc = add(
        &mut a,
        &user_dn("newbie"),
        &[
            ("objectClass", &["inetOrgPerson", "idgateUser"]),
            ("cn", &["New Bie"]),
            ("sn", &["Bie"]),
            ("costCenter", &["CC-900"]),
            ("remote", &["FALSE"]),
        ],
    )
    .await;
    assert_eq!(rc.rc, 0, "{rc}");
    let custom = backend_user(&b, "newbie").await.custom;
    assert_eq!(custom.get("costCenter"), Some(&vec!["CC-900".to_string()]));
    assert_eq!(custom.get("remote"), Some(&vec!["false".to_string()]));
    assert_eq!(dns(&mut a, BASE, "(costCenter=CC-900)").await, BTreeSet::from([u("newbie")]));
    let rc = add(
        &mut a,
        &user_dn("badnew"),
        &[("objectClass", &["inetOrgPerson"]), ("cn", &["Bad New"]), ("sn", &["New"]), ("level", &["lots"])],
    )
    .await;
    assert_eq!(rc.rc, 21, "{rc}");
    assert!(b.find_user_by_login("badnew").await.expect("backend").is_none());
    let _ = a.unbind().await;
    demo.running.shutdown().await;
}

// ---- Primary groups ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_primary_group() {
    let demo = start_demo_full().await;
    let mut r = bind(&demo.url, READER_DN, READER_PW).await;
    let groups = "ou=groups,dc=example,dc=com";
    // getent group 10000 / getent group users / id alice
    let by_gid =
        search_ok(&mut r, groups, Scope::Subtree, "(&(objectClass=posixGroup)(gidNumber=10000))", &["*"]).await;
    assert_eq!(by_gid.len(), 1);
    assert_eq!(norm_dn(&by_gid[0].dn), g("users"));
    let uids = attr(&by_gid[0], "memberUid");
    assert_eq!(uids.len(), 21, "every user");
    assert!(uids.contains(&"alice".to_string()) && !uids.contains(&"svc-erp".to_string()));
    assert_eq!(dns(&mut r, groups, "(cn=users)").await, BTreeSet::from([g("users")]));
    assert!(dns(&mut r, groups, "(&(objectClass=posixGroup)(memberUid=alice))").await.contains(&g("users")));
    let listed = search_ok(&mut r, groups, Scope::OneLevel, "(objectClass=*)", &["1.1"]).await;
    assert!(listed.iter().any(|e| norm_dn(&e.dn) == g("users")));
    assert_eq!(values(&mut r, &user_dn("alice"), "gidNumber").await, vec!["10000"]);
    // A user bound as itself sees the group it is in.
    let mut alice = bind(&demo.url, &user_dn("alice"), "alice-demo").await;
    assert_eq!(dns(&mut alice, groups, "(gidNumber=10000)").await, BTreeSet::from([g("users")]));
    let _ = alice.unbind().await;
    let _ = r.unbind().await;
    demo.running.shutdown().await;

    // A backend group of that name wins: the synthetic entry is not published.
    let demo = start_demo_with(|c| c.ldap.primary_group = "staff".into()).await;
    let mut r = bind(&demo.url, READER_DN, READER_PW).await;
    let staff = search_ok(&mut r, groups, Scope::Subtree, "(cn=staff)", &["gidNumber", "description"]).await;
    assert_eq!(staff.len(), 1);
    assert_eq!(first(&staff[0], "description"), "Everyone on the payroll");
    assert!(dns(&mut r, groups, "(&(objectClass=posixGroup)(gidNumber=10000))").await.is_empty());
    let _ = r.unbind().await;
    demo.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_primary_groups() {
    let demo = start_demo_with(|c| c.ldap.private_groups = true).await;
    let mut a = bind(&demo.url, ADMIN_DN, ADMIN_PW).await;
    let groups = "ou=groups,dc=example,dc=com";
    let uid_number = values(&mut a, &user_dn("alice"), "uidNumber").await.remove(0);
    assert_eq!(values(&mut a, &user_dn("alice"), "gidNumber").await, vec![uid_number.clone()]);
    let own = search_ok(
        &mut a,
        groups,
        Scope::Subtree,
        &format!("(&(objectClass=posixGroup)(gidNumber={uid_number}))"),
        &["cn", "memberUid", "member"],
    )
    .await;
    assert_eq!(own.len(), 1);
    assert_eq!(norm_dn(&own[0].dn), g("alice"));
    assert_eq!(attr(&own[0], "memberUid"), vec!["alice"]);
    assert_eq!(attr(&own[0], "member").iter().map(|m| norm_dn(m)).collect::<Vec<_>>(), vec![u("alice")]);
    let of_alice = dns(&mut a, groups, "(&(objectClass=posixGroup)(memberUid=alice))").await;
    assert_eq!(of_alice, BTreeSet::from([g("alice"), g("developers"), g("admins"), g("staff"), g("nextcloud_users")]));
    assert!(dns(&mut a, groups, "(cn=users)").await.is_empty(), "no shared group");
    assert!(dns(&mut a, groups, "(gidNumber=10000)").await.is_empty());
    // A backend group named like a user wins over the user's own group.
    let rc = add(
        &mut a,
        &group_dn("dave"),
        &[("objectClass", &["groupOfNames"]), ("cn", &["dave"]), ("description", &["Dave's fans"])],
    )
    .await;
    assert_eq!(rc.rc, 0, "{rc}");
    let daves = search_ok(&mut a, groups, Scope::Subtree, "(cn=dave)", &["description", "memberUid"]).await;
    assert_eq!(daves.len(), 1);
    assert_eq!(first(&daves[0], "description"), "Dave's fans");
    let _ = a.unbind().await;
    demo.running.shutdown().await;
}

// ---- Binds --------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binds_by_an_identity_providers_user_name() {
    let demo = start_demo_full().await;
    // <login>@<bind_domain> still works; unknown names and hidden accounts do not.
    assert_eq!(bind_rc(&demo.url, "alice@example.com", "alice-demo").await, 0);
    assert_eq!(bind_rc(&demo.url, "alice@elsewhere.org", "alice-demo").await, 49);
    assert_eq!(bind_rc(&demo.url, "svc-erp@partner.org", "svc-erp-demo").await, 49);
    // A SCIM client's user name taken as the login as it is binds by that name too.
    let scim = Scim::new(demo.running.http_addr);
    let created = scim
        .post(
            "/Users",
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE_URN],
                "userName": "sam@vendor.example",
                "name": {"givenName": "Sam", "familyName": "Vendor"},
                "password": "Sam-Secret-12",
                "active": true,
            }),
        )
        .await;
    assert_eq!(created.status, 201, "{created}");
    assert_eq!(bind_rc(&demo.url, "sam@vendor.example", "Sam-Secret-12").await, 0);
    // whoami says who it is.
    let mut l = bind(&demo.url, "sam@vendor.example", "Sam-Secret-12").await;
    let who = l.with_timeout(WAIT).extended(ldap3::exop::WhoAmI).await.expect("whoami").0;
    let who: ldap3::exop::WhoAmIResp = who.parse();
    assert_eq!(norm_dn(who.authzid.trim_start_matches("dn:")), norm_dn(&user_dn("sam@vendor.example")));
    let _ = l.unbind().await;
    demo.running.shutdown().await;
}

// ---- A backend without nesting or managers -----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dolibarr_refuses_nesting_and_managers_and_binds_user_names() {
    let sim = Arc::new(DolibarrSim::start(Version::V23).await);
    let text = format!(
        r#"
        [ldap]
        listen = "127.0.0.1:0"
        [[ldap.service_accounts]]
        name = "admin"
        password = "demo-admin"
        access = "write"
        [http]
        listen = "127.0.0.1:0"
        [backend]
        kind = "dolibarr"
        url = "{}"
        api_key = "{}"
        retries = 0
        "#,
        sim.url(),
        sim.admin_key()
    );
    let cfg = Config::parse(&text).expect("config");
    let server = tokio::time::timeout(WAIT, idgate::app::start(cfg)).await.expect("starts in time").expect("starts");
    let url = format!("ldap://{}", server.ldap_addr);
    let mut a = bind(&url, ADMIN_DN, ADMIN_PW).await;
    let rc = modify(&mut a, &group_dn("developers"), vec![add_val("member", &[&group_dn("sales")])]).await;
    assert_eq!(rc.rc, 53, "unwillingToPerform: {rc}");
    assert!(rc.text.contains("dolibarr"), "names the backend: {rc}");
    assert!(dn_values(&mut a, &group_dn("developers"), "member").await.iter().all(|m| m.starts_with("uid=")));
    // Dolibarr stores managers (fk_user): the write lands and reads back as a DN.
    let rc = modify(&mut a, &user_dn("jdoe"), vec![replace("manager", &[&user_dn("reader")])]).await;
    assert_eq!(rc.rc, 0, "{rc}");
    let managers = dn_values(&mut a, &user_dn("jdoe"), "manager").await;
    assert_eq!(managers.len(), 1, "{managers:?}");
    assert!(managers.iter().next().is_some_and(|m| m.to_lowercase().starts_with("uid=reader,")), "{managers:?}");
    // A user an identity provider named jane.doe@partner.org; the backend keeps the local part.
    let spec = UserSpec {
        new: NewUser {
            first_name: "Jane".into(),
            last_name: "Doe".into(),
            email: "jane.doe@partner.org".into(),
            active: true,
            password: Some("Jane-Secret-1".into()),
            ..Default::default()
        },
        user_name: Some("jane.doe@partner.org".into()),
        ..Default::default()
    };
    let created = server.directory.clone().create_user(&Caller::system(), spec).await.expect("created");
    assert_eq!(created.login, "jane.doe", "login from the local part");
    // The user name binds, as does the login and the DN; a wrong password is still 49.
    assert_eq!(bind_rc(&url, "jane.doe@partner.org", "Jane-Secret-1").await, 0);
    assert_eq!(bind_rc(&url, "JANE.DOE@partner.org", "Jane-Secret-1").await, 0);
    assert_eq!(bind_rc(&url, &user_dn("jane.doe"), "Jane-Secret-1").await, 0);
    assert_eq!(bind_rc(&url, "jane.doe@partner.org", "wrong").await, 49);
    // No custom attribute is configured: the name is unknown.
    let rc = modify(&mut a, &user_dn("jdoe"), vec![replace("costCenter", &["CC-1"])]).await;
    assert_eq!(rc.rc, 17, "{rc}");
    let _ = a.unbind().await;
    server.shutdown().await;
}
