//! `DolibarrBackend` against the Dolibarr simulator.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use idgate::backend::dolibarr::DolibarrBackend;
use idgate::backend::{Backend, BackendError};
use idgate::config::{AttributeSyntax, CustomAttribute, DolibarrConfig, Secret};
use idgate::model::{GroupChanges, NewGroup, NewUser, User, UserChanges};
use serde_json::json;
use support::dolibarr_sim::{DolibarrSim, ExtraType, GATEWAY_LOGIN, JDOE_PASSWORD, READER_PASSWORD, Version};

fn config(sim: &DolibarrSim, key: &str) -> DolibarrConfig {
    DolibarrConfig {
        url: sim.url(),
        api_key: Secret::new(key),
        entity: None,
        timeout: Duration::from_secs(3),
        retries: 2,
        page_size: 100,
        system_filter: None,
    }
}

fn backend(sim: &DolibarrSim) -> DolibarrBackend {
    DolibarrBackend::new(&config(sim, sim.admin_key())).expect("backend")
}

#[tokio::test]
async fn dolibarr_reads_users_and_skips_specimen() {
    let sim = DolibarrSim::start(Version::V22).await;
    let b = backend(&sim);
    let users = b.list_users().await.unwrap();
    let ids: Vec<&str> = users.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(ids, ["1", "2", "3", "4", "6", "7", "8", "9", "10"]);
    let jdoe = &users[1];
    assert_eq!(jdoe.login, "jdoe");
    assert_eq!(jdoe.first_name, "John");
    assert_eq!(jdoe.phone.as_deref(), Some("+33 1 00 00 00 01"));
    assert_eq!(jdoe.mobile.as_deref(), Some("+33 6 00 00 00 01"));
    assert_eq!(jdoe.title.as_deref(), Some("Engineer"));
    assert_eq!(jdoe.employee_number.as_deref(), Some("EMP-0001"));
    assert_eq!(jdoe.locale.as_deref(), Some("fr_FR"));
    assert!(jdoe.active && !jdoe.admin);
    assert!(users[0].admin);
    assert_eq!(jdoe.created, Some(1795407473));

    assert_eq!(b.get_user("2").await.unwrap().unwrap().login, "jdoe");
    assert_eq!(b.get_user("99999").await.unwrap(), None);
    sim.reset_counts();
    assert_eq!(b.get_user("0").await.unwrap(), None);
    assert_eq!(b.get_user("abc").await.unwrap(), None);
    assert_eq!(sim.total_requests(), 0, "id 0 and non-numeric ids need no call");

    assert_eq!(b.find_user_by_login("reader").await.unwrap().unwrap().id, "7");
    assert_eq!(b.find_user_by_login("nosuchuser").await.unwrap(), None);
    assert_eq!(b.find_user_by_login("bob@example.com").await.unwrap(), None);
    assert_eq!(sim.count("GET /users/login/{id}"), 2);
}

#[tokio::test]
async fn dolibarr_tolerates_type_flips() {
    let sim = DolibarrSim::start(Version::V22).await;
    sim.set_user_field(2, "statut", json!(1));
    sim.set_user_field(2, "admin", json!(0));
    sim.set_user_field(2, "datec", json!(""));
    sim.set_user_field(2, "lang", json!(null));
    sim.set_user_field(2, "ref_employee", json!(1234));
    let u = backend(&sim).get_user("2").await.unwrap().unwrap();
    assert!(u.active);
    assert_eq!(u.created, None);
    assert_eq!(u.locale, None);
    assert_eq!(u.employee_number.as_deref(), Some("1234"));
}

