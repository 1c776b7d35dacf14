//! Read-side LDAP traffic of real applications, replayed operation by operation with the filters,
//! attribute lists and controls each one sends. Every replay takes the server URL and a
//! `DirFixture`, so the same sequences run against any backend.

use std::collections::BTreeSet;

use ldap3::controls::RawControl;
use ldap3::{Scope, SearchEntry};
use ldap3_proto::control::LdapControl;
use ldap3_proto::proto::{LdapResultCode, LdapSearchScope};

use super::*;

fn assert_uuid(v: &str) {
    let parts: Vec<&str> = v.split('-').collect();
    assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), vec![8, 4, 4, 4, 12], "not a UUID: {v:?}");
    assert!(v.chars().all(|c| c == '-' || c.is_ascii_hexdigit()), "not a UUID: {v:?}");
}

fn only_entry(entries: Vec<SearchEntry>, what: &str) -> SearchEntry {
    assert_eq!(
        entries.len(),
        1,
        "{what}: expected exactly one entry, got {:?}",
        entries.iter().map(|e| &e.dn).collect::<Vec<_>>()
    );
    entries.into_iter().next().expect("one entry")
}

fn cns(entries: &[SearchEntry]) -> BTreeSet<String> {
    entries.iter().map(|e| rdn_value(&e.dn).to_lowercase()).collect()
}

/// All user logins, from a service search (used to cross-check what the replays find).
async fn all_logins(url: &str, fx: &DirFixture) -> BTreeSet<String> {
    let mut ldap = bind_service(url, fx).await;
    let p =
        paged_search(&mut ldap, 100, false, &fx.users_base, Scope::Subtree, "(objectClass=inetOrgPerson)", &["uid"])
            .await;
    assert_eq!(p.entries.len(), fx.user_count, "user count");
    p.entries.iter().map(|e| first(e, "uid")).collect()
}

/// Logins whose memberOf names `group`, according to the user entries.
async fn members_by_member_of(url: &str, fx: &DirFixture, group: &str) -> BTreeSet<String> {
    let mut ldap = bind_service(url, fx).await;
    let gdn = norm_dn(&fx.group_dn(group));
    let p = paged_search(
        &mut ldap,
        100,
        false,
        &fx.users_base,
        Scope::Subtree,
        "(objectClass=posixAccount)",
        &["uid", "memberOf"],
    )
    .await;
    p.entries
        .iter()
        .filter(|e| attr(e, "memberOf").iter().any(|d| norm_dn(d) == gdn))
        .map(|e| first(e, "uid").to_lowercase())
        .collect()
}

// ---- Nextcloud user_ldap ------------------------------------------------------------------------

