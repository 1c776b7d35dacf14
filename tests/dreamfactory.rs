//! The DreamFactory backend: the simulator against every example exchange of the contract, the
//! backend against the simulator, outages and failures seen through the directory, and the seven
//! LDAP application replays with DreamFactory (simulated) behind idgate.

mod common;
mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use support::json_diff::{Rules, diff};

use common::{DirFixture, TouchFn, replays};
use idgate::backend::dreamfactory::DreamFactoryBackend;
use idgate::backend::{Backend, BackendError};
use idgate::config::{Config, DreamFactoryConfig, DreamFactoryLogin, Secret};
use idgate::directory::Caller;
use idgate::model::{GroupChanges, NewGroup, NewUser, User, UserChanges};
use serde_json::{Value, json};
use support::dreamfactory_sim::*;

// ---------- the simulator against the contract's examples ----------

/// Keys whose values change from run to run (clocks, tokens).
const VOLATILE: &[&str] =
    &["session_token", "session_id", "last_login_date", "token_expiry_date", "created_date", "last_modified_date"];

async fn replay_example(path: &Path) -> Result<(), String> {
    let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
    let fx: Value = serde_json::from_str(&std::fs::read_to_string(path).map_err(|e| e.to_string())?)
        .map_err(|e| format!("{name}: {e}"))?;
    let sim = DreamFactorySim::start().await;
    if name.starts_with("10-") || name.starts_with("11-") {
        // The exchange creates user 8 (and assignment 31): they did not exist yet.
        sim.delete_user(8);
        sim.set_next_user_id(8);
        sim.set_next_assignment_id(31);
    }
    let req = &fx["request"];
    let mut url =
        url::Url::parse(&format!("{}{}", sim.url(), req["path"].as_str().unwrap_or("/"))).map_err(|e| e.to_string())?;
    if let Some(q) = req["query"].as_object().filter(|q| !q.is_empty()) {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in q {
            pairs.append_pair(k, v.as_str().unwrap_or_default());
        }
    }
    let method =
        reqwest::Method::from_bytes(req["method"].as_str().unwrap_or("GET").as_bytes()).map_err(|e| e.to_string())?;
    let mut rb = reqwest::Client::new().request(method, url);
    for (k, v) in req["headers"].as_object().into_iter().flatten() {
        rb = rb.header(k.as_str(), v.as_str().unwrap_or_default());
    }
    if !req["body"].is_null() {
        rb = rb.body(serde_json::to_vec(&req["body"]).map_err(|e| e.to_string())?);
    }
    let resp = rb.send().await.map_err(|e| format!("{name}: {e}"))?;
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.map_err(|e| format!("{name}: body is not JSON: {e}"))?;
    let mut errors = Vec::new();
    if Some(u64::from(status)) != fx["response"]["status"].as_u64() {
        errors.push(format!("status: expected {}, answered {status}", fx["response"]["status"]));
    }
    errors.extend(diff(&fx["response"]["body"], &body, &Rules { skip: VOLATILE, ..Rules::default() }));
    if errors.is_empty() { Ok(()) } else { Err(format!("{name}:\n  {}", errors.join("\n  "))) }
}

#[tokio::test]
async fn dreamfactory_every_example_exchange_replays() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dreamfactory");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixture directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 27, "every example of the contract is a fixture");
    let mut failures = Vec::new();
    let mut replayed = 0;
    for f in &files {
        replayed += 1;
        if let Err(e) = replay_example(f).await {
            failures.push(e);
        }
    }
    assert_eq!(replayed, files.len(), "every file replayed");
    assert!(failures.is_empty(), "{} of {} examples differ:\n{}", failures.len(), files.len(), failures.join("\n"));
}

// ---------- the backend against the simulator ----------

fn config(sim: &DreamFactorySim) -> DreamFactoryConfig {
    DreamFactoryConfig {
        url: sim.url(),
        admin_email: ADMIN_EMAIL.into(),
        admin_password: Secret::new(ADMIN_PASSWORD),
        api_key: Some(Secret::new(APP_KEY)),
        app_id: APP_ID,
        login_attribute: DreamFactoryLogin::Email,
        timeout: Duration::from_secs(2),
        retries: 2,
        page_size: 100,
    }
}

fn backend(sim: &DreamFactorySim) -> DreamFactoryBackend {
    DreamFactoryBackend::new(&config(sim)).expect("backend")
}