#[tokio::test]
async fn dolibarr_pages_through_users() {
    let sim = DolibarrSim::start(Version::V22).await;
    for i in 0..5 {
        sim.add_user(&format!("extra{i}"), "E", "X", "", None);
    }
    let mut cfg = config(&sim, sim.admin_key());
    cfg.page_size = 3;
    let b = DolibarrBackend::new(&cfg).unwrap();
    let users = b.list_users().await.unwrap();
    assert_eq!(users.len(), 14);
    // 14 users in pages of 3: five pages, the last one short; plus one page of system ids.
    assert_eq!(sim.count("GET /users"), 6);
    let mut ids: Vec<u64> = users.iter().map(|u| u.id.parse().unwrap()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 14);
}

#[tokio::test]
async fn dolibarr_incremental_sync_uses_server_local_time() {
    let sim = DolibarrSim::start(Version::V22).await;
    sim.set_utc_offset(3600);
    let b = backend(&sim);
    b.probe().await.unwrap();
    let since = 1795407480;
    sim.set_user_modified(2, since + 1);
    sim.set_user_modified(8, since);
    let changed = b.list_users_changed_since(since).await.unwrap();
    let ids: Vec<&str> = changed.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(ids, ["2", "8"]);
    assert!(b.list_users_changed_since(since + 10).await.unwrap().is_empty());
}

fn new_user(login: &str) -> NewUser {
    NewUser {
        login: login.into(),
        first_name: "New".into(),
        last_name: "Person".into(),
        email: format!("{login}@example.com"),
        phone: Some("+1 555".into()),
        title: Some("Tester".into()),
        employee_number: Some("E-9".into()),
        active: true,
        password: Some("Long-enough-Secret-1".into()),
        ..Default::default()
    }
}

#[tokio::test]
async fn dolibarr_creates_updates_and_deletes_users() {
    let sim = DolibarrSim::start(Version::V22).await;
    let b = backend(&sim);
    let u = b.create_user(&new_user("newbie")).await.unwrap();
    assert_eq!(u.id, "11");
    assert_eq!(u.title.as_deref(), Some("Tester"));
    assert!(u.active);
    assert_eq!(sim.user_password(11).as_deref(), Some("Long-enough-Secret-1"));
    assert_eq!(sim.count("PUT /users/{id}"), 0);

    let mut off = new_user("sleeper");
    off.active = false;
    let u = b.create_user(&off).await.unwrap();
    assert!(!u.active, "created disabled through a follow-up PUT");
    assert_eq!(sim.count("PUT /users/{id}"), 1);

    assert!(matches!(b.create_user(&new_user("jdoe")).await, Err(BackendError::Conflict(_))));
    let mut short = new_user("shorty");
    short.password = Some("short".into());
    match b.create_user(&short).await {
        Err(BackendError::Invalid(m)) => assert!(m.contains("at least 12 chars"), "{m}"),
        other => panic!("{other:?}"),
    }
    let mut html = new_user("htmlpw");
    html.password = Some("Jdoe<b>Secret</b>-3".into());
    sim.reset_counts();
    assert!(matches!(b.create_user(&html).await, Err(BackendError::Invalid(_))));
    assert_eq!(sim.total_requests(), 0);

    let changes = UserChanges {
        email: Some("n2@example.com".into()),
        title: Some(None),
        active: Some(false),
        ..Default::default()
    };
    let u = b.update_user("11", &changes).await.unwrap();
    assert_eq!(u.email, "n2@example.com");
    assert_eq!(u.title, None);
    assert!(!u.active);
    assert!(matches!(
        b.update_user("3", &UserChanges { login: Some("jdoe".into()), ..Default::default() }).await,
        Err(BackendError::Conflict(_))
    ));
    match b.update_user("9", &UserChanges { admin: Some(false), ..Default::default() }).await {
        Err(BackendError::Unsupported { what, .. }) => assert!(what.contains("admin"), "{what}"),
        other => panic!("{other:?}"),
    }

    b.delete_user("11").await.unwrap();
    assert!(!sim.user_exists(11));
    assert!(matches!(b.delete_user("11").await, Err(BackendError::NotFound(_))));
}