pub async fn replay_nextcloud(url: &str, fx: &DirFixture) {
    let login_group_dn = fx.group_dn(&fx.login_group);
    let user_filter = format!("(&(objectclass=person)(memberOf={login_group_dn}))");
    let login_filter = |login: &str| format!("(&{user_filter}(uid={login}))");
    let user_attrs = [
        "entryuuid",
        "nsuniqueid",
        "objectguid",
        "guid",
        "ipauniqueid",
        "dn",
        "uid",
        "samaccountname",
        "memberof",
        "",
        "mail",
        "displayname",
        "",
        "",
        "",
        "jpegphoto",
        "thumbnailphoto",
    ];

    // conn 1, agent bind, then the login lookup with the paged control (500, empty cookie).
    let mut agent = bind_service(url, fx).await;
    let (entries, res) = search_ctrl(
        &mut agent,
        vec![paged_control(500, vec![], false)],
        &fx.users_base,
        Scope::Subtree,
        &login_filter(&fx.user_login),
        &user_attrs,
    )
    .await;
    assert_eq!(res.rc, 0, "login lookup: {res}");
    assert!(paged_response(&res).is_some_and(|p| p.cookie.is_empty()), "one page, paged control with an empty cookie");
    let e = only_entry(entries, "nextcloud login lookup");
    assert_eq!(norm_dn(&e.dn), norm_dn(&fx.user_dn));
    assert_eq!(first(&e, "uid"), fx.user_login);
    assert_eq!(first(&e, "mail"), fx.user_mail);
    assert_uuid(&first(&e, "entryUUID"));
    assert!(dn_set(&attr(&e, "memberOf")).contains(&norm_dn(&login_group_dn)));
    assert!(!has_attr(&e, "dn") && !has_attr(&e, ""), "`dn` and \"\" select no attribute: {:?}", e.attrs.keys());
    assert!(!has_attr(&e, "nsuniqueid") && !has_attr(&e, "objectguid"), "absent attributes stay absent");

    // A user outside the login group is not found by the same lookup.
    let (entries, res) = search_ctrl(
        &mut agent,
        vec![paged_control(500, vec![], false)],
        &fx.users_base,
        Scope::Subtree,
        &login_filter(&fx.outsider_login),
        &user_attrs,
    )
    .await;
    assert_eq!(res.rc, 0);
    assert!(entries.is_empty(), "outsider must not match the login filter");

    // conn 2: credential check with the user's DN.
    let mut check = connect(url).await;
    assert_eq!(try_bind(&mut check, &e.dn, &fx.user_password).await.rc, 0, "user credential check");
    let mut bad = connect(url).await;
    assert_eq!(try_bind(&mut bad, &e.dn, "not-the-password").await.rc, 49);
    // The main connection re-binds as the agent.
    assert_eq!(try_bind(&mut agent, &fx.service_dn, &fx.service_password).await.rc, 0);

    // UUID auto-detection: base reads, one attribute each, filter without parentheses.
    let mut found = None;
    for a in ["entryuuid", "nsuniqueid", "objectguid", "guid", "ipauniqueid"] {
        let entries = search_ok(&mut agent, &e.dn, Scope::Base, "objectClass=*", &[a]).await;
        let entry = only_entry(entries, "uuid probe");
        let vals = attr(&entry, a);
        if a == "entryuuid" {
            assert_eq!(vals.len(), 1, "entryUUID is readable on its own");
            found = Some(vals[0].clone());
        } else {
            assert!(vals.is_empty(), "{a} should not exist");
        }
    }
    let uuid = found.expect("entryUUID detected");
    assert_eq!(uuid, first(&e, "entryUUID"), "entryUUID is stable between reads");

    // Existence check with an attribute list holding only the empty string.
    let entries = search_ok(&mut agent, &e.dn, Scope::Base, &user_filter, &[""]).await;
    let entry = only_entry(entries, "existence check");
    assert!(entry.attrs.is_empty() && entry.bin_attrs.is_empty(), "[\"\"] returns no attributes: {:?}", entry.attrs);
    let entries = search_ok(&mut agent, &fx.user_dn_of(&fx.outsider_login), Scope::Base, &user_filter, &[""]).await;
    assert!(entries.is_empty(), "an entry outside the user filter fails the existence check");

    // Group membership through memberOf.
    let entries = search_ok(&mut agent, &e.dn, Scope::Base, "objectClass=*", &["memberof"]).await;
    let entry = only_entry(entries, "memberof read");
    let got: BTreeSet<String> = attr(&entry, "memberOf").iter().map(|d| rdn_value(d).to_lowercase()).collect();
    assert_eq!(got, fx.member_of_set(), "memberOf lists the user's groups");

    // Background sync: page through the user filter (page size 500).
    let p = paged_search(&mut agent, 500, false, &fx.users_base, Scope::Subtree, &user_filter, &user_attrs).await;
    let synced: BTreeSet<String> = p.entries.iter().map(|e| first(e, "uid").to_lowercase()).collect();
    assert_eq!(synced.len(), p.entries.len(), "no duplicates across pages");
    assert_eq!(synced, members_by_member_of(url, fx, &fx.login_group).await);
    assert!(synced.contains(&fx.user_login.to_lowercase()));
    // and the group list
    let groups = paged_search(
        &mut agent,
        500,
        false,
        &fx.groups_base,
        Scope::Subtree,
        "(objectclass=groupOfNames)",
        &["cn", "dn"],
    )
    .await;
    assert!(cns(&groups.entries).is_superset(&fx.user_group_set()));
}

// ---- Gitea / Forgejo -------------------------------------------------------------------------------