fn new_user(email: &str) -> NewUser {
    NewUser {
        login: email.into(),
        first_name: "New".into(),
        last_name: "Person".into(),
        email: email.into(),
        phone: Some("+1 555 0101".into()),
        active: true,
        password: Some("New-Person-Password-1".into()),
        ..Default::default()
    }
}

#[tokio::test]
async fn dreamfactory_lists_users_and_admins_page_by_page() {
    let sim = DreamFactorySim::start().await;
    let b = DreamFactoryBackend::new(&DreamFactoryConfig { page_size: 2, ..config(&sim) }).unwrap();
    let users = b.list_users().await.expect("list");
    let ids: Vec<&str> = users.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(ids, ["u2", "u3", "u4", "u5", "u7", "u8", "u9", "a1"]);
    let jane = users.iter().find(|u| u.id == "u7").unwrap();
    assert_eq!((jane.login.as_str(), jane.first_name.as_str(), jane.last_name.as_str()), (JANE_EMAIL, "Jane", "Doe"));
    assert!(jane.active && !jane.admin);
    assert_eq!(jane.modified, Some(1740902400));
    assert!(!users.iter().find(|u| u.id == "u4").unwrap().active, "is_active=false read");
    assert!(users.iter().find(|u| u.id == "a1").unwrap().admin, "admin endpoint rows are admins");
    assert_eq!(sim.count("GET /system/user"), 4, "7 users in pages of 2");
}

#[tokio::test]
async fn dreamfactory_get_and_find() {
    let sim = DreamFactorySim::start().await;
    let b = backend(&sim);
    assert_eq!(b.get_user("u7").await.unwrap().unwrap().email, JANE_EMAIL);
    assert!(b.get_user("a1").await.unwrap().unwrap().admin);
    assert_eq!(b.get_user("a7").await.unwrap(), None, "a user's id on the admin endpoint is unknown");
    assert_eq!(b.get_user("u1").await.unwrap(), None, "an admin's id on the user endpoint is unknown");
    assert_eq!(b.get_user("7").await.unwrap(), None);
    assert_eq!(b.find_user_by_login(JANE_EMAIL).await.unwrap().unwrap().id, "u7");
    assert_eq!(b.find_user_by_login("JANE.DOE@example.com").await.unwrap().unwrap().id, "u7");
    assert_eq!(b.find_user_by_login(ADMIN_EMAIL).await.unwrap().unwrap().id, "a1");
    assert_eq!(b.find_user_by_login("nobody@example.com").await.unwrap(), None);
    // A value the filter parser would misread is looked up without a filter.
    sim.reset_counts();
    assert_eq!(b.find_user_by_login("x') OR (email like '%").await.unwrap(), None);
    let id = sim.add_user("Odd", "Quote", "o'hara@example.com", None, false);
    assert_eq!(b.find_user_by_login("o'hara@example.com").await.unwrap().unwrap().id, format!("u{id}"));
}

#[tokio::test]
async fn dreamfactory_incremental_sync_filters_on_modification_time() {
    let sim = DreamFactorySim::start().await;
    let b = backend(&sim);
    let since = time::OffsetDateTime::now_utc().unix_timestamp() - 5;
    sim.set_user_field(9, "phone", json!("+1 555 0199"));
    let changed = b.list_users_changed_since(since).await.expect("delta");
    // The gateway's own admin login bumps its account's last_modified_date (contract §3.3).
    assert_eq!(changed.iter().map(|u| u.id.as_str()).collect::<Vec<_>>(), ["u9", "a1"]);
    let later = b.list_users_changed_since(since + 3600).await.expect("delta");
    assert!(later.is_empty(), "{later:?}");
    assert!(b.capabilities().incremental_sync);
}

