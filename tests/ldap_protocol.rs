//! LDAP protocol behaviour through the real protocol, against the demo directory.

mod common;

use std::collections::BTreeSet;

use common::*;
use ldap3::exop::{WhoAmI, WhoAmIResp};
use ldap3::{Ldap, Scope, SearchOptions};
use ldap3_proto::proto::{LdapExtendedRequest, LdapOp, LdapResultCode, LdapSearchScope};

async fn whoami(ldap: &mut Ldap) -> String {
    let (exop, res) =
        ldap.with_timeout(WAIT).extended(WhoAmI).await.expect("whoami answered").success().expect("whoami ok");
    assert_eq!(res.rc, 0);
    exop.parse::<WhoAmIResp>().authzid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binds_and_whoami() {
    let demo = start_demo_full().await;
    let fx = demo.fixture();
    let url = &demo.url;

    // Wrong password, unknown user and disabled user: all 49 with the same message.
    let mut ldap = connect(url).await;
    let wrong = try_bind(&mut ldap, &fx.user_dn, "not-the-password").await;
    assert_eq!(wrong.rc, 49, "{wrong}");
    let unknown = try_bind(&mut ldap, &fx.user_dn_of("nobody-here"), "whatever").await;
    assert_eq!(unknown.rc, 49, "{unknown}");
    assert_eq!(unknown.text, wrong.text, "an unknown user is indistinguishable from a wrong password");
    let disabled = try_bind(&mut ldap, &fx.user_dn_of(&fx.disabled_login), &fx.disabled_password).await;
    assert_eq!(disabled.rc, 49, "{disabled}");
    assert_eq!(disabled.text, wrong.text);
    assert_eq!(whoami(&mut ldap).await, "", "failed binds leave the connection anonymous");

    // The forms of a user's bind name.
    let expect = format!("dn:{}", fx.user_dn);
    for name in [
        fx.user_dn.clone(),
        fx.user_login.clone(),
        format!("{}@example.com", fx.user_login),
        "UID=ALICE, OU=People,DC=example,DC=com".to_string(),
        "uid=alice , ou=people , dc=EXAMPLE , dc=com".to_string(),
    ] {
        let mut ldap = connect(url).await;
        let r = try_bind(&mut ldap, &name, &fx.user_password).await;
        assert_eq!(r.rc, 0, "bind as {name:?}: {r}");
        assert_eq!(norm_dn(&whoami(&mut ldap).await), norm_dn(&expect), "whoami after binding as {name:?}");
    }
    // A foreign domain is not accepted.
    let mut ldap = connect(url).await;
    assert_eq!(try_bind(&mut ldap, "alice@example.org", &fx.user_password).await.rc, 49);
    // The password is case-sensitive.
    assert_eq!(try_bind(&mut ldap, &fx.user_dn, &fx.user_password.to_uppercase()).await.rc, 49);

    // WhoAmI for a service account and for anonymous.
    let mut svc = bind_service(url, &fx).await;
    assert_eq!(norm_dn(&whoami(&mut svc).await), norm_dn(&format!("dn:{}", fx.service_dn)));
    let mut anon = connect(url).await;
    assert_eq!(whoami(&mut anon).await, "");
    // Re-binding anonymously drops the identity.
    assert_eq!(try_bind(&mut svc, "", "").await.rc, 0);
    assert_eq!(whoami(&mut svc).await, "");
    demo.running.shutdown().await;
}

/// ppolicy-aware clients (SSSD with `ldap_access_order = ppolicy`) deny a user whose
/// `pwdAccountLockedTime` is set only when the policy entry they read says `pwdLockout: TRUE`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_policy_entry_marks_disabled_users_as_locked() {
    let demo = start_demo_full().await;
    let fx = demo.fixture();
    let mut svc = bind_service(&demo.url, &fx).await;
    let policy_dn = "cn=ppolicy,ou=policies,dc=example,dc=com";
    let p = search_ok(&mut svc, policy_dn, Scope::Base, "(objectClass=pwdPolicy)", &["*"]).await;
    assert_eq!(p.len(), 1, "the policy entry is published at its conventional DN");
    assert_eq!(attr(&p[0], "pwdLockout"), vec!["TRUE"]);
    assert_eq!(attr(&p[0], "pwdAttribute"), vec!["userPassword"]);
    assert_eq!(attr(&p[0], "pwdMinLength"), vec!["8"]);
    // It is found the ways clients look for it: under the base, by class, in its container.
    let found = search_ok(&mut svc, &fx.base_dn, Scope::Subtree, "(objectClass=pwdPolicy)", &["1.1"]).await;
    assert_eq!(dn_set(found.iter().map(|e| &e.dn)), dn_set([&policy_dn.to_string()]));
    let tops = search_ok(&mut svc, &fx.base_dn, Scope::OneLevel, "(objectClass=*)", &["1.1"]).await;
    assert!(tops.iter().any(|e| norm_dn(&e.dn) == "ou=policies,dc=example,dc=com"), "{tops:?}");
    let inside =
        search_ok(&mut svc, "ou=policies,dc=example,dc=com", Scope::OneLevel, "(objectClass=*)", &["cn"]).await;
    assert_eq!(inside.len(), 1);
    // The disabled user carries the permanent lock, and an active one does not.
    let locked =
        search_ok(&mut svc, &fx.users_base, Scope::Subtree, "(pwdAccountLockedTime=000001010000Z)", &["uid"]).await;
    let locked: BTreeSet<String> = locked.iter().map(|e| first(e, "uid")).collect();
    assert!(locked.contains(&fx.disabled_login), "{locked:?}");
    assert!(!locked.contains(&fx.user_login));
    // A plain user reads it too (clients may check it with the user's own bind).
    let mut me = bind(&demo.url, &fx.user_dn, &fx.user_password).await;
    assert_eq!(search_ok(&mut me, policy_dn, Scope::Base, "(pwdLockout=TRUE)", &["1.1"]).await.len(), 1);
    demo.running.shutdown().await;

    // Elsewhere when configured; a DN that would clash with the tree is refused at start.
    let demo = start_demo_with(|c| c.ldap.ppolicy_dn = Some("cn=default-policy,dc=example,dc=com".into())).await;
    let mut svc = bind_service(&demo.url, &fx).await;
    let p =
        search_ok(&mut svc, "cn=default-policy,dc=example,dc=com", Scope::Base, "(pwdLockout=TRUE)", &["1.1"]).await;
    assert_eq!(p.len(), 1);
    demo.running.shutdown().await;
    let mut cfg = demo_config();
    cfg.ldap.ppolicy_dn = Some("cn=x,ou=people,dc=example,dc=com".into());
    let err = idgate::app::start(cfg).await.err().expect("refused").to_string();
    assert!(err.contains("ldap.ppolicy_dn"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_control() {
    let demo = start_demo_full().await;
    let fx = demo.fixture();
    let url = &demo.url;

    // Anonymous: the tree is refused, the Root DSE and cn=schema are readable.
    let mut anon = connect(url).await;
    let (entries, res) = search(&mut anon, &fx.base_dn, Scope::Subtree, "(objectClass=*)", &[]).await;
    assert_eq!(res.rc, 50, "{res}");
    assert!(entries.is_empty());
    let root = search_ok(&mut anon, "", Scope::Base, "(objectClass=*)", &["+", "*"]).await;
    assert_eq!(root.len(), 1);
    assert!(attr(&root[0], "supportedControl").iter().any(|c| c == PAGED_OID));
    let schema = search_ok(&mut anon, "cn=schema", Scope::Base, "(objectClass=*)", &["attributeTypes"]).await;
    assert_eq!(schema.len(), 1);
    assert!(!attr(&schema[0], "attributeTypes").is_empty());
    let cmp = anon.with_timeout(WAIT).compare(&fx.user_dn, "uid", fx.user_login.as_bytes()).await.expect("compare");
    assert_eq!(cmp.0.rc, 50);

    // A user reads themself and their groups, not other users or other groups.
    let mut me = bind(url, &fx.user_dn, &fx.user_password).await;
    let all = search_ok(&mut me, &fx.users_base, Scope::Subtree, "(objectClass=inetOrgPerson)", &["uid"]).await;
    assert_eq!(all.iter().map(|e| first(e, "uid")).collect::<Vec<_>>(), vec![fx.user_login.clone()]);
    let other =
        search_ok(&mut me, &fx.users_base, Scope::Subtree, &format!("(uid={})", fx.outsider_login), &["uid"]).await;
    assert!(other.is_empty(), "another user is invisible");
    let (e, res) = search(&mut me, &fx.user_dn_of(&fx.outsider_login), Scope::Base, "(objectClass=*)", &[]).await;
    assert_eq!(res.rc, 32, "base read of another user: {res}");
    assert!(e.is_empty());
    let groups = search_ok(&mut me, &fx.groups_base, Scope::Subtree, "(objectClass=groupOfNames)", &["cn"]).await;
    let names: BTreeSet<String> = groups.iter().map(|g| first(g, "cn").to_lowercase()).collect();
    assert_eq!(names, fx.posix_group_set(), "only the user's own groups, and the primary group");
    let (_, res) = search(&mut me, &fx.group_dn("sales"), Scope::Base, "(objectClass=*)", &[]).await;
    assert_eq!(res.rc, 32, "a group the user is not in");
    let cmp = me
        .with_timeout(WAIT)
        .compare(&fx.user_dn_of(&fx.outsider_login), "uid", fx.outsider_login.as_bytes())
        .await
        .expect("compare");
    assert_eq!(cmp.0.rc, 32, "compare on an unreadable entry");
    // Service entries are invisible to users.
    let (_, res) = search(&mut me, &fx.service_dn, Scope::Base, "(objectClass=*)", &[]).await;
    assert_eq!(res.rc, 32);

    // Writes are refused: 50 for a user.
    let r = me.with_timeout(WAIT).delete(&fx.user_dn_of(&fx.outsider_login)).await.expect("delete answered");
    assert_eq!(r.rc, 50, "{r}");
    demo.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controls_limits_and_attribute_selection() {
    let demo = start_demo_full().await;
    let fx = demo.fixture();
    let mut ldap = bind_service(&demo.url, &fx).await;
    let uf = format!("(uid={})", fx.user_login);

    // Unknown critical control → 12; the same control non-critical is ignored.
    let unknown = |crit| ldap3::controls::RawControl { ctype: "1.3.6.1.4.1.99999.1".into(), crit, val: None };
    let (e, res) = search_ctrl(&mut ldap, vec![unknown(true)], &fx.users_base, Scope::Subtree, &uf, &["uid"]).await;
    assert_eq!(res.rc, 12, "{res}");
    assert!(e.is_empty());
    let (e, res) = search_ctrl(&mut ldap, vec![unknown(false)], &fx.users_base, Scope::Subtree, &uf, &["uid"]).await;
    assert_eq!(res.rc, 0, "{res}");
    assert_eq!(e.len(), 1);
    // Critical ManageDsaIT is supported.
    let mdsait = ldap3::controls::RawControl { ctype: "2.16.840.1.113730.3.4.2".into(), crit: true, val: None };
    let (e, res) = search_ctrl(&mut ldap, vec![mdsait], &fx.users_base, Scope::Subtree, &uf, &["uid"]).await;
    assert_eq!((res.rc, e.len()), (0, 1));

    // sizeLimit: 4 with the entries found so far.
    let r = ldap
        .with_search_options(SearchOptions::new().sizelimit(3))
        .with_timeout(WAIT)
        .search(&fx.users_base, Scope::Subtree, "(objectClass=inetOrgPerson)", vec!["uid"])
        .await
        .expect("search");
    assert_eq!(r.1.rc, 4, "{}", r.1);
    assert_eq!(r.0.len(), 3);
    // A limit the result fits in is no error.
    let r = ldap
        .with_search_options(SearchOptions::new().sizelimit(fx.user_count as i32))
        .with_timeout(WAIT)
        .search(&fx.users_base, Scope::Subtree, "(objectClass=inetOrgPerson)", vec!["uid"])
        .await
        .expect("search");
    assert_eq!((r.1.rc, r.0.len()), (0, fx.user_count));

    // typesOnly: names without values.
    let r = ldap
        .with_search_options(SearchOptions::new().typesonly(true))
        .with_timeout(WAIT)
        .search(&fx.users_base, Scope::Subtree, &uf, vec!["uid", "mail", "cn"])
        .await
        .expect("search");
    assert_eq!(r.1.rc, 0);
    let e = ldap3::SearchEntry::construct(r.0.into_iter().next().expect("one entry"));
    for a in ["uid", "mail", "cn"] {
        assert!(has_attr(&e, a), "typesOnly still names {a}");
        assert!(attr(&e, a).is_empty(), "typesOnly returns no values for {a}");
    }

    // 1.1: no attributes at all.
    let e = search_ok(&mut ldap, &fx.users_base, Scope::Subtree, &uf, &["1.1"]).await;
    assert_eq!(e.len(), 1);
    assert!(e[0].attrs.is_empty() && e[0].bin_attrs.is_empty(), "{:?}", e[0].attrs);
    // +: operational only.
    let e = search_ok(&mut ldap, &fx.users_base, Scope::Subtree, &uf, &["+"]).await;
    for a in [
        "entryUUID",
        "modifyTimestamp",
        "createTimestamp",
        "entryDN",
        "structuralObjectClass",
        "subschemaSubentry",
        "hasSubordinates",
    ] {
        assert!(has_attr(&e[0], a), "`+` lacks {a}: {:?}", e[0].attrs.keys());
    }
    assert!(!has_attr(&e[0], "mail") && !has_attr(&e[0], "uid"), "`+` returns no user attributes");
    // Default (no list) and `*`: user attributes incl. memberOf and entryUUID, never userPassword.
    for attrs in [&[][..], &["*"][..]] {
        let e = search_ok(&mut ldap, &fx.users_base, Scope::Subtree, &uf, attrs).await;
        for a in ["uid", "mail", "memberOf", "entryUUID", "uidNumber"] {
            assert!(has_attr(&e[0], a), "{attrs:?} lacks {a}");
        }
        assert!(!has_attr(&e[0], "userPassword") && !has_attr(&e[0], "modifyTimestamp"));
    }
    // Unknown attribute names select nothing and are no error.
    let e = search_ok(&mut ldap, &fx.users_base, Scope::Subtree, &uf, &["noSuchAttr", "mail"]).await;
    assert_eq!(e[0].attrs.keys().map(|k| k.to_lowercase()).collect::<Vec<_>>(), vec!["mail".to_string()]);
    // Attribute names are case-insensitive in filters too.
    let e = search_ok(
        &mut ldap,
        &fx.users_base,
        Scope::Subtree,
        &format!("(UID={})", fx.user_login.to_uppercase()),
        &["uid"],
    )
    .await;
    assert_eq!(e.len(), 1, "uid matching ignores case");

    // Compare.
    let cmp = |ldap: &mut Ldap, a: &'static str, v: String| {
        let dn = fx.user_dn.clone();
        let mut l = ldap.clone();
        async move { l.with_timeout(WAIT).compare(&dn, a, v.as_bytes()).await.expect("compare answered").0 }
    };
    assert_eq!(cmp(&mut ldap, "mail", fx.user_mail.clone()).await.rc, 6, "compareTrue");
    assert_eq!(cmp(&mut ldap, "mail", "someone@else.example".into()).await.rc, 5, "compareFalse");
    assert_eq!(cmp(&mut ldap, "uid", fx.user_login.to_uppercase()).await.rc, 6, "uid compares without case");
    assert_eq!(cmp(&mut ldap, "employeeNumber", "42".into()).await.rc, 16, "noSuchAttribute");
    assert_eq!(cmp(&mut ldap, "userPassword", fx.user_password.clone()).await.rc, 50, "userPassword is not comparable");
    let missing = ldap.with_timeout(WAIT).compare(&fx.user_dn_of("nobody-here"), "uid", "x").await.expect("compare").0;
    assert_eq!(missing.rc, 32);
    demo.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_and_names() {
    let demo = start_demo_full().await;
    let fx = demo.fixture();
    let mut ldap = bind_service(&demo.url, &fx).await;

    let base = search_ok(&mut ldap, &fx.users_base, Scope::Base, "(objectClass=*)", &["1.1"]).await;
    assert_eq!(base.len(), 1);
    assert_eq!(norm_dn(&base[0].dn), norm_dn(&fx.users_base));
    let one = search_ok(&mut ldap, &fx.base_dn, Scope::OneLevel, "(objectClass=*)", &["1.1"]).await;
    let one_dns = dn_set(&one.iter().map(|e| e.dn.clone()).collect::<Vec<_>>());
    assert!(one_dns.contains(&norm_dn(&fx.users_base)) && one_dns.contains(&norm_dn(&fx.groups_base)));
    for d in &one_dns {
        assert_eq!(d.split_once(',').map(|x| x.1), Some(norm_dn(&fx.base_dn).as_str()), "{d} is a direct child");
    }
    let sub = search_ok(&mut ldap, &fx.users_base, Scope::Subtree, "(objectClass=*)", &["1.1"]).await;
    assert_eq!(sub.len(), fx.user_count + 1, "subtree includes the base entry");
    let ones = search_ok(&mut ldap, &fx.users_base, Scope::OneLevel, "(objectClass=*)", &["1.1"]).await;
    assert_eq!(ones.len(), fx.user_count);

    // Scope children (RFC 4533 extension value 3) through the raw client.
    let mut raw = Raw::connect(demo.running.ldap_addr).await;
    assert_eq!(raw.bind(&fx.service_dn, &fx.service_password).await.code, LdapResultCode::Success);
    let (entries, done, _) =
        raw.search(search_req(&fx.users_base, LdapSearchScope::Children, "(objectClass=*)", &["1.1"]), vec![]).await;
    assert_eq!(done.code, LdapResultCode::Success);
    assert_eq!(entries.len(), fx.user_count, "children excludes the base entry");
    assert!(entries.iter().all(|e| norm_dn(&e.dn) != norm_dn(&fx.users_base)));

    // noSuchObject with the closest existing entry as matchedDN.
    let (_, res) =
        search(&mut ldap, &format!("uid=nobody,{}", fx.users_base), Scope::Base, "(objectClass=*)", &[]).await;
    assert_eq!(res.rc, 32);
    assert_eq!(norm_dn(&res.matched), norm_dn(&fx.users_base), "matchedDN");
    let (_, res) =
        search(&mut ldap, &format!("cn=x,ou=nowhere,{}", fx.base_dn), Scope::Subtree, "(objectClass=*)", &[]).await;
    assert_eq!(res.rc, 32);
    assert_eq!(norm_dn(&res.matched), norm_dn(&fx.base_dn));
    let (_, res) = search(&mut ldap, "not a dn", Scope::Base, "(objectClass=*)", &[]).await;
    assert_eq!(res.rc, 34, "invalidDNSyntax: {res}");

    // DN case and spacing variants name the same entries.
    for variant in ["UID=ALICE, OU=People,DC=example,DC=com", "uid=Alice,ou=PEOPLE, dc=Example, dc=COM"] {
        let e = search_ok(&mut ldap, variant, Scope::Base, "(objectClass=*)", &["uid"]).await;
        assert_eq!(e.len(), 1, "{variant}");
        assert_eq!(first(&e[0], "uid"), fx.user_login);
    }
    let e = search_ok(&mut ldap, "OU=People, DC=Example,DC=COM", Scope::OneLevel, "(objectClass=*)", &["1.1"]).await;
    assert_eq!(e.len(), fx.user_count);
    // and in assertion values
    let f = "(member=UID=ALICE, OU=People,DC=example,DC=com)".to_string();
    let g = search_ok(&mut ldap, &fx.groups_base, Scope::Subtree, &f, &["cn"]).await;
    assert_eq!(
        g.iter().map(|e| first(e, "cn").to_lowercase()).collect::<BTreeSet<_>>(),
        fx.user_group_set(),
        "DN-valued match"
    );
    demo.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paged_results() {
    let demo = start_demo_full().await;
    let fx = demo.fixture();
    let mut ldap = bind_service(&demo.url, &fx).await;
    let users = "(objectClass=inetOrgPerson)";
    let groups = "(objectClass=groupOfNames)";

    // Page size 4 over all users: every entry once, ceil(n/4) pages.
    let p = paged_search(&mut ldap, 4, false, &fx.users_base, Scope::Subtree, users, &["uid"]).await;
    assert_eq!(p.entries.len(), fx.user_count);
    assert_eq!(p.pages, fx.user_count.div_ceil(4));
    let uids: BTreeSet<String> = p.entries.iter().map(|e| first(e, "uid")).collect();
    assert_eq!(uids.len(), fx.user_count);

    // Interleaving: a paged search, a plain search and a second paged search on one connection.
    let (first_page, res) =
        search_ctrl(&mut ldap, vec![paged_control(3, vec![], false)], &fx.users_base, Scope::Subtree, users, &["uid"])
            .await;
    assert_eq!((res.rc, first_page.len()), (0, 3));
    let cookie_users = paged_response(&res).expect("control").cookie;
    assert!(!cookie_users.is_empty());
    let plain =
        search_ok(&mut ldap, &fx.users_base, Scope::Subtree, &format!("(uid={})", fx.user_login), &["uid"]).await;
    assert_eq!(plain.len(), 1);
    let (g_page, res) =
        search_ctrl(&mut ldap, vec![paged_control(1, vec![], false)], &fx.groups_base, Scope::Subtree, groups, &["cn"])
            .await;
    assert_eq!((res.rc, g_page.len()), (0, 1));
    let cookie_groups = paged_response(&res).expect("control").cookie;
    assert!(!cookie_groups.is_empty());
    assert_ne!(cookie_users, cookie_groups);

    let mut got: Vec<String> = first_page.iter().map(|e| first(e, "uid")).collect();
    let mut cookie = cookie_users.clone();
    while !cookie.is_empty() {
        let (e, res) = search_ctrl(
            &mut ldap,
            vec![paged_control(3, cookie, false)],
            &fx.users_base,
            Scope::Subtree,
            users,
            &["uid"],
        )
        .await;
        assert_eq!(res.rc, 0, "{res}");
        got.extend(e.iter().map(|e| first(e, "uid")));
        cookie = paged_response(&res).expect("control").cookie;
    }
    assert_eq!(got.iter().cloned().collect::<BTreeSet<_>>(), uids, "interleaved paging still yields every user once");
    assert_eq!(got.len(), fx.user_count);
    let mut gnames: Vec<String> = g_page.iter().map(|e| first(e, "cn")).collect();
    let mut cookie = cookie_groups.clone();
    while !cookie.is_empty() {
        let (e, res) = search_ctrl(
            &mut ldap,
            vec![paged_control(1, cookie, false)],
            &fx.groups_base,
            Scope::Subtree,
            groups,
            &["cn"],
        )
        .await;
        assert_eq!(res.rc, 0, "{res}");
        assert!(e.len() <= 1);
        gnames.extend(e.iter().map(|e| first(e, "cn")));
        cookie = paged_response(&res).expect("control").cookie;
    }
    let all_groups = search_ok(&mut ldap, &fx.groups_base, Scope::Subtree, groups, &["cn"]).await;
    assert_eq!(gnames.len(), all_groups.len());

    // A used-up cookie, a made-up cookie and a cookie replayed on another search are errors.
    let (e, res) = search_ctrl(
        &mut ldap,
        vec![paged_control(3, cookie_users, false)],
        &fx.users_base,
        Scope::Subtree,
        users,
        &["uid"],
    )
    .await;
    assert_ne!(res.rc, 0, "a finished search's cookie is rejected");
    assert!(e.is_empty());
    let (_, res) = search_ctrl(
        &mut ldap,
        vec![paged_control(3, b"bogus-cookie".to_vec(), false)],
        &fx.users_base,
        Scope::Subtree,
        users,
        &["uid"],
    )
    .await;
    assert_ne!(res.rc, 0, "an invented cookie is rejected");
    assert!(!res.text.is_empty(), "with a message");
    let (_, res) =
        search_ctrl(&mut ldap, vec![paged_control(3, vec![], false)], &fx.users_base, Scope::Subtree, users, &["uid"])
            .await;
    let c = paged_response(&res).expect("control").cookie;
    let (_, res) = search_ctrl(
        &mut ldap,
        vec![paged_control(3, c.clone(), false)],
        &fx.groups_base,
        Scope::Subtree,
        groups,
        &["cn"],
    )
    .await;
    assert_ne!(res.rc, 0, "a cookie belongs to its own search");
    // Cookies are per connection.
    let mut other = bind_service(&demo.url, &fx).await;
    let (_, res) =
        search_ctrl(&mut other, vec![paged_control(3, c, false)], &fx.users_base, Scope::Subtree, users, &["uid"])
            .await;
    assert_ne!(res.rc, 0, "another connection's cookie is rejected");

    // Page size 0 with a cookie abandons the paged search.
    let (_, res) =
        search_ctrl(&mut ldap, vec![paged_control(2, vec![], false)], &fx.users_base, Scope::Subtree, users, &["uid"])
            .await;
    let c = paged_response(&res).expect("control").cookie;
    let (e, res) = search_ctrl(
        &mut ldap,
        vec![paged_control(0, c.clone(), false)],
        &fx.users_base,
        Scope::Subtree,
        users,
        &["uid"],
    )
    .await;
    assert_eq!((res.rc, e.len()), (0, 0));
    let (_, res) =
        search_ctrl(&mut ldap, vec![paged_control(2, c, false)], &fx.users_base, Scope::Subtree, users, &["uid"]).await;
    assert_ne!(res.rc, 0, "an abandoned paged search cannot be continued");
    demo.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandon_has_no_response_and_connection_survives() {
    let demo = start_demo_full().await;
    let fx = demo.fixture();
    let mut raw = Raw::connect(demo.running.ldap_addr).await;
    assert_eq!(raw.bind(&fx.service_dn, &fx.service_password).await.code, LdapResultCode::Success);
    // A search, an Abandon naming it, an Abandon naming nothing, then a WhoAmI.
    let search_id = raw
        .send(
            LdapOp::SearchRequest(search_req(&fx.users_base, LdapSearchScope::Subtree, "(objectClass=*)", &["uid"])),
            vec![],
        )
        .await;
    let abandon_id = raw.send(LdapOp::AbandonRequest(search_id), vec![]).await;
    let abandon_none = raw.send(LdapOp::AbandonRequest(9999), vec![]).await;
    let who_id = raw
        .send(
            LdapOp::ExtendedRequest(LdapExtendedRequest { name: "1.3.6.1.4.1.4203.1.11.3".into(), value: None }),
            vec![],
        )
        .await;
    let mut seen = Vec::new();
    loop {
        let m = raw.recv_some().await;
        assert!(m.msgid != abandon_id && m.msgid != abandon_none, "Abandon got a response: {m:?}");
        assert!(m.msgid == search_id || m.msgid == who_id, "unexpected message {m:?}");
        seen.push(m.msgid);
        if let LdapOp::ExtendedResponse(x) = &m.op {
            assert_eq!(m.msgid, who_id);
            assert_eq!(x.res.code, LdapResultCode::Success);
            assert_eq!(
                norm_dn(&String::from_utf8_lossy(x.value.as_deref().unwrap_or_default())),
                norm_dn(&format!("dn:{}", fx.service_dn))
            );
            break;
        }
    }
    // The connection keeps working.
    let (entries, done, _) = raw
        .search(
            search_req(&fx.users_base, LdapSearchScope::Subtree, &format!("(uid={})", fx.user_login), &["uid"]),
            vec![],
        )
        .await;
    assert_eq!(done.code, LdapResultCode::Success);
    assert_eq!(entries.len(), 1);
    demo.running.shutdown().await;
}