pub async fn replay_gitea(url: &str, fx: &DirFixture) {
    let user_filter = |v: &str| format!("(&(objectClass=person)(|(uid={v})(mail={v})))");
    let admin_filter = format!("(memberof={})", fx.group_dn(&fx.admin_group));

    let mut conn = bind_service(url, fx).await;
    let e = only_entry(
        search_ok(&mut conn, &fx.users_base, Scope::Subtree, &user_filter(&fx.user_login), &[]).await,
        "gitea lookup by login",
    );
    assert_eq!(norm_dn(&e.dn), norm_dn(&fx.user_dn));
    // Logging in with the mail address finds the same entry.
    let by_mail = only_entry(
        search_ok(&mut conn, &fx.users_base, Scope::Subtree, &user_filter(&fx.user_mail), &[]).await,
        "lookup by mail",
    );
    assert_eq!(norm_dn(&by_mail.dn), norm_dn(&fx.user_dn));
    assert!(
        search_ok(&mut conn, &fx.users_base, Scope::Subtree, &user_filter("no-such-login-xyz"), &[]).await.is_empty()
    );

    // Re-bind as the user on the same connection.
    assert_eq!(try_bind(&mut conn, &e.dn, &fx.user_password).await.rc, 0);
    // As the user: subtree search based at the user's own DN.
    let attrs = ["uid", "givenName", "sn", "mail", "uid", "sshPublicKey", "jpegPhoto"];
    let me = only_entry(
        search_ok(&mut conn, &e.dn, Scope::Subtree, &user_filter(&fx.user_login), &attrs).await,
        "user reads own entry",
    );
    for a in ["uid", "givenName", "sn", "mail"] {
        assert!(!attr(&me, a).is_empty(), "own entry lacks {a}");
    }
    assert_eq!(first(&me, "mail"), fx.user_mail);
    // Admin filter as the user.
    let admin = search_ok(&mut conn, &e.dn, Scope::Subtree, &admin_filter, &["uid"]).await;
    assert_eq!(admin.len(), 1, "the user is in the admin group");
    // Team sync: groups having the user as member (as the user).
    let groups = search_ok(
        &mut conn,
        &fx.groups_base,
        Scope::Subtree,
        &format!("(&(objectClass=groupOfNames)(member={}))", e.dn),
        &[],
    )
    .await;
    assert_eq!(cns(&groups), fx.user_group_set(), "the user sees their groups");

    // A user outside the admin group gets an empty admin search.
    let mut out = bind(url, &fx.user_dn_of(&fx.outsider_login), &fx.outsider_password).await;
    let odn = fx.user_dn_of(&fx.outsider_login);
    assert!(search_ok(&mut out, &odn, Scope::Subtree, &admin_filter, &["uid"]).await.is_empty());
    // and cannot see other users through the lookup filter
    assert!(search_ok(&mut out, &fx.users_base, Scope::Subtree, &user_filter(&fx.user_login), &[]).await.is_empty());

    // Periodic sync: (uid=*) via the substitution, paged.
    let mut sync = bind_service(url, fx).await;
    let p = paged_search(
        &mut sync,
        5,
        false,
        &fx.users_base,
        Scope::Subtree,
        &user_filter("*"),
        &["uid", "givenName", "sn", "mail", "uid"],
    )
    .await;
    assert!(p.pages > 1 || fx.user_count <= 5, "several pages of 5");
    let logins: BTreeSet<String> = p.entries.iter().map(|e| first(e, "uid")).collect();
    assert_eq!(logins.len(), fx.user_count, "every user once");
}

// ---- Grafana --------------------------------------------------------------------------------------

pub async fn replay_grafana(url: &str, fx: &DirFixture) {
    let mut conn = bind_service(url, fx).await;
    let attrs = ["uid", "sn", "mail", "givenName", "memberOf", "uid"];
    let e = only_entry(
        search_ok(&mut conn, &fx.users_base, Scope::Subtree, &format!("(|(uid={}))", fx.user_login), &attrs).await,
        "grafana single-child OR",
    );
    assert_eq!(norm_dn(&e.dn), norm_dn(&fx.user_dn));
    assert_eq!(first(&e, "mail"), fx.user_mail);
    let member_of: BTreeSet<String> = attr(&e, "memberOf").iter().map(|d| rdn_value(d).to_lowercase()).collect();
    assert_eq!(member_of, fx.member_of_set());

    // POSIX group search requesting the literal attribute `dn`.
    let groups = search_ok(
        &mut conn,
        &fx.groups_base,
        Scope::Subtree,
        &format!("(&(objectClass=posixGroup)(memberUid={}))", fx.user_login),
        &["dn"],
    )
    .await;
    assert_eq!(cns(&groups), fx.posix_group_set());
    for g in &groups {
        assert!(g.attrs.is_empty() && g.bin_attrs.is_empty(), "`dn` selects no attribute: {:?}", g.attrs);
    }

    // User bind on the same connection.
    assert_eq!(try_bind(&mut conn, &e.dn, &fx.user_password).await.rc, 0);
    assert_eq!(try_bind(&mut conn, &fx.service_dn, &fx.service_password).await.rc, 0);

    // Background sync in batches: one OR of many (uid=…) terms.
    let known = all_logins(url, fx).await;
    let mut filter = String::from("(|");
    for l in &known {
        filter.push_str(&format!("(uid={l})"));
    }
    for i in 0..40 {
        filter.push_str(&format!("(uid=ghost{i})"));
    }
    filter.push(')');
    let batch = search_ok(&mut conn, &fx.users_base, Scope::Subtree, &filter, &attrs).await;
    let got: BTreeSet<String> = batch.iter().map(|e| first(e, "uid")).collect();
    assert_eq!(got, known, "the batch finds exactly the known users");
}

// ---- Jenkins ------------------------------------------------------------------------------------------