#[tokio::test]
async fn dreamfactory_create_update_delete_users() {
    let sim = DreamFactorySim::start().await;
    let b = backend(&sim);
    let u = b.create_user(&new_user("new.person@example.com")).await.expect("create");
    assert!(u.id.starts_with('u') && u.active);
    assert_eq!(u.phone.as_deref(), Some("+1 555 0101"));
    let n: u64 = u.id[1..].parse().unwrap();
    assert_eq!(sim.user_field(n, "name"), Some(json!("New Person")));
    assert_eq!(sim.user_password(n).as_deref(), Some("New-Person-Password-1"));

    // Created inactive: create (the flag would be dropped), then PATCH.
    sim.reset_counts();
    let off = b.create_user(&NewUser { active: false, ..new_user("off@example.com") }).await.expect("create");
    assert!(!off.active);
    let m: u64 = off.id[1..].parse().unwrap();
    assert_eq!(sim.user_active(m), Some(false));
    assert_eq!(sim.count("PATCH /system/user/{id}"), 1);

    let changed = b
        .update_user(
            &u.id,
            &UserChanges { first_name: Some("Renamed".into()), active: Some(false), ..Default::default() },
        )
        .await
        .expect("update");
    assert_eq!((changed.first_name.as_str(), changed.last_name.as_str(), changed.active), ("Renamed", "Person", false));
    assert_eq!(sim.user_field(n, "name"), Some(json!("Renamed Person")), "name follows first/last");
    let moved = b
        .update_user(&u.id, &UserChanges { email: Some("moved@example.com".into()), ..Default::default() })
        .await
        .expect("rename");
    assert_eq!(moved.login, "moved@example.com");
    let e =
        b.update_user(&u.id, &UserChanges { email: Some(JANE_EMAIL.into()), ..Default::default() }).await.unwrap_err();
    assert!(matches!(e, BackendError::Conflict(_)), "duplicate e-mail on update (500 SQLSTATE) is a conflict: {e}");
    let e = b
        .update_user(&u.id, &UserChanges { title: Some(Some("Boss".into())), ..Default::default() })
        .await
        .unwrap_err();
    assert!(matches!(e, BackendError::Unsupported { .. }), "{e}");

    b.delete_user(&u.id).await.expect("delete");
    assert!(!sim.user_exists(n));
    assert!(matches!(b.delete_user(&u.id).await, Err(BackendError::NotFound(_))));
    assert!(matches!(b.delete_user("bogus").await, Err(BackendError::NotFound(_))));
}

#[tokio::test]
async fn dreamfactory_admins_live_on_their_own_endpoint_and_promotion_is_refused() {
    let sim = DreamFactorySim::start().await;
    let b = backend(&sim);
    let a = b.create_user(&NewUser { admin: true, ..new_user("ops.admin@example.com") }).await.expect("create admin");
    assert!(a.id.starts_with('a') && a.admin);
    assert_eq!(sim.user_is_admin(a.id[1..].parse().unwrap()), Some(true));
    sim.reset_counts();
    for (id, admin) in [("u7", true), (a.id.as_str(), false)] {
        let e = b.update_user(id, &UserChanges { admin: Some(admin), ..Default::default() }).await.unwrap_err();
        match e {
            BackendError::Unsupported { what, .. } => assert!(what.contains("new id"), "{what}"),
            other => panic!("{other}"),
        }
    }
    assert_eq!(sim.total_requests(), 0, "refused before any call");
    // Restating the current flag is no change.
    let same = b.update_user("u7", &UserChanges { admin: Some(false), ..Default::default() }).await.unwrap();
    assert!(!same.admin);
    let updated =
        b.update_user(&a.id, &UserChanges { last_name: Some("Chief".into()), ..Default::default() }).await.unwrap();
    assert_eq!(updated.last_name, "Chief");
    assert_eq!(sim.count("PATCH /system/admin/{id}"), 1);
    assert!(!b.capabilities().admin_flag_write);
}

#[tokio::test]
async fn dreamfactory_passwords_set_and_checked_through_sessions() {
    let sim = DreamFactorySim::start().await;
    let b = backend(&sim);
    let jane = b.get_user("u7").await.unwrap().unwrap();
    assert!(b.check_password(&jane, JANE_PASSWORD).await.unwrap());
    assert!(!b.check_password(&jane, "Wrong-Password-0000").await.unwrap());
    assert_eq!(sim.count("POST /user/session"), 2);
    assert_eq!(sim.count("DELETE /user/session"), 1, "the session of a good check is ended");
    assert_eq!(sim.live_sessions(7), 1, "only the seeded example session remains");

    let admin = b.get_user("a1").await.unwrap().unwrap();
    assert!(b.check_password(&admin, ADMIN_PASSWORD).await.unwrap(), "admins are checked on the admin session");
    assert_eq!(sim.count("DELETE /system/admin/session"), 1);

    let dana = b.get_user("u4").await.unwrap().unwrap();
    assert!(!b.check_password(&dana, DISABLED_PASSWORD).await.unwrap(), "disabled users cannot log in");

    let e = b.set_password("u7", "short").await.unwrap_err();
    assert!(matches!(&e, BackendError::Invalid(m) if m.contains("16 characters")), "{e}");
    assert!(!e.to_string().contains("short"), "the password is not echoed");
    b.set_password("u7", "Another-Long-Password-9").await.expect("set");
    assert_eq!(sim.user_password(7).as_deref(), Some("Another-Long-Password-9"));
    assert!(b.check_password(&jane, "Another-Long-Password-9").await.unwrap());
    // A wrong end-user password is never the gateway's credential problem.
    sim.fail_route("POST /user/session", 401);
    assert_eq!(b.check_password(&jane, "Another-Long-Password-9").await, Ok(false));
    sim.fail_route("POST /user/session", 503);
    assert!(matches!(b.check_password(&jane, "x-long-enough-password").await, Err(BackendError::Unavailable(_))));
}