#[tokio::test]
async fn dolibarr_create_follow_up_failure_is_reported() {
    let sim = DolibarrSim::start(Version::V22).await;
    let b = backend(&sim);
    let mut off = new_user("halfway");
    off.active = false;
    sim.fail_route("PUT /users/{id}", 503);
    let e = b.create_user(&off).await.unwrap_err();
    assert!(matches!(e, BackendError::Unavailable(_)), "{e:?}");
    assert!(e.to_string().contains("user 11 was created"), "{e}");
    assert!(sim.user_exists(11));
}

#[tokio::test]
async fn dolibarr_passwords() {
    let sim = DolibarrSim::start(Version::V22).await;
    let b = backend(&sim);
    let jdoe = b.get_user("2").await.unwrap().unwrap();
    // jdoe has no API token and no right to create one: the 403 still proves the password.
    assert!(b.check_password(&jdoe, JDOE_PASSWORD).await.unwrap());
    assert!(!b.check_password(&jdoe, "wrong-password").await.unwrap());
    b.set_password("2", "Brand-New-Secret-2").await.unwrap();
    assert!(b.check_password(&jdoe, "Brand-New-Secret-2").await.unwrap());
    assert!(!b.check_password(&jdoe, JDOE_PASSWORD).await.unwrap());
    assert!(matches!(b.set_password("2", "short").await, Err(BackendError::Invalid(_))));
    assert!(matches!(b.set_password("2", "Jdoe<b>Secret</b>-3").await, Err(BackendError::Invalid(_))));
    let reader = User { id: "7".into(), login: "reader".into(), ..Default::default() };
    assert!(b.check_password(&reader, READER_PASSWORD).await.unwrap());
    sim.disable_user(7);
    assert!(!b.check_password(&reader, READER_PASSWORD).await.unwrap());
    assert_eq!(sim.count("GET /login"), 0, "never GET /login");
    sim.fail_next(1, 503);
    assert!(matches!(b.check_password(&jdoe, "x-password-x").await, Err(BackendError::Unavailable(_))));
}