pub async fn replay_jenkins(url: &str, fx: &DirFixture) {
    // Root DN inference (JNDI getAttributes("")), before any bind.
    let mut anon = connect(url).await;
    let root = only_entry(
        search_ok(&mut anon, "", Scope::Base, "(objectClass=*)", &["namingContexts", "defaultNamingContext"]).await,
        "root DSE",
    );
    let root_dn = attr(&root, "defaultNamingContext")
        .into_iter()
        .next()
        .or_else(|| attr(&root, "namingContexts").into_iter().next());
    assert_eq!(norm_dn(&root_dn.expect("a naming context")), norm_dn(&fx.base_dn));
    assert!(dn_set(&attr(&root, "namingContexts")).contains(&norm_dn(&fx.base_dn)));

    // Manager bind and the user search with every user and operational attribute.
    let mut mgr = bind_service(url, fx).await;
    let e = only_entry(
        search_ok(&mut mgr, &fx.base_dn, Scope::Subtree, &format!("uid={}", fx.user_login), &["*", "+"]).await,
        "uid={0}",
    );
    assert_eq!(norm_dn(&e.dn), norm_dn(&fx.user_dn));
    for a in
        ["uid", "cn", "mail", "objectClass", "memberOf", "entryUUID", "modifyTimestamp", "createTimestamp", "entryDN"]
    {
        assert!(has_attr(&e, a), "`*`+`+` lacks {a}: {:?}", e.attrs.keys());
    }
    assert!(!has_attr(&e, "userPassword"), "userPassword is never returned");

    // BindAuthenticator2: a fresh context as the user.
    let mut user = connect(url).await;
    assert_eq!(try_bind(&mut user, &e.dn, &fx.user_password).await.rc, 0);

    // Default group strategy (as sent on the wire; JNDI drops the spaces of the configured filter).
    let filter = format!("(|(member={0})(uniqueMember={0})(memberUid={1}))", e.dn, fx.user_login);
    let groups = search_ok(&mut mgr, &fx.groups_base, Scope::Subtree, &filter, &["cn"]).await;
    // memberUid also finds the primary group.
    let names: BTreeSet<String> = groups.iter().map(|g| first(g, "cn").to_lowercase()).collect();
    assert_eq!(names, fx.posix_group_set());

    // Group lookup by name, then its members by a base read.
    let lookup = format!(
        "(&(cn={})(|(objectclass=groupOfNames)(objectclass=groupOfUniqueNames)(objectclass=posixGroup)))",
        fx.admin_group
    );
    let g = only_entry(search_ok(&mut mgr, &fx.groups_base, Scope::Subtree, &lookup, &[]).await, "group by name");
    let members = only_entry(
        search_ok(&mut mgr, &g.dn, Scope::Base, "(objectClass=*)", &["member", "uniqueMember", "memberUid"]).await,
        "members",
    );
    let member = attr(&members, "member");
    assert!(dn_set(&member).contains(&norm_dn(&fx.user_dn)), "member lists the user");
    let from_dns: BTreeSet<String> = member.iter().map(|d| rdn_value(d).to_lowercase()).collect();
    assert_eq!(from_dns, lower_set(&attr(&members, "memberUid")), "member and memberUid agree");
    assert_eq!(dn_set(&member), dn_set(&attr(&members, "uniqueMember")), "member and uniqueMember agree");
    assert_eq!(from_dns, members_by_member_of(url, fx, &fx.admin_group).await, "group members agree with memberOf");
    // A group lookup for a name that does not exist is empty, not an error.
    let none = search_ok(
        &mut mgr,
        &fx.groups_base,
        Scope::Subtree,
        &lookup.replace(&fx.admin_group, "no-such-group-xyz"),
        &[],
    )
    .await;
    assert!(none.is_empty());
}

// ---- SSSD ---------------------------------------------------------------------------------------------

fn ppolicy() -> RawControl {
    RawControl { ctype: PPOLICY_OID.into(), crit: false, val: None }
}