#[tokio::test]
async fn dreamfactory_roles_are_groups() {
    let sim = DreamFactorySim::start().await;
    let b = backend(&sim);
    let groups = b.list_groups().await.expect("groups");
    let staff = groups.iter().find(|g| g.name == "staff").unwrap();
    assert_eq!(staff.id, "3");
    assert_eq!(staff.members, ["u7", "u8"]);
    assert_eq!(staff.description.as_deref(), Some("Regular staff"));
    let auditors = groups.iter().find(|g| g.name == "auditors").unwrap();
    assert_eq!(auditors.members, ["u9"], "jane's auditors role is for another app");

    let g = b
        .create_group(&NewGroup {
            name: "ops".into(),
            description: Some("Operations".into()),
            members: vec!["u5".into()],
            ..Default::default()
        })
        .await
        .expect("create");
    let rid: u64 = g.id.parse().unwrap();
    assert_eq!(g.members, ["u5"]);
    assert_eq!(sim.role_active(rid), Some(true), "created active (the default is inactive)");
    let e = b.create_group(&NewGroup { name: "staff".into(), ..Default::default() }).await.unwrap_err();
    assert!(matches!(e, BackendError::Conflict(_)), "{e}");

    let g = b
        .update_group(&g.id, &GroupChanges { name: Some("operations".into()), description: Some(None) })
        .await
        .expect("rename");
    assert_eq!((g.name.as_str(), g.description.as_deref()), ("operations", None));

    b.add_member("3", "u2").await.expect("add");
    assert_eq!(sim.role_of(2, APP_ID), Some(3));
    b.add_member("3", "u2").await.expect("adding again is a no-op");
    let e = b.add_member("4", "u7").await.unwrap_err();
    assert!(matches!(e, BackendError::Conflict(_)), "one role per user per app: {e}");
    assert_eq!(sim.role_of(7, APP_ID), Some(3), "unchanged");
    assert!(matches!(b.add_member("99", "u2").await, Err(BackendError::NotFound(_))));
    assert!(matches!(b.add_member("3", "a1").await, Err(BackendError::Invalid(_))));

    b.remove_member("3", "u7").await.expect("remove");
    assert_eq!(sim.role_of(7, APP_ID), None);
    assert_eq!(sim.role_of(7, 5), Some(4), "the other app's assignment is untouched");
    b.delete_group(&g.id).await.expect("delete");
    assert_eq!(sim.role_name(rid), None);
    assert_eq!(sim.role_of(5, APP_ID), None, "assignments go with the role");
    assert_eq!(b.get_group(&g.id).await.unwrap(), None);
}

#[tokio::test]
async fn dreamfactory_probe_reports_credentials_and_capabilities() {
    let sim = DreamFactorySim::start().await;
    let b = backend(&sim);
    let p = b.probe().await.expect("probe");
    assert_eq!(p.backend, "dreamfactory");
    assert_eq!(p.version, None, "the System API does not tell");
    assert!(p.notes.iter().any(|n| n.contains("7 users")), "{:?}", p.notes);
    assert!(p.capabilities.member_add && p.capabilities.group_create && p.capabilities.password_check);
    assert!(!p.capabilities.admin_flag_write && !p.capabilities.external_id && !p.capabilities.employee_number);

    let missing_app = DreamFactoryBackend::new(&DreamFactoryConfig { app_id: 77, ..config(&sim) }).unwrap();
    let p = missing_app.probe().await.expect("probe");
    assert!(!p.capabilities.member_add && !missing_app.capabilities().member_remove);

    let wrong = DreamFactoryBackend::new(&DreamFactoryConfig {
        admin_password: Secret::new("Not-The-Admin-Password"),
        ..config(&sim)
    })
    .unwrap();
    let e = wrong.probe().await.unwrap_err();
    assert!(matches!(e, BackendError::Auth(_)), "{e}");
    assert!(!e.to_string().contains("Not-The-Admin-Password"));
    let e = wrong.list_users().await.unwrap_err();
    assert!(matches!(e, BackendError::Auth(_)), "{e}");
}