#[tokio::test]
async fn dolibarr_groups_and_membership_on_22() {
    let sim = DolibarrSim::start(Version::V22).await;
    let b = backend(&sim);
    let groups = b.list_groups().await.unwrap();
    let summary: Vec<(&str, &str, Vec<&str>)> = groups
        .iter()
        .map(|g| (g.id.as_str(), g.name.as_str(), g.members.iter().map(String::as_str).collect()))
        .collect();
    assert_eq!(summary, [("1", "developers", vec!["2", "7"]), ("2", "sales", vec!["2"]), ("3", "empty-group", vec![])]);
    assert_eq!(b.get_group("99999").await.unwrap(), None);
    assert_eq!(b.get_group("0").await.unwrap(), None);
    assert_eq!(b.get_group("2").await.unwrap().unwrap().description, None);

    b.add_member("3", "4").await.unwrap();
    assert_eq!(sim.group_members(3), Some(vec![4]));
    b.add_member("3", "4").await.unwrap();
    assert!(matches!(b.add_member("99999", "4").await, Err(BackendError::NotFound(_))));
    sim.reset_counts();
    sim.fail_next(1, 503);
    assert!(b.add_member("3", "2").await.is_err());
    assert_eq!(sim.count("GET /users/{id}/setGroup/{id}"), 1, "setGroup is never retried");

    sim.reset_counts();
    for r in [
        b.create_group(&NewGroup { name: "x".into(), ..Default::default() }).await.map(|_| ()),
        b.update_group("1", &GroupChanges { name: Some("y".into()), ..Default::default() }).await.map(|_| ()),
        b.delete_group("1").await,
        b.remove_member("1", "2").await,
    ] {
        match r {
            Err(BackendError::Unsupported { backend, what }) => {
                assert_eq!(backend, "dolibarr");
                assert!(what.contains("Dolibarr 23+"), "{what}");
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(sim.total_requests(), 0, "no HTTP call for unsupported operations");
}

#[tokio::test]
async fn dolibarr_groups_on_23() {
    let sim = DolibarrSim::start(Version::V23).await;
    let b = backend(&sim);
    let report = b.probe().await.unwrap();
    assert_eq!(report.version.as_deref(), Some("23.0.0"));
    assert!(b.capabilities().group_create && b.capabilities().member_remove);
    let g = b
        .create_group(&NewGroup { name: "ops".into(), members: vec!["2".into()], ..Default::default() })
        .await
        .unwrap();
    assert_eq!(g.name, "ops");
    assert_eq!(g.members, ["2"]);
    let g = b.update_group(&g.id, &GroupChanges { name: Some("ops2".into()), ..Default::default() }).await.unwrap();
    assert_eq!(g.name, "ops2");
    b.remove_member(&g.id, "2").await.unwrap();
    assert_eq!(b.get_group(&g.id).await.unwrap().unwrap().members, Vec::<String>::new());
    b.delete_group(&g.id).await.unwrap();
    assert_eq!(b.get_group(&g.id).await.unwrap(), None);
}

#[tokio::test]
async fn dolibarr_probe_reports_version_permissions_and_auth() {
    let sim = DolibarrSim::start(Version::V22).await;
    let b = backend(&sim);
    let before = b.capabilities();
    assert!(!before.group_create && before.member_add && before.incremental_sync && !before.external_id);
    let r = b.probe().await.unwrap();
    assert_eq!(r.version.as_deref(), Some("22.0.4"));
    assert_eq!(r.backend, "dolibarr");
    assert!(!r.capabilities.group_create && !r.capabilities.member_remove && !r.capabilities.admin_flag_write);
    assert_eq!(sim.count("GET /users/groups/{id}"), 0, "22 needs no v23 probe");

    let reader = DolibarrBackend::new(&config(&sim, sim.reader_key())).unwrap();
    let r = reader.probe().await.unwrap();
    assert!(r.notes.iter().any(|n| n.contains("253")), "{:?}", r.notes);
    assert!(!reader.capabilities().user_create && !reader.capabilities().user_delete);

    let norights = DolibarrBackend::new(&config(&sim, sim.norights_key())).unwrap();
    let r = norights.probe().await.unwrap();
    assert!(r.notes.iter().any(|n| n.contains("251")), "{:?}", r.notes);

    let bad_key = "0123456789abcdef0123456789abcdef01234567";
    let bad = DolibarrBackend::new(&config(&sim, bad_key)).unwrap();
    match bad.probe().await {
        Err(BackendError::Auth(m)) => assert!(!m.contains(bad_key)),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn dolibarr_transient_failures_and_error_mapping() {
    let sim = DolibarrSim::start(Version::V22).await;
    let b = backend(&sim);
    // One 503, then success: the read is retried.
    sim.fail_next(1, 503);
    assert!(b.get_user("2").await.unwrap().is_some());
    assert_eq!(sim.count("GET /users/{id}"), 2);
    // Writes are not retried.
    sim.reset_counts();
    sim.fail_next(1, 503);
    assert!(matches!(b.create_user(&new_user("once")).await, Err(BackendError::Unavailable(_))));
    assert_eq!(sim.count("POST /users"), 1);
    // Retries are bounded.
    sim.reset_counts();
    sim.fail_next(10, 502);
    assert!(matches!(b.get_user("2").await, Err(BackendError::Unavailable(_))));
    assert_eq!(sim.count("GET /users/{id}"), 3);
    sim.clear_failures();
    sim.fail_next(1, 500);
    assert!(matches!(b.get_user("2").await, Err(BackendError::Unavailable(_))));
    let norights = DolibarrBackend::new(&config(&sim, sim.norights_key())).unwrap();
    match norights.list_users().await {
        Err(BackendError::Forbidden(m)) => assert!(m.contains("not allowed to read list of users")),
        other => panic!("{other:?}"),
    }
    let bad_key = "0123456789abcdef0123456789abcdef01234567";
    let bad = DolibarrBackend::new(&config(&sim, bad_key)).unwrap();
    let e = bad.list_users().await.unwrap_err();
    assert!(matches!(e, BackendError::Auth(_)));
    assert!(!e.to_string().contains(bad_key));
}

#[tokio::test]
async fn dolibarr_timeouts_and_outages() {
    let sim = DolibarrSim::start(Version::V22).await;
    let mut cfg = config(&sim, sim.admin_key());
    cfg.timeout = Duration::from_millis(200);
    cfg.retries = 0;
    let b = DolibarrBackend::new(&cfg).unwrap();
    sim.set_delay(Duration::from_millis(600));
    let e = b.get_user("2").await.unwrap_err();
    assert!(matches!(e, BackendError::Timeout(_)), "{e:?}");
    assert!(!e.to_string().contains(sim.admin_key()));
    sim.set_delay(Duration::ZERO);

    let b = backend(&sim);
    assert!(b.get_user("2").await.unwrap().is_some());
    sim.stop();
    let e = b.list_users().await.unwrap_err();
    assert!(matches!(e, BackendError::Unavailable(_)), "{e:?}");
    assert!(!e.to_string().contains(sim.admin_key()));
    sim.restart().await;
    let fresh = backend(&sim);
    assert_eq!(fresh.list_users().await.unwrap().len(), 9);
}

fn attr(field: &str, syntax: AttributeSyntax, multi: bool) -> CustomAttribute {
    CustomAttribute {
        name: field.into(),
        field: field.into(),
        scim_name: None,
        syntax,
        multi,
        separator: ";".into(),
        writable: true,
        indexed: true,
    }
}

/// A simulator with four user extra fields, and a backend publishing five attributes (one of them,
/// `skills`, a multi-valued varchar); `internal` is defined in Dolibarr but not published.
async fn with_extra_fields() -> (DolibarrSim, DolibarrBackend) {
    let sim = DolibarrSim::start(Version::V22).await;
    sim.define_extra_field("costcenter", ExtraType::Varchar);
    sim.define_extra_field("badgeno", ExtraType::Int);
    sim.define_extra_field("contractend", ExtraType::Date);
    sim.define_extra_field("remote", ExtraType::Boolean);
    sim.define_extra_field("skills", ExtraType::Varchar);
    sim.define_extra_field("internal", ExtraType::Varchar);
    let b = backend(&sim).with_attributes(&[
        attr("costcenter", AttributeSyntax::String, false),
        attr("badgeno", AttributeSyntax::Integer, false),
        attr("contractend", AttributeSyntax::Date, false),
        attr("remote", AttributeSyntax::Boolean, false),
        attr("skills", AttributeSyntax::String, true),
    ]);
    (sim, b)
}

fn custom(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect())).collect()
}

#[tokio::test]
async fn dolibarr_manager_is_fk_user() {
    let sim = DolibarrSim::start(Version::V22).await;
    let b = backend(&sim);
    assert!(b.capabilities().manager);
    sim.set_user_field(2, "fk_user", json!("7"));
    assert_eq!(b.get_user("2").await.unwrap().unwrap().manager.as_deref(), Some("7"));
    for none in [json!(null), json!("0"), json!(""), json!(0), json!(-1)] {
        sim.set_user_field(2, "fk_user", none.clone());
        assert_eq!(b.get_user("2").await.unwrap().unwrap().manager, None, "{none}");
    }

    let set = |m: Option<&str>| UserChanges { manager: Some(m.map(String::from)), ..Default::default() };
    let u = b.update_user("2", &set(Some("3"))).await.unwrap();
    assert_eq!(u.manager.as_deref(), Some("3"));
    assert_eq!(sim.user_field(2, "fk_user"), Some(json!("3")));
    let u = b.update_user("2", &set(None)).await.unwrap();
    assert_eq!(u.manager, None);
    assert_eq!(sim.user_field(2, "fk_user"), Some(json!(null)));

    // A supervisor deleted in the ERP leaves its id behind.
    b.update_user("4", &set(Some("3"))).await.unwrap();
    sim.delete_user(3);
    assert_eq!(b.get_user("4").await.unwrap().unwrap().manager.as_deref(), Some("3"));
    let subordinates = b.list_users().await.unwrap().into_iter().filter(|u| u.manager.is_some()).count();
    assert_eq!(subordinates, 1);

    // Created with a manager: the follow-up PUT sets it (POST with fk_user is not recorded).
    sim.reset_counts();
    let mut n = new_user("managed");
    n.manager = Some("7".into());
    let u = b.create_user(&n).await.unwrap();
    assert_eq!(u.manager.as_deref(), Some("7"));
    assert_eq!((sim.count("POST /users"), sim.count("PUT /users/{id}")), (1, 1));
    // Without manager or extra fields: no follow-up.
    b.create_user(&new_user("plain")).await.unwrap();
    assert_eq!(sim.count("PUT /users/{id}"), 1);

    // Not a Dolibarr id: refused before any call.
    sim.reset_counts();
    for bad in ["abc", "0", "-3", "1e3"] {
        match b.update_user("2", &set(Some(bad))).await {
            Err(BackendError::Invalid(m)) => assert!(m.contains("not a Dolibarr user id"), "{m}"),
            other => panic!("{bad}: {other:?}"),
        }
    }
    assert_eq!(sim.total_requests(), 0);
}

#[tokio::test]
async fn dolibarr_extra_fields_read_in_canonical_form() {
    let (sim, b) = with_extra_fields().await;
    assert!(b.capabilities().custom_fields);
    // Users without an extra-field row: nothing.
    assert!(b.list_users().await.unwrap().iter().all(|u| u.custom.is_empty()));
    sim.set_extra(2, "costcenter", json!("CC-100"));
    sim.set_extra(2, "badgeno", json!(4711));
    sim.set_extra(2, "contractend", json!("2027-06-30"));
    sim.set_extra(2, "remote", json!(0));
    sim.set_extra(2, "skills", json!("rust;ldap; scim"));
    sim.set_extra(2, "internal", json!("never published"));
    let want = custom(&[
        ("costcenter", &["CC-100"]),
        ("badgeno", &["4711"]),
        ("contractend", &["1814313600"]),
        ("remote", &["false"]),
        ("skills", &["rust", "ldap", "scim"]),
    ]);
    assert_eq!(b.get_user("2").await.unwrap().unwrap().custom, want);
    assert_eq!(b.find_user_by_login("jdoe").await.unwrap().unwrap().custom, want);
    let listed = b.list_users().await.unwrap();
    assert_eq!(listed.iter().find(|u| u.id == "2").unwrap().custom, want);
    // A row without values (dates then read "") publishes nothing.
    for code in ["costcenter", "badgeno", "contractend", "remote", "skills"] {
        sim.set_extra(2, code, json!(null));
    }
    assert!(b.get_user("2").await.unwrap().unwrap().custom.is_empty());
    // A backend configured without attributes publishes none.
    sim.set_extra(2, "costcenter", json!("CC-100"));
    assert!(backend(&sim).get_user("2").await.unwrap().unwrap().custom.is_empty());
}

#[tokio::test]
async fn dolibarr_extra_fields_written_in_wire_types() {
    let (sim, b) = with_extra_fields().await;
    let write = |pairs: &[(&str, Option<&[&str]>)]| UserChanges {
        custom: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(|v| v.iter().map(|s| s.to_string()).collect())))
            .collect(),
        ..Default::default()
    };
    let u = b
        .update_user(
            "2",
            &write(&[
                ("costcenter", Some(&["CC-7"])),
                ("badgeno", Some(&["-12"])),
                ("contractend", Some(&["1830211200"])),
                ("remote", Some(&["true"])),
                ("skills", Some(&["a", "b c"])),
            ]),
        )
        .await
        .unwrap();
    assert_eq!(
        u.custom,
        custom(&[
            ("costcenter", &["CC-7"]),
            ("badgeno", &["-12"]),
            ("contractend", &["1830211200"]),
            ("remote", &["true"]),
            ("skills", &["a", "b c"]),
        ])
    );
    assert_eq!(sim.extra(2, "badgeno"), Some(json!(-12)));
    assert_eq!(sim.extra(2, "contractend"), Some(json!("2027-12-31")));
    assert_eq!(sim.extra(2, "remote"), Some(json!(1)));
    assert_eq!(sim.extra(2, "skills"), Some(json!("a;b c")));

    // Merge: one field changes, one is cleared, the others stay.
    let u = b.update_user("2", &write(&[("costcenter", Some(&["CC-8"])), ("badgeno", None)])).await.unwrap();
    assert_eq!(u.custom.get("costcenter").map(Vec::as_slice), Some(&["CC-8".to_string()][..]));
    assert!(!u.custom.contains_key("badgeno"));
    assert_eq!(sim.extra(2, "badgeno"), Some(json!(null)));
    assert_eq!(u.custom.get("remote").map(Vec::as_slice), Some(&["true".to_string()][..]));

    // Created with extra fields: POST, then one PUT with them.
    sim.reset_counts();
    let mut n = new_user("withextras");
    n.custom = custom(&[("costcenter", &["CC-9"]), ("badgeno", &["12"])]);
    n.active = false;
    let created = b.create_user(&n).await.unwrap();
    assert_eq!(created.custom, custom(&[("costcenter", &["CC-9"]), ("badgeno", &["12"])]));
    assert!(!created.active);
    assert_eq!((sim.count("POST /users"), sim.count("PUT /users/{id}")), (1, 1));

    // Hostile values the backend refuses before calling.
    sim.reset_counts();
    for (field, v) in [
        ("badgeno", "12abc"),
        ("badgeno", "9999999999"),
        ("contractend", "2027-06-30"),
        ("contractend", "99999999999999"),
        ("remote", "maybe"),
        ("internal", "not published"),
    ] {
        let r = b.update_user("2", &write(&[(field, Some(&[v]))])).await;
        assert!(matches!(r, Err(BackendError::Invalid(_))), "{field}={v}: {r:?}");
    }
    assert_eq!(sim.total_requests(), 0);
}

#[tokio::test]
async fn dolibarr_extra_field_refused_by_dolibarr_is_a_clear_error() {
    // Misconfigured: badgeno is an int in Dolibarr but declared a string here. Dolibarr answers a
    // bare 500 and stores nothing.
    let sim = DolibarrSim::start(Version::V22).await;
    sim.define_extra_field("badgeno", ExtraType::Int);
    sim.set_extra(2, "badgeno", json!(4711));
    let b = backend(&sim).with_attributes(&[attr("badgeno", AttributeSyntax::String, false)]);
    let changes = UserChanges {
        title: Some(Some("changed".into())),
        custom: [("badgeno".to_string(), Some(vec!["abc".to_string()]))].into(),
        ..Default::default()
    };
    match b.update_user("2", &changes).await {
        Err(BackendError::Invalid(m)) => {
            assert!(m.contains("extra-field value") && m.contains("nothing stored"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(sim.extra(2, "badgeno"), Some(json!(4711)));
    assert_eq!(sim.user_field(2, "job"), Some(json!("Engineer")), "nothing else changed either");
    // A bare 500 without extra fields stays what it is: the server failing.
    sim.fail_route("PUT /users/{id}", 500);
    let r = b.update_user("2", &UserChanges { title: Some(Some("x".into())), ..Default::default() }).await;
    assert!(matches!(r, Err(BackendError::Unavailable(_))), "{r:?}");
    // On create, the user exists and the error says so.
    let mut n = new_user("badextra");
    n.custom = custom(&[("badgeno", &["abc"])]);
    match b.create_user(&n).await {
        Err(BackendError::Invalid(m)) => assert!(m.contains("was created") && m.contains("extra-field"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn dolibarr_system_accounts_and_own_account() {
    let sim = DolibarrSim::start(Version::V22).await;
    let b = backend(&sim);
    assert_eq!(b.own_login(), None, "known only after probe");
    // Before any full list, a single read asks for the system ids once.
    assert!(b.get_user("1").await.unwrap().unwrap().system);
    assert!(!b.find_user_by_login("jdoe").await.unwrap().unwrap().system);
    let r = b.probe().await.unwrap();
    assert_eq!(b.own_login().as_deref(), Some(GATEWAY_LOGIN));
    assert!(r.notes.iter().any(|n| n.contains("idgate") && n.contains("hidden")), "{:?}", r.notes);
    assert!(r.notes.iter().any(|n| n.contains("(t.entity:=:0) selects 1 account")), "{:?}", r.notes);
    assert!(r.capabilities.manager && r.capabilities.custom_fields);

    sim.reset_counts();
    let users = b.list_users().await.unwrap();
    let system: Vec<&str> = users.iter().filter(|u| u.system).map(|u| u.login.as_str()).collect();
    // The superadmin only: the gateway's account is hidden as the own account, opsadmin is a person.
    assert_eq!(system, ["admin"]);
    assert_eq!(sim.count("GET /users"), 2, "one list plus one id-only call");
    // Delta reads use the ids of the last full list.
    sim.set_user_modified(1, 1795407481);
    let changed = b.list_users_changed_since(1795407480).await.unwrap();
    assert!(changed.iter().find(|u| u.id == "1").unwrap().system);

    // A filter of one's own; an empty one marks nobody and costs nothing.
    let mut cfg = config(&sim, sim.admin_key());
    cfg.system_filter = Some("(t.login:in:'opsadmin','reader')".into());
    let custom_filter = DolibarrBackend::new(&cfg).unwrap();
    let mut system: Vec<String> =
        custom_filter.list_users().await.unwrap().into_iter().filter(|u| u.system).map(|u| u.login).collect();
    system.sort();
    assert_eq!(system, ["opsadmin", "reader"]);
    cfg.system_filter = Some(" ".into());
    let none = DolibarrBackend::new(&cfg).unwrap();
    sim.reset_counts();
    assert!(none.list_users().await.unwrap().iter().all(|u| !u.system));
    assert_eq!(sim.count("GET /users"), 1);

    // A filter Dolibarr refuses: probe says so, and reads fail rather than publish system accounts.
    for bad in ["(t.nosuch:=:1)", "t.entity = 0 (", "(t.login:=:\"x\")"] {
        cfg.system_filter = Some(bad.into());
        let b = DolibarrBackend::new(&cfg).unwrap();
        let r = b.probe().await.unwrap();
        assert!(r.notes.iter().any(|n| n.contains("system_filter")), "{bad}: {:?}", r.notes);
        let e = b.list_users().await.unwrap_err();
        assert!(e.to_string().contains("system_filter"), "{bad}: {e}");
    }
}

#[tokio::test]
async fn dolibarr_own_account_is_learnt_without_probe() {
    let sim = DolibarrSim::start(Version::V22).await;
    let b = backend(&sim);
    // The probe at start failed (outage); the first full list still learns the key's owner.
    sim.fail_next(3, 503);
    assert!(b.probe().await.is_err());
    sim.clear_failures();
    assert_eq!(b.own_login(), None);
    b.list_users().await.unwrap();
    assert_eq!(b.own_login().as_deref(), Some(GATEWAY_LOGIN));
    sim.reset_counts();
    b.list_users().await.unwrap();
    assert_eq!(sim.count("GET /users/info"), 0, "asked once");
}