pub async fn replay_sssd(url: &str, fx: &DirFixture) {
    // Service bind with the password-policy request control (non-critical).
    let mut conn = connect(url).await;
    let r = conn
        .with_controls(ppolicy())
        .with_timeout(WAIT)
        .simple_bind(&fx.service_dn, &fx.service_password)
        .await
        .expect("bind");
    assert_eq!(r.rc, 0, "ppolicy control on bind is ignored: {r}");

    // RootDSE with SSSD's attribute list.
    let root_attrs = [
        "*",
        "altServer",
        "namingContexts",
        "supportedControl",
        "supportedExtension",
        "supportedFeatures",
        "supportedLDAPVersion",
        "supportedSASLMechanisms",
        "domainControllerFunctionality",
        "defaultNamingContext",
        "lastUSN",
        "highestCommittedUSN",
    ];
    let root = only_entry(search_ok(&mut conn, "", Scope::Base, "(objectclass=*)", &root_attrs).await, "root DSE");
    assert!(attr(&root, "supportedControl").iter().any(|c| c == PAGED_OID), "paging advertised, so SSSD pages");
    assert!(dn_set(&attr(&root, "namingContexts")).contains(&norm_dn(&fx.base_dn)));
    assert!(attr(&root, "supportedLDAPVersion").contains(&"3".to_string()));

    // getpwnam
    let pw_attrs = [
        "objectClass",
        "uid",
        "userPassword",
        "uidNumber",
        "gidNumber",
        "gecos",
        "homeDirectory",
        "loginShell",
        "krbPrincipalName",
        "cn",
        "modifyTimestamp",
        "shadowLastChange",
        "shadowMin",
        "shadowMax",
        "shadowWarning",
        "shadowInactive",
        "shadowExpire",
        "shadowFlag",
        "krbLastPwdChange",
        "krbPasswordExpiration",
        "pwdAttribute",
        "authorizedService",
        "accountExpires",
        "userAccountControl",
        "nsAccountLock",
        "host",
        "rhost",
        "loginDisabled",
        "loginExpirationTime",
        "loginAllowedTimeMap",
        "sshPublicKey",
        "userCertificate;binary",
        "mail",
        "passkey",
        "memberOf",
    ];
    let getpwnam =
        |login: &str| format!("(&(uid={login})(objectclass=posixAccount)(uid=*)(&(uidNumber=*)(!(uidNumber=0))))");
    let p = paged_search(&mut conn, 1000, false, &fx.users_base, Scope::Subtree, &getpwnam(&fx.user_login), &pw_attrs)
        .await;
    let e = only_entry(p.entries, "getpwnam");
    assert_eq!(norm_dn(&e.dn), norm_dn(&fx.user_dn));
    let uid_number: u32 = first(&e, "uidNumber").parse().expect("numeric uidNumber");
    assert!(uid_number > 0);
    let _: u32 = first(&e, "gidNumber").parse().expect("numeric gidNumber");
    for a in ["homeDirectory", "loginShell", "gecos", "cn", "modifyTimestamp"] {
        assert!(!attr(&e, a).is_empty(), "getpwnam lacks {a}");
    }
    assert!(attr(&e, "objectClass").iter().any(|c| c.eq_ignore_ascii_case("posixAccount")));
    assert!(!has_attr(&e, "userPassword"));
    let unknown =
        paged_search(&mut conn, 1000, false, &fx.users_base, Scope::Subtree, &getpwnam("no-such-user-xyz"), &pw_attrs)
            .await;
    assert!(unknown.entries.is_empty());

    // getgrnam for each of the user's groups
    let gr_attrs = ["objectClass", "cn", "userPassword", "gidNumber", "memberuid", "modifyTimestamp"];
    let mut gids = BTreeSet::new();
    for g in &fx.user_groups {
        let f = format!("(&(cn={g})(objectClass=posixGroup)(cn=*)(&(gidNumber=*)(!(gidNumber=0))))");
        let p = paged_search(&mut conn, 1000, false, &fx.groups_base, Scope::Subtree, &f, &gr_attrs).await;
        let ge = only_entry(p.entries, "getgrnam");
        let gid: u32 = first(&ge, "gidNumber").parse().expect("numeric gidNumber");
        assert!(gid > 0);
        gids.insert(gid);
        assert!(
            lower_set(&attr(&ge, "memberUid")).contains(&fx.user_login.to_lowercase()),
            "{g} memberUid lists the user"
        );
    }
    assert_eq!(gids.len(), fx.user_groups.len(), "distinct gidNumbers");

    // initgroups, rfc2307
    let f = format!("(&(memberuid={})(objectClass=posixGroup)(cn=*)(&(gidNumber=*)(!(gidNumber=0))))", fx.user_login);
    let p = paged_search(&mut conn, 1000, false, &fx.groups_base, Scope::Subtree, &f, &gr_attrs).await;
    assert_eq!(cns(&p.entries), fx.posix_group_set(), "initgroups rfc2307");
    // initgroups, rfc2307bis: the user entry, then groups by member DN
    let p = paged_search(&mut conn, 1000, false, &fx.users_base, Scope::Subtree, &getpwnam(&fx.user_login), &pw_attrs)
        .await;
    let ue = only_entry(p.entries, "user entry");
    let f = format!("(&(member={})(objectClass=posixGroup)(cn=*))", ue.dn);
    let p = paged_search(
        &mut conn,
        1000,
        false,
        &fx.groups_base,
        Scope::Subtree,
        &f,
        &["objectClass", "cn", "gidNumber", "member"],
    )
    .await;
    assert_eq!(cns(&p.entries), fx.user_group_set(), "initgroups rfc2307bis");
    // memberOf also lists the groups these are nested in, which SSSD resolves by itself.
    let direct = dn_set(&p.entries.iter().map(|e| e.dn.clone()).collect::<Vec<_>>());
    assert!(dn_set(&attr(&ue, "memberOf")).is_superset(&direct));
    assert_eq!(attr(&ue, "memberOf").len(), fx.member_of_set().len());

    // auth: a new connection, user bind with the ppolicy control; a disabled user fails.
    let mut auth = connect(url).await;
    let r = auth
        .with_controls(ppolicy())
        .with_timeout(WAIT)
        .simple_bind(&fx.user_dn, &fx.user_password)
        .await
        .expect("bind");
    assert_eq!(r.rc, 0);
    let mut auth = connect(url).await;
    let r = auth
        .with_controls(ppolicy())
        .with_timeout(WAIT)
        .simple_bind(&fx.user_dn_of(&fx.disabled_login), &fx.disabled_password)
        .await
        .expect("bind");
    assert_eq!(r.rc, 49, "disabled user");

    // enumerate = true
    let enum_users = "(&(objectclass=posixAccount)(uid=*)(uidNumber=*)(gidNumber=*))";
    let users = paged_search(&mut conn, 1000, false, &fx.users_base, Scope::Subtree, enum_users, &pw_attrs).await;
    assert_eq!(users.entries.len(), fx.user_count);
    let uid_numbers: BTreeSet<String> = users.entries.iter().map(|e| first(e, "uidNumber")).collect();
    assert_eq!(uid_numbers.len(), fx.user_count, "uidNumbers are unique");
    let groups = paged_search(
        &mut conn,
        1000,
        false,
        &fx.groups_base,
        Scope::Subtree,
        "(&(objectclass=posixGroup)(cn=*)(gidNumber=*))",
        &gr_attrs,
    )
    .await;
    assert!(cns(&groups.entries).is_superset(&fx.user_group_set()));

    // Incremental enumeration on modifyTimestamp: (>= last)(! = last) finds only what changed since.
    let last =
        users.entries.iter().map(|e| first(e, "modifyTimestamp")).max_by_key(|t| parse_gt(t)).expect("timestamps");
    let incremental = format!("(&{enum_users}(modifyTimestamp>={last})(!(modifyTimestamp={last})))");
    let before = paged_search(&mut conn, 1000, false, &fx.users_base, Scope::Subtree, &incremental, &pw_attrs).await;
    assert!(before.entries.is_empty(), "nothing changed after the newest timestamp yet");
    let Some(touch) = &fx.touch else {
        println!("replay_sssd: fixture cannot change users; incremental enumeration not replayed");
        return;
    };
    wait_past(parse_gt(&last)).await;
    touch(fx.user_login.clone()).await;
    let after = paged_search(&mut conn, 1000, false, &fx.users_base, Scope::Subtree, &incremental, &pw_attrs).await;
    let changed: Vec<String> = after.entries.iter().map(|e| first(e, "uid")).collect();
    assert_eq!(changed, vec![fx.user_login.clone()], "incremental enumeration finds only the changed user");
}