#[tokio::test]
async fn dreamfactory_error_mapping_and_retries() {
    let sim = DreamFactorySim::start().await;
    let b = backend(&sim);
    b.list_users().await.expect("logged in");

    // An expired session is renewed once, transparently.
    sim.expire_sessions();
    sim.reset_counts();
    assert!(b.get_user("u7").await.unwrap().is_some());
    assert_eq!(sim.count("POST /system/admin/session"), 1);
    // A 401 that survives a fresh login is the gateway's configuration problem.
    sim.fail_next(2, 401);
    assert!(matches!(b.get_user("u7").await, Err(BackendError::Auth(_))));

    // Reads are retried on 502/503/504; writes (and logins) never.
    b.list_users().await.expect("logged in again");
    sim.reset_counts();
    sim.fail_next(2, 503);
    assert!(b.get_user("u7").await.unwrap().is_some(), "retried until it worked");
    assert_eq!(sim.count("GET /system/user/{id}"), 3);
    sim.fail_next(1, 503);
    let e = b.create_user(&new_user("retry@example.com")).await.unwrap_err();
    assert!(matches!(e, BackendError::Unavailable(_)), "{e}");
    assert_eq!(sim.count("POST /system/user"), 1, "a write is sent once");
    assert_eq!(sim.user_id("retry@example.com"), None);
    sim.fail_next(1, 500);
    assert!(matches!(b.delete_user("u9").await, Err(BackendError::Unavailable(_))));
    assert!(sim.user_exists(9));

    // Batch errors become the failed record's error.
    let e = b.create_user(&new_user(JANE_EMAIL)).await.unwrap_err();
    assert!(matches!(&e, BackendError::Conflict(m) if m.contains("record 0") && m.contains("username")), "{e}");
    let e = b.create_user(&NewUser { password: Some("tooShort1".into()), ..new_user("s@example.com") }).await;
    assert!(matches!(e, Err(BackendError::Invalid(_))));
    let e = b.create_user(&new_user("not-an-email")).await.unwrap_err();
    assert!(matches!(e, BackendError::Invalid(_)), "{e}");

    // Outages and slowness are "unavailable".
    sim.set_delay(Duration::from_millis(2500));
    let slow = DreamFactoryBackend::new(&DreamFactoryConfig { retries: 0, ..config(&sim) }).unwrap();
    assert!(matches!(slow.list_users().await, Err(BackendError::Timeout(_))));
    sim.set_delay(Duration::ZERO);
    sim.stop();
    let errors = [
        b.list_users().await.unwrap_err(),
        b.set_password("u7", "Secret-Never-Shown-123").await.unwrap_err(),
        b.check_password(&User { id: "u7".into(), login: JANE_EMAIL.into(), ..Default::default() }, JANE_PASSWORD)
            .await
            .unwrap_err(),
    ];
    for e in &errors {
        assert!(e.is_transient(), "{e}");
        let text = format!("{e} {e:?}");
        for secret in [ADMIN_PASSWORD, APP_KEY, "Secret-Never-Shown-123", JANE_PASSWORD] {
            assert!(!text.contains(secret), "{text}");
        }
    }
    sim.restart().await;
    assert!(b.list_users().await.is_ok(), "recovers");
}

// ---------- through the directory and LDAP ----------

async fn start(sim: &DreamFactorySim, cache: &str) -> idgate::app::Running {
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
        kind = "dreamfactory"
        url = "{}"
        admin_email = "{ADMIN_EMAIL}"
        admin_password = "{ADMIN_PASSWORD}"
        app_id = {APP_ID}
        timeout = "1s"
        retries = 0
        "#,
        sim.url()
    );
    idgate::app::start(Config::parse(&text).expect("config")).await.expect("server starts")
}

const QUIET: &str = "refresh_interval = \"1h\"\nfull_refresh_interval = \"1h\"";

#[tokio::test]
async fn dreamfactory_failed_writes_are_never_cached() {
    let sim = DreamFactorySim::start().await;
    let r = start(&sim, QUIET).await;
    let dir = r.directory.clone();
    let actor = Caller::system();
    let before = dir.snapshot().unwrap().user_by_id("u7").cloned().unwrap();

    sim.fail_next(1, 500);
    let change = UserChanges { first_name: Some("Nope".into()), ..Default::default() };
    assert!(dir.update_user(&actor, "u7", change.clone()).await.is_err());
    sim.set_delay(Duration::from_millis(1500));
    assert!(dir.update_user(&actor, "u7", change.clone()).await.is_err(), "timeout");
    sim.set_delay(Duration::ZERO);
    assert_eq!(dir.snapshot().unwrap().user_by_id("u7").unwrap().first_name, before.first_name);
    assert!(
        dir.create_user(&actor, idgate::directory::UserSpec { new: new_user(JANE_EMAIL), ..Default::default() })
            .await
            .is_err()
    );
    assert_eq!(dir.snapshot().unwrap().user_count(), 7, "8 accounts less the gateway's own");
    sim.fail_next(1, 503);
    assert!(
        dir.delete_user(&actor, "u9", idgate::config::DeleteMode::Delete, |_, _| Ok::<
            _,
            idgate::directory::DirectoryError,
        >(()))
        .await
        .is_err()
    );
    assert!(dir.snapshot().unwrap().user_by_id("u9").is_some(), "not forgotten");
    let e = dir.update_user(&actor, "u7", UserChanges { admin: Some(true), ..Default::default() }).await.unwrap_err();
    assert!(e.to_string().contains("admin"), "{e}");

    // A confirmed write is visible at once.
    let ok =
        dir.update_user(&actor, "u7", UserChanges { first_name: Some("Janet".into()), ..Default::default() }).await;
    assert_eq!(ok.expect("update").first_name, "Janet");
    assert_eq!(dir.snapshot().unwrap().user_by_id("u7").unwrap().first_name, "Janet");
    // An outage: refreshes fail, the snapshot stays.
    sim.stop();
    assert!(dir.refresh_full().await.is_err());
    assert_eq!(dir.snapshot().unwrap().user_by_id("u7").unwrap().first_name, "Janet");
    sim.restart().await;
    r.shutdown().await;
}

/// The seven application replays with DreamFactory (simulated) behind idgate.
///
/// What DreamFactory's contract cannot give the replays, and how the fixture copes:
/// - A user holds at most one role per app, and groups are the roles of one app, so every user is
///   in at most one group: the replays' `login_group` and `admin_group` are the same group
///   (`staff`), and `user_groups` has one entry.
/// - Logins are e-mail addresses (DreamFactory's default login attribute), so the user DNs read
///   `uid=jane.doe@example.com,...`.
/// - Nothing else is skipped: the `touch` steps change the user in DreamFactory and the incremental
///   refresh finds it by `last_modified_date`.
#[tokio::test]
async fn client_replays_against_dreamfactory() {
    let sim = Arc::new(DreamFactorySim::start().await);
    let r = start(&sim, QUIET).await;
    let url = format!("ldap://{}", r.ldap_addr);
    let users = r.directory.health().users;
    assert_eq!(users, 7, "8 accounts less the gateway's own");
    let (sim2, dir) = (sim.clone(), r.directory.clone());
    let touch: TouchFn = Arc::new(move |login: String| {
        let (sim, dir) = (sim2.clone(), dir.clone());
        Box::pin(async move {
            let id = sim.user_id(&login).expect("user exists");
            let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
            sim.set_user_field(id, "phone", json!(format!("+1 555 {stamp}")));
            dir.refresh_incremental().await.expect("incremental refresh");
        })
    });
    let base = "dc=example,dc=com";
    let fx = DirFixture {
        base_dn: base.into(),
        users_base: format!("ou=people,{base}"),
        groups_base: format!("ou=groups,{base}"),
        service_dn: format!("cn=reader,ou=services,{base}"),
        service_password: "svc-pw".into(),
        user_login: JANE_EMAIL.into(),
        user_password: JANE_PASSWORD.into(),
        user_dn: format!("uid={JANE_EMAIL},ou=people,{base}"),
        user_mail: JANE_EMAIL.into(),
        user_groups: vec!["staff".into()],
        user_nested_groups: Vec::new(),
        primary_group: Some("users".into()),
        login_group: "staff".into(),
        admin_group: "staff".into(),
        outsider_login: OUTSIDER_EMAIL.into(),
        outsider_password: OUTSIDER_PASSWORD.into(),
        disabled_login: DISABLED_EMAIL.into(),
        disabled_password: DISABLED_PASSWORD.into(),
        user_count: users,
        touch: Some(touch),
    };
    replays::replay_nextcloud(&url, &fx).await;
    replays::replay_gitea(&url, &fx).await;
    replays::replay_grafana(&url, &fx).await;
    replays::replay_jenkins(&url, &fx).await;
    // Every DreamFactory login bumps the account's last_modified_date, so the password checks of
    // the replays above changed users; a periodic refresh would pick that up before SSSD takes its
    // baseline (with the gateway's own account published, its login stamp used to mask this).
    r.directory.refresh_incremental().await.expect("refresh");
    replays::replay_sssd(&url, &fx).await;
    replays::replay_keycloak(&url, &fx).await;
    replays::replay_foreman(&url, &fx).await;
    assert_eq!(sim.live_sessions(7), 1, "every password-check session was ended (the seeded one remains)");
    r.shutdown().await;
}