// ---- Keycloak -------------------------------------------------------------------------------------------

pub async fn replay_keycloak(url: &str, fx: &DirFixture) {
    let classes = "(objectclass=inetOrgPerson)(objectclass=organizationalPerson)";
    let attrs =
        ["uid", "uid", "entryUUID", "cn", "sn", "givenName", "mail", "createTimestamp", "modifyTimestamp", "memberOf"];
    let critical_page = |cookie: Vec<u8>| vec![paged_control(1000, cookie, true)];

    let mut conn = bind_service(url, fx).await;
    // Query Supported Extensions.
    let root =
        only_entry(search_ok(&mut conn, "", Scope::Base, "(objectClass=*)", &["supportedExtension"]).await, "root DSE");
    assert!(!attr(&root, "supportedExtension").is_empty(), "supportedExtension is published");

    // Login lookup, paged with a CRITICAL control.
    let (entries, res) = search_ctrl(
        &mut conn,
        critical_page(vec![]),
        &fx.users_base,
        Scope::Subtree,
        &format!("(&(uid={}){classes})", fx.user_login),
        &attrs,
    )
    .await;
    assert_eq!(res.rc, 0, "critical paged control must be honoured: {res}");
    assert!(paged_response(&res).is_some());
    let e = only_entry(entries, "keycloak login");
    assert_eq!(norm_dn(&e.dn), norm_dn(&fx.user_dn));
    let uuid = first(&e, "entryUUID");
    assert_uuid(&uuid);
    parse_gt(&first(&e, "createTimestamp"));
    parse_gt(&first(&e, "modifyTimestamp"));
    assert_eq!(first(&e, "mail"), fx.user_mail);

    // Lookup by id.
    let by_id = only_entry(
        search_ok(&mut conn, &fx.users_base, Scope::Subtree, &format!("(entryUUID={uuid})"), &attrs).await,
        "by entryUUID",
    );
    assert_eq!(norm_dn(&by_id.dn), norm_dn(&fx.user_dn));

    // Authentication in a new context.
    let mut user = connect(url).await;
    assert_eq!(try_bind(&mut user, &e.dn, &fx.user_password).await.rc, 0);
    let mut user = connect(url).await;
    assert_eq!(try_bind(&mut user, &e.dn, "wrong").await.rc, 49);

    // Group mapper, LOAD_GROUPS_BY_MEMBER_ATTRIBUTE.
    let groups = search_ok(
        &mut conn,
        &fx.groups_base,
        Scope::Subtree,
        &format!("(&(member={})(objectclass=groupOfNames))", e.dn),
        &["cn", "member"],
    )
    .await;
    assert_eq!(cns(&groups), fx.user_group_set());
    for g in &groups {
        assert!(dn_set(&attr(g, "member")).contains(&norm_dn(&fx.user_dn)));
    }

    // Full sync paged by batch size (5 here), every page CRITICAL.
    let p = paged_search(&mut conn, 5, true, &fx.users_base, Scope::Subtree, &format!("(&{classes})"), &attrs).await;
    assert_eq!(p.entries.len(), fx.user_count);
    assert!(p.pages > 1 || fx.user_count <= 5);
    let uuids: BTreeSet<String> = p.entries.iter().map(|e| first(e, "entryUUID")).collect();
    assert_eq!(uuids.len(), fx.user_count, "entryUUIDs are unique");

    // Changed-users sync since the newest timestamp seen (plus one second).
    let newest = p
        .entries
        .iter()
        .flat_map(|e| [first(e, "createTimestamp"), first(e, "modifyTimestamp")])
        .map(|t| parse_gt(&t))
        .max()
        .expect("timestamps");
    let last_sync = format_gt(newest + 1);
    let changed_filter = format!("(&{classes}(|(createTimestamp>={last_sync})(modifyTimestamp>={last_sync})))");
    let (before, res) =
        search_ctrl(&mut conn, critical_page(vec![]), &fx.users_base, Scope::Subtree, &changed_filter, &attrs).await;
    assert_eq!(res.rc, 0);
    assert!(before.is_empty(), "no user changed after the last sync yet");
    let Some(touch) = &fx.touch else {
        println!("replay_keycloak: fixture cannot change users; changed-users sync not replayed");
        return;
    };
    wait_past(newest).await;
    touch(fx.user_login.clone()).await;
    let (after, res) =
        search_ctrl(&mut conn, critical_page(vec![]), &fx.users_base, Scope::Subtree, &changed_filter, &attrs).await;
    assert_eq!(res.rc, 0);
    let changed: Vec<String> = after.iter().map(|e| first(e, "uid")).collect();
    assert_eq!(changed, vec![fx.user_login.clone()], "changed-users sync finds the changed user and no other");
}

// ---- Foreman (net-ldap, posix) -------------------------------------------------------------------------

/// net-ldap: a new TCP connection per operation, bind, one op, socket closed without Unbind.
async fn netldap_op(
    url: &str,
    dn: &str,
    pw: &str,
    op: Option<(&str, LdapSearchScope, &str, &[&str], bool)>,
) -> (LdapResultCode, Vec<ldap3_proto::proto::LdapSearchResultEntry>) {
    let addr: std::net::SocketAddr = url.trim_start_matches("ldap://").parse().expect("ldap://host:port");
    let mut raw = Raw::connect(addr).await;
    let r = raw.bind(dn, pw).await;
    if r.code != LdapResultCode::Success {
        raw.drop_socket();
        return (r.code, Vec::new());
    }
    let Some((base, scope, filter, attrs, paged)) = op else {
        raw.drop_socket();
        return (r.code, Vec::new());
    };
    let mut all = Vec::new();
    let mut cookie = Vec::new();
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(pages < 10_000, "paging does not end");
        let ctrl =
            if paged { vec![LdapControl::SimplePagedResults { size: 126, cookie: cookie.clone() }] } else { vec![] };
        let (entries, done, ctrls) = raw.search(search_req(base, scope.clone(), filter, attrs), ctrl).await;
        assert_eq!(done.code, LdapResultCode::Success, "{filter}: {}", done.message);
        if paged {
            assert!(entries.len() <= 126);
        }
        all.extend(entries);
        let next = ctrls.iter().find_map(|c| match c {
            LdapControl::SimplePagedResults { cookie, .. } => Some(cookie.clone()),
            _ => None,
        });
        match next {
            Some(c) if paged && !c.is_empty() => cookie = c,
            _ if paged && next.is_none() => {
                panic!("paged search without a paged-results response control")
            }
            _ => break,
        }
    }
    raw.drop_socket();
    (LdapResultCode::Success, all)
}