// ---------- the gateway's own account ----------

#[tokio::test]
async fn dreamfactory_own_account_is_the_login_the_backend_reports() {
    let sim = DreamFactorySim::start().await;
    assert_eq!(backend(&sim).own_login().as_deref(), Some(ADMIN_EMAIL), "e-mail logins: known from the config");

    // With `username` logins, the admin row's username is the login: learnt by probe or a listing.
    sim.set_user_field(1, "username", json!("df-gateway"));
    let cfg = DreamFactoryConfig { login_attribute: DreamFactoryLogin::Username, ..config(&sim) };
    let b = DreamFactoryBackend::new(&cfg).unwrap();
    assert_eq!(b.own_login(), None, "not known before DreamFactory said it");
    let r = b.probe().await.unwrap();
    assert_eq!(b.own_login().as_deref(), Some("df-gateway"));
    assert!(r.notes.iter().any(|n| n.contains("df-gateway")), "{:?}", r.notes);
    let b = DreamFactoryBackend::new(&cfg).unwrap();
    let users = b.list_users().await.unwrap();
    assert!(users.iter().any(|u| u.login == "df-gateway" && u.admin), "the backend itself still lists it");
    assert_eq!(b.own_login().as_deref(), Some("df-gateway"));
    // Other administrators are people's accounts: published, not system accounts.
    let other = sim.add_user("Ada", "Min", "ada.min@example.com", Some("Ada-Password-0000001"), true);
    let users = b.list_users().await.unwrap();
    let ada = users.iter().find(|u| u.id == format!("a{other}")).unwrap();
    assert!(ada.admin && !ada.system);
    assert_eq!(b.own_login().as_deref(), Some("df-gateway"));
}

#[tokio::test]
async fn dreamfactory_own_account_is_neither_listed_nor_able_to_bind() {
    let sim = DreamFactorySim::start().await;
    let other = sim.add_user("Ada", "Min", "ada.min@example.com", Some("Ada-Password-0000001"), true);
    let r = start(&sim, QUIET).await;
    let snap = r.directory.snapshot().unwrap();
    assert!(snap.user_by_id("a1").is_none() && snap.user_by_login(ADMIN_EMAIL).is_none());
    assert!(snap.user_by_id(&format!("a{other}")).is_some(), "another administrator is published");
    let peer: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let before = sim.count("POST /system/admin/session");
    for login in [ADMIN_EMAIL, "ADMIN@example.com"] {
        let out = r.directory.authenticate_user(login, ADMIN_PASSWORD, peer).await.unwrap();
        assert!(matches!(out, idgate::directory::AuthOutcome::Invalid), "{login}: {out:?}");
    }
    let url = format!("ldap://{}", r.ldap_addr);
    let mut ldap = common::connect(&url).await;
    let res =
        common::try_bind(&mut ldap, &format!("uid={ADMIN_EMAIL},ou=people,dc=example,dc=com"), ADMIN_PASSWORD).await;
    assert_eq!(res.rc, 49, "{res}");
    assert_eq!(sim.count("POST /system/admin/session"), before, "its password is never checked");
    let out = r.directory.authenticate_user("ada.min@example.com", "Ada-Password-0000001", peer).await.unwrap();
    assert!(matches!(out, idgate::directory::AuthOutcome::User(_)), "{out:?}");
    r.shutdown().await;
}