pub async fn replay_foreman(url: &str, fx: &DirFixture) {
    let (sdn, spw) = (fx.service_dn.as_str(), fx.service_password.as_str());
    let rootdse_attrs = [
        "altServer",
        "namingContexts",
        "supportedCapabilities",
        "supportedControl",
        "supportedExtension",
        "supportedFeatures",
        "supportedLdapVersion",
        "supportedSASLMechanisms",
    ];
    let user_filter = format!("(uid={})", fx.user_login);
    let sub = LdapSearchScope::Subtree;

    // 1. service bind alone
    assert_eq!(netldap_op(url, sdn, spw, None).await.0, LdapResultCode::Success);
    // 2. RootDSE
    let (_, root) =
        netldap_op(url, sdn, spw, Some(("", LdapSearchScope::Base, "(objectClass=*)", &rootdse_attrs[..], false)))
            .await;
    assert_eq!(root.len(), 1);
    let paged = raw_attr(&root[0], "supportedControl").iter().any(|c| c == PAGED_OID);
    assert!(paged, "paging is advertised, so net-ldap pages with 126");
    // 3 + 4. user search twice, all attributes, paged 126
    for _ in 0..2 {
        let (_, users) =
            netldap_op(url, sdn, spw, Some((&fx.base_dn, sub.clone(), &user_filter, &[][..], paged))).await;
        assert_eq!(users.len(), 1);
        assert_eq!(norm_dn(&users[0].dn), norm_dn(&fx.user_dn));
        assert_eq!(raw_attr(&users[0], "mail"), vec![fx.user_mail.clone()]);
    }
    // 5. authenticate: service binds, user search for the DN, user bind
    assert_eq!(netldap_op(url, sdn, spw, None).await.0, LdapResultCode::Success);
    let (_, users) = netldap_op(url, sdn, spw, Some((&fx.base_dn, sub.clone(), &user_filter, &[][..], paged))).await;
    let user_dn = users.first().expect("user found").dn.clone();
    assert_eq!(netldap_op(url, &user_dn, &fx.user_password, None).await.0, LdapResultCode::Success);
    assert_eq!(netldap_op(url, &user_dn, "wrong-password", None).await.0, LdapResultCode::InvalidCredentials);
    // 6. usergroup sync (new LdapFluff: its own RootDSE read), posix memberuid search
    let (_, root) =
        netldap_op(url, sdn, spw, Some(("", LdapSearchScope::Base, "(objectClass=*)", &rootdse_attrs[..], false)))
            .await;
    assert_eq!(root.len(), 1);
    let (_, groups) = netldap_op(
        url,
        sdn,
        spw,
        Some((&fx.groups_base, sub.clone(), &format!("(memberuid={})", fx.user_login), &["cn"], paged)),
    )
    .await;
    let names: BTreeSet<String> = groups.iter().flat_map(|g| raw_attr(g, "cn")).map(|c| c.to_lowercase()).collect();
    assert_eq!(names, fx.posix_group_set());

    // Every user, paged with 126.
    let (_, all) = netldap_op(url, sdn, spw, Some((&fx.base_dn, sub.clone(), "(uid=*)", &[], paged))).await;
    let logins: BTreeSet<String> = all.iter().flat_map(|e| raw_attr(e, "uid")).collect();
    assert_eq!(all.len(), fx.user_count);
    assert_eq!(logins.len(), fx.user_count);

    // users_in_group: find the group by cn, read its members, turn DNs into logins.
    let (_, g) = netldap_op(
        url,
        sdn,
        spw,
        Some((&fx.groups_base, sub.clone(), &format!("(cn={})", fx.admin_group), &[], paged)),
    )
    .await;
    assert_eq!(g.len(), 1, "group by cn");
    let member_attr = ["member", "memberuid", "uniquemember"]
        .into_iter()
        .find(|a| !raw_attr(&g[0], a).is_empty())
        .expect("a member attribute");
    let gdn = g[0].dn.clone();
    let (_, ge) = netldap_op(
        url,
        sdn,
        spw,
        Some((&gdn, sub.clone(), "(|(objectClass=posixGroup)(objectClass=organizationalunit))", &[], paged)),
    )
    .await;
    let members: BTreeSet<String> = ge
        .iter()
        .flat_map(|e| raw_attr(e, member_attr))
        .map(|v| if v.contains('=') { rdn_value(&v) } else { v })
        .map(|v| v.to_lowercase())
        .collect();
    assert!(members.contains(&fx.user_login.to_lowercase()));
    assert_eq!(members, members_by_member_of(url, fx, &fx.admin_group).await);

    // All that churn left the server serving.
    assert_healthy(url, fx).await;
}
