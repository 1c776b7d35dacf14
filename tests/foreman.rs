//! The Foreman backend: the simulator checked against every contract example, the backend against
//! the simulator, fault handling through the directory, and the seven LDAP application replays
//! with idgate in front of the simulated Foreman.

mod common;
mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use support::json_diff::{Rules, diff};

use common::{DirFixture, TouchFn, replays};
use idgate::backend::foreman::ForemanBackend;
use idgate::backend::{Backend, BackendError};
use idgate::config::{Config, ForemanConfig, Secret};
use idgate::directory::snapshot::Snapshot;
use idgate::directory::{AuthOutcome, Caller, Directory, GroupSpec};
use idgate::model::{GroupChanges, NewGroup, NewUser, User, UserChanges};
use serde_json::{Value, json};
use support::foreman_sim::{ADMIN_PASSWORD, BWAYNE_PASSWORD, CKENT_PASSWORD, ForemanSim, JDOE_PASSWORD};

// ---------- the simulator against the contract's examples ----------

/// Keys holding clocks: compared by shape (`2025-03-01 10:15:30 UTC` vs ISO), not by value.
const TIMES: &[&str] = &["created_at", "updated_at", "last_login_on"];
/// Keys whose values are random per record.
const OPAQUE: &[&str] = &["password_hash", "password_salt"];

fn shape(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(s.chars().map(|c| if c.is_ascii_digit() { '0' } else { c }).collect()),
        other => other.clone(),
    }
}

/// Brings the simulator to the state an example starts from.
fn prepare(sim: &ForemanSim, name: &str) {
    match name {
        // asmith (8) is the user this example creates.
        "10-create-user-internal" => {
            sim.delete_user(8);
            sim.set_next_user_id(8);
        }
        "25-delete-usergroup" => {
            assert_eq!(sim.add_group("dbas", &[]), 14);
        }
        "30-test-ldap-auth-source" => {
            assert_eq!(sim.add_ldap_source("identity-gateway"), 4);
        }
        _ => {}
    }
}

async fn replay_example(path: &Path) -> Result<(), String> {
    let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let fx: Value = serde_json::from_str(&text).map_err(|e| format!("{name}: {e}"))?;
    let sim = ForemanSim::start().await;
    prepare(&sim, &name);
    let req = &fx["request"];
    let mut url =
        url::Url::parse(&format!("{}{}", sim.url(), req["path"].as_str().unwrap_or("/"))).map_err(|e| e.to_string())?;
    if let Some(q) = req["query"].as_object().filter(|q| !q.is_empty()) {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in q {
            pairs.append_pair(k, v.as_str().unwrap_or(&v.to_string()));
        }
    }
    let method =
        reqwest::Method::from_bytes(req["method"].as_str().unwrap_or("GET").as_bytes()).map_err(|e| e.to_string())?;
    let mut rb = reqwest::Client::new().request(method, url);
    if let Some(h) = req["headers"].as_object() {
        for (k, v) in h {
            rb = rb.header(k.as_str(), v.as_str().unwrap_or_default());
        }
    }
    if !req["body"].is_null() {
        rb = rb.body(serde_json::to_vec(&req["body"]).map_err(|e| e.to_string())?);
    }
    let resp = rb.send().await.map_err(|e| format!("{name}: {e}"))?;
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.map_err(|e| format!("{name}: body is not JSON: {e}"))?;
    let want = &fx["response"];
    let mut errors = Vec::new();
    if Some(u64::from(status)) != want["status"].as_u64() {
        errors.push(format!("status: example {}, answered {status}", want["status"]));
    }
    errors.extend(diff(
        &want["body"],
        &body,
        &Rules {
            skip: OPAQUE,
            loose: TIMES,
            loose_eq: |a, b| a.is_null() == b.is_null() && shape(a) == shape(b),
            trimmed: false,
        },
    ));
    if errors.is_empty() {
        Ok(())
    } else {
        errors.truncate(15);
        Err(format!("{name}:\n  {}", errors.join("\n  ")))
    }
}

#[tokio::test]
async fn foreman_simulator_answers_every_contract_example() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/foreman");
    let all: Vec<_> =
        std::fs::read_dir(&dir).expect("fixture directory").filter_map(|e| e.ok().map(|e| e.path())).collect();
    let mut files: Vec<_> = all.iter().filter(|p| p.extension().is_some_and(|x| x == "json")).cloned().collect();
    files.sort();
    assert_eq!(files.len(), all.len(), "every file in the fixture directory is an example to replay");
    assert!(files.len() >= 30, "expected every contract example, found {}", files.len());
    let mut failures = Vec::new();
    let mut replayed = 0;
    for f in &files {
        replayed += 1;
        if let Err(e) = replay_example(f).await {
            failures.push(e);
        }
    }
    assert_eq!(replayed, files.len());
    assert!(failures.is_empty(), "{} of {} examples differ:\n{}", failures.len(), files.len(), failures.join("\n"));
}

#[tokio::test]
async fn foreman_simulator_locks_out_an_address_after_too_many_failures() {
    let sim = ForemanSim::start().await;
    let http = reqwest::Client::new();
    let call =
        |user: &str, pw: &str| http.get(format!("{}/api/current_user", sim.url())).basic_auth(user, Some(pw)).send();
    for _ in 0..30 {
        assert_eq!(call("jdoe", "wrong").await.unwrap().status().as_u16(), 401);
    }
    let r = call("admin", ADMIN_PASSWORD).await.unwrap();
    assert_eq!(r.status().as_u16(), 401, "the right password is refused too");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["message"], "Too many tries, please try again in a few minutes.");
}

// ---------- the backend against the simulator ----------

fn config(sim: &ForemanSim, user: &str, password: &str) -> ForemanConfig {
    ForemanConfig {
        url: sim.url(),
        username: user.into(),
        password: Secret::new(password),
        timeout: Duration::from_secs(3),
        retries: 2,
        page_size: 100,
        failed_check_burst: 10,
        failed_check_window: Duration::from_secs(300),
    }
}

fn backend(sim: &ForemanSim) -> ForemanBackend {
    ForemanBackend::new(&config(sim, "admin", ADMIN_PASSWORD)).expect("backend")
}

fn login_of(users: &[User], id: &str) -> String {
    users.iter().find(|u| u.id == id).map(|u| u.login.clone()).unwrap_or_default()
}

#[tokio::test]
async fn foreman_reads_users() {
    let sim = ForemanSim::start().await;
    let b = backend(&sim);
    let users = b.list_users().await.unwrap();
    assert_eq!(users.len(), 12, "hidden system users are not listed");
    assert_eq!(login_of(&users, "5"), "jdoe");
    let jdoe = users.iter().find(|u| u.id == "5").unwrap();
    assert_eq!((jdoe.first_name.as_str(), jdoe.last_name.as_str()), ("Jane", "Doe"));
    assert_eq!(jdoe.email, "jane.doe@example.com");
    assert!(jdoe.active && !jdoe.admin);
    assert_eq!(jdoe.created, Some(1740824130));
    let bwayne = users.iter().find(|u| u.login == "bwayne").unwrap();
    assert!(!bwayne.active, "disabled is the inverse of active");
    assert!(users.iter().find(|u| u.login == "admin").unwrap().admin);
    assert_eq!(users.iter().find(|u| u.login == "nomail").unwrap().email, "");

    assert_eq!(b.get_user("10").await.unwrap().unwrap().login, "ckent");
    assert_eq!(b.get_user("999").await.unwrap(), None);
    sim.reset_counts();
    assert_eq!(b.get_user("jdoe").await.unwrap(), None, "only numeric ids name a user");
    assert_eq!(b.get_user("0").await.unwrap(), None);
    assert_eq!(b.find_user_by_login("a b").await.unwrap(), None);
    assert_eq!(sim.total_requests(), 0, "invalid ids and logins need no call");

    assert_eq!(b.find_user_by_login("ckent").await.unwrap().unwrap().id, "10");
    assert_eq!(b.find_user_by_login("nosuch").await.unwrap(), None);
    assert_eq!(sim.count("GET /users"), 2, "found with a scoped search");
    assert!(b.list_users_changed_since(0).await.unwrap_err().to_string().contains("updated_at"));
}

#[tokio::test]
async fn foreman_pages_through_users() {
    let sim = ForemanSim::start().await;
    let mut cfg = config(&sim, "admin", ADMIN_PASSWORD);
    cfg.page_size = 5;
    let b = ForemanBackend::new(&cfg).unwrap();
    let users = b.list_users().await.unwrap();
    assert_eq!(users.len(), 12);
    assert_eq!(sim.count("GET /users"), 3, "12 users in pages of 5");
    let mut ids: Vec<u64> = users.iter().map(|u| u.id.parse().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 12);
    sim.add_user("extra", "Ex", "Tra", Some("extra@corp.test"), None);
    assert_eq!(b.list_users().await.unwrap().len(), 13);
}

fn new_user(login: &str) -> NewUser {
    NewUser {
        login: login.into(),
        first_name: "New".into(),
        last_name: "Person".into(),
        email: format!("{login}@example.com"),
        active: true,
        password: Some("New-Person-Password-1".into()),
        ..Default::default()
    }
}

#[tokio::test]
async fn foreman_creates_users() {
    let sim = ForemanSim::start().await;
    let b = backend(&sim);
    let u = b.create_user(&new_user("newbie")).await.unwrap();
    assert_eq!(u.id, "15");
    assert!(u.active);
    let sent = sim.last_body("POST /users").unwrap();
    assert_eq!(sent["user"]["auth_source_id"], json!(1), "the Internal source, looked up");
    assert_eq!(sent["user"]["disabled"], json!(false));
    assert_eq!(sim.user(15).unwrap().password.as_deref(), Some("New-Person-Password-1"));

    let mut off = new_user("sleeper");
    off.active = false;
    off.password = None;
    let u = b.create_user(&off).await.unwrap();
    assert!(!u.active, "created disabled in one call");
    assert!(sim.user(16).unwrap().disabled);
    assert_eq!(sim.count("PUT /users/{id}"), 0);
    let pw = sim.user(16).unwrap().password.unwrap();
    assert!(pw.len() >= 32, "a random password nobody knows");
    assert_eq!(sim.count("GET /auth_source_internals"), 1, "looked up once");

    assert!(matches!(b.create_user(&new_user("JDoe")).await, Err(BackendError::Conflict(_))));
    sim.reset_counts();
    match b.create_user(&new_user("ops")).await {
        Err(BackendError::Conflict(m)) => assert!(m.contains("namespace"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(sim.count("POST /users"), 0, "the shared namespace is checked before the call");
    let mut phone = new_user("phoney");
    phone.phone = Some("+1 555".into());
    assert!(matches!(b.create_user(&phone).await, Err(BackendError::Unsupported { .. })));
    assert!(matches!(b.create_user(&new_user("bad login")).await, Err(BackendError::Invalid(_))));
    assert_eq!(sim.count("POST /users"), 0);
}

#[tokio::test]
async fn foreman_updates_users_always_sending_mail() {
    let sim = ForemanSim::start().await;
    let b = backend(&sim);
    let u =
        b.update_user("10", &UserChanges { first_name: Some("Clarke".into()), ..Default::default() }).await.unwrap();
    assert_eq!(u.first_name, "Clarke");
    let sent = sim.last_body("PUT /users/{id}").unwrap();
    assert_eq!(sent["user"]["mail"], json!("clark.kent@example.com"), "mail sent though unchanged");
    assert_eq!(sent["user"].get("login"), None, "only changed keys (and mail)");

    // A user without mail: a bare PUT would be refused (example 15).
    let u =
        b.update_user("11", &UserChanges { last_name: Some("Nomail2".into()), ..Default::default() }).await.unwrap();
    assert_eq!(u.last_name, "Nomail2");
    assert_eq!(sim.last_body("PUT /users/{id}").unwrap()["user"]["mail_enabled"], json!(false));
    // Clearing a mail is sent as such (leaving `mail` out would keep the old address).
    let id = sim.add_user("clearme", "Clear", "Me", Some("clear.me@example.com"), None);
    let u = b
        .update_user(&id.to_string(), &UserChanges { email: Some(String::new()), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(u.email, "");
    assert_eq!(sim.user(id).unwrap().mail, None);

    let u = b.update_user("10", &UserChanges { active: Some(false), ..Default::default() }).await.unwrap();
    assert!(!u.active);
    assert_eq!(sim.last_body("PUT /users/{id}").unwrap()["user"]["disabled"], json!(true));
    let u = b.update_user("10", &UserChanges { login: Some("ckent2".into()), ..Default::default() }).await.unwrap();
    assert_eq!(u.login, "ckent2");
    let u = b.update_user("10", &UserChanges { admin: Some(true), ..Default::default() }).await.unwrap();
    assert!(u.admin);

    sim.reset_counts();
    assert!(matches!(
        b.update_user("10", &UserChanges { login: Some("platform".into()), ..Default::default() }).await,
        Err(BackendError::Conflict(_))
    ));
    assert!(matches!(
        b.update_user("10", &UserChanges { title: Some(Some("Reporter".into())), ..Default::default() }).await,
        Err(BackendError::Unsupported { .. })
    ));
    assert_eq!(sim.count("PUT /users/{id}"), 0);
    assert!(matches!(
        b.update_user("10", &UserChanges { login: Some("JDOE".into()), ..Default::default() }).await,
        Err(BackendError::Conflict(_))
    ));
    assert!(matches!(
        b.update_user("999", &UserChanges { first_name: Some("x".into()), ..Default::default() }).await,
        Err(BackendError::NotFound(_))
    ));
}

#[tokio::test]
async fn foreman_deletes_users_reading_the_raw_record() {
    let sim = ForemanSim::start().await;
    let b = backend(&sim);
    b.delete_user("8").await.unwrap();
    assert!(sim.user(8).is_none());
    assert!(matches!(b.delete_user("8").await, Err(BackendError::NotFound(_))));
    match b.delete_user("4").await {
        Err(BackendError::Forbidden(m)) => assert!(m.contains("your own account"), "{m}"),
        other => panic!("{other:?}"),
    }
}

fn user_ref(id: &str, login: &str) -> User {
    User { id: id.into(), login: login.into(), active: true, ..Default::default() }
}

#[tokio::test]
async fn foreman_passwords() {
    let sim = ForemanSim::start().await;
    let b = backend(&sim);
    let jdoe = user_ref("5", "jdoe");
    assert!(b.check_password(&jdoe, JDOE_PASSWORD).await.unwrap());
    assert!(!b.check_password(&jdoe, "wrong-password").await.unwrap());
    assert!(!b.check_password(&user_ref("9", "bwayne"), BWAYNE_PASSWORD).await.unwrap(), "disabled");
    assert!(!b.check_password(&user_ref("99", "nosuch"), "x").await.unwrap());
    b.set_password("5", "Jane-New-Password-02").await.unwrap();
    let sent = sim.last_body("PUT /users/{id}").unwrap();
    assert_eq!(sent["user"]["password_confirmation"], json!("Jane-New-Password-02"));
    assert_eq!(sent["user"]["mail"], json!("jane.doe@example.com"));
    assert!(b.check_password(&jdoe, "Jane-New-Password-02").await.unwrap());
    assert!(!b.check_password(&jdoe, JDOE_PASSWORD).await.unwrap());
    b.set_password("11", "Nomail-New-Password").await.unwrap();
    assert!(b.check_password(&user_ref("11", "nomail"), "Nomail-New-Password").await.unwrap());
    sim.fail_next(1, 503);
    assert!(matches!(b.check_password(&jdoe, "x-password").await, Err(BackendError::Unavailable(_))));
}

#[tokio::test]
async fn failed_checks_are_rationed_below_foremans_lockout() {
    let sim = ForemanSim::start().await;
    let mut cfg = config(&sim, "admin", ADMIN_PASSWORD);
    cfg.failed_check_burst = 3;
    let b = ForemanBackend::new(&cfg).unwrap();
    let jdoe = user_ref("5", "jdoe");
    // A right password gives its token back.
    assert!(b.check_password(&jdoe, JDOE_PASSWORD).await.unwrap());
    for _ in 0..3 {
        assert!(!b.check_password(&jdoe, "wrong").await.unwrap());
    }
    sim.reset_counts();
    match b.check_password(&jdoe, "wrong").await {
        Err(BackendError::Unavailable(m)) => assert!(m.contains("lock out"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(sim.count("GET /current_user"), 0, "refused without calling Foreman");
    assert!(matches!(b.check_password(&jdoe, JDOE_PASSWORD).await, Err(BackendError::Unavailable(_))));

    // With the default budget, a flood of wrong passwords never locks the gateway out.
    let b = backend(&sim);
    sim.reset_counts();
    let mut refused = 0;
    for _ in 0..40 {
        if b.check_password(&jdoe, "wrong").await.is_err() {
            refused += 1;
        }
    }
    assert_eq!(sim.failed_logins(), 10, "the burst, and nothing more");
    assert_eq!(refused, 30);
    assert_eq!(b.list_users().await.unwrap().len(), 12, "the service account still works");
}

#[tokio::test]
async fn foreman_a_lockout_is_unavailable_not_bad_credentials() {
    let sim = ForemanSim::start().await;
    let b = backend(&sim);
    sim.set_login_limit(2, Duration::from_secs(300));
    let http = reqwest::Client::new();
    for _ in 0..2 {
        http.get(format!("{}/api/current_user", sim.url())).basic_auth("x", Some("y")).send().await.unwrap();
    }
    match b.list_users().await {
        Err(BackendError::Unavailable(m)) => assert!(m.contains("too many failed logins"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(b.check_password(&user_ref("5", "jdoe"), JDOE_PASSWORD).await, Err(BackendError::Unavailable(_))));
}

#[tokio::test]
async fn foreman_usergroups_are_groups() {
    let sim = ForemanSim::start().await;
    let b = backend(&sim);
    let groups = b.list_groups().await.unwrap();
    let summary: Vec<(&str, &str, Vec<&str>)> = groups
        .iter()
        .map(|g| (g.id.as_str(), g.name.as_str(), g.members.iter().map(String::as_str).collect()))
        .collect();
    assert_eq!(summary, [("12", "ops", vec!["5"]), ("13", "platform", vec![])]);
    assert_eq!(b.get_group("999").await.unwrap(), None);
    assert_eq!(b.get_group("ops").await.unwrap(), None);

    let g = b
        .create_group(&NewGroup { name: "dbas".into(), members: vec!["10".into(), "5".into()], ..Default::default() })
        .await
        .unwrap();
    assert_eq!((g.id.as_str(), g.members.clone()), ("14", vec!["5".to_string(), "10".to_string()]));
    assert!(sim.last_body("POST /usergroups").unwrap()["usergroup"]["name"] == json!("dbas"));
    sim.reset_counts();
    match b.create_group(&NewGroup { name: "JDoe".into(), ..Default::default() }).await {
        Err(BackendError::Conflict(m)) => assert!(m.contains("namespace"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        b.create_group(&NewGroup { name: "x".into(), description: Some("d".into()), ..Default::default() }).await,
        Err(BackendError::Unsupported { .. })
    ));
    assert!(matches!(
        b.create_group(&NewGroup { name: "y".into(), members: vec!["999".into()], ..Default::default() }).await,
        Err(BackendError::NotFound(_))
    ));
    assert_eq!(sim.count("POST /usergroups"), 0);
    assert!(matches!(
        b.create_group(&NewGroup { name: "ops".into(), ..Default::default() }).await,
        Err(BackendError::Conflict(_))
    ));

    let g = b.update_group("14", &GroupChanges { name: Some("dba".into()), ..Default::default() }).await.unwrap();
    assert_eq!(g.name, "dba");
    assert!(matches!(
        b.update_group("14", &GroupChanges { name: Some("ckent".into()), ..Default::default() }).await,
        Err(BackendError::Conflict(_))
    ));
    b.delete_group("14").await.unwrap();
    assert_eq!(b.get_group("14").await.unwrap(), None);
    assert!(matches!(b.delete_group("14").await, Err(BackendError::NotFound(_))));
}

#[tokio::test]
async fn foreman_membership_is_read_modify_write() {
    let sim = ForemanSim::start().await;
    let b = backend(&sim);
    sim.modify_group(12, |g| {
        g.children.insert(13);
    });
    b.add_member("12", "8").await.unwrap();
    assert_eq!(sim.group_members(12), Some(vec![5, 8]));
    assert_eq!(sim.last_body("PUT /usergroups/{id}").unwrap(), json!({"usergroup": {"user_ids": [5, 8]}}));
    assert!(sim.group(12).unwrap().children.contains(&13), "nested groups untouched");
    sim.reset_counts();
    b.add_member("12", "8").await.unwrap();
    assert_eq!(sim.count("PUT /usergroups/{id}"), 0, "already a member: no write");
    assert!(matches!(b.add_member("12", "999").await, Err(BackendError::NotFound(_))));
    assert_eq!(sim.count("PUT /usergroups/{id}"), 0, "an unknown user is found out before the write");
    assert!(matches!(b.add_member("999", "5").await, Err(BackendError::NotFound(_))));
    b.remove_member("12", "5").await.unwrap();
    assert_eq!(sim.group_members(12), Some(vec![8]));
    b.remove_member("12", "5").await.unwrap();
    // A change made in Foreman meanwhile is read before the next write, not overwritten.
    sim.modify_group(12, |g| {
        g.users.insert(3);
    });
    b.add_member("12", "10").await.unwrap();
    assert_eq!(sim.group_members(12), Some(vec![3, 8, 10]));
}

#[tokio::test]
async fn foreman_concurrent_membership_changes_lose_nothing() {
    let sim = ForemanSim::start().await;
    let b = Arc::new(backend(&sim));
    // Slow answers widen the window between each read and its write.
    sim.set_delay(Duration::from_millis(20));
    let adds: Vec<_> = ["3", "6", "7", "8", "10", "12", "13", "14"]
        .into_iter()
        .map(|u| {
            let b = b.clone();
            tokio::spawn(async move { b.add_member("12", u).await })
        })
        .collect();
    let removal = {
        let b = b.clone();
        tokio::spawn(async move { b.remove_member("12", "5").await })
    };
    for h in adds {
        h.await.unwrap().unwrap();
    }
    removal.await.unwrap().unwrap();
    assert_eq!(sim.group_members(12), Some(vec![3, 6, 7, 8, 10, 12, 13, 14]));
}

#[tokio::test]
async fn foreman_probe_reports_version_credentials_and_capabilities() {
    let sim = ForemanSim::start().await;
    let b = backend(&sim);
    let r = b.probe().await.unwrap();
    assert_eq!(r.backend, "foreman");
    assert_eq!(r.version.as_deref(), Some("3.13.0"));
    let c = r.capabilities;
    assert!(c.user_create && c.group_create && c.member_remove && c.password_set && c.admin_flag_write);
    assert!(!c.external_id && !c.employee_number && !c.incremental_sync);
    assert!(r.notes.iter().any(|n| n.contains("Internal auth source (id 1)")), "{:?}", r.notes);

    // A non-admin account: the admin flag cannot be written (Foreman would drop it silently).
    let perms: Vec<&str> = support::foreman_sim::ALL_PERMISSIONS.to_vec();
    sim.set_permissions(10, &perms);
    let ck = ForemanBackend::new(&config(&sim, "ckent", CKENT_PASSWORD)).unwrap();
    let r = ck.probe().await.unwrap();
    assert!(!r.capabilities.admin_flag_write);
    assert!(r.notes.iter().any(|n| n.contains("not an admin")), "{:?}", r.notes);
    sim.reset_counts();
    assert!(matches!(
        ck.update_user("5", &UserChanges { admin: Some(true), ..Default::default() }).await,
        Err(BackendError::Forbidden(_))
    ));
    assert_eq!(sim.count("PUT /users/{id}"), 0);

    let secret = "Not-The-Password-9";
    let bad = ForemanBackend::new(&config(&sim, "admin", secret)).unwrap();
    match bad.probe().await {
        Err(BackendError::Auth(m)) => assert!(!m.contains(secret), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn foreman_error_mapping_and_retries() {
    let sim = ForemanSim::start().await;
    let b = backend(&sim);
    sim.fail_next(1, 503);
    assert!(b.get_user("5").await.unwrap().is_some());
    assert_eq!(sim.count("GET /users/{id}"), 2, "a GET is retried");
    sim.reset_counts();
    sim.fail_route("POST /users", 503);
    assert!(matches!(b.create_user(&new_user("once")).await, Err(BackendError::Unavailable(_))));
    assert_eq!(sim.count("POST /users"), 1, "a POST is not");
    sim.fail_route("PUT /users/{id}", 502);
    assert!(matches!(
        b.update_user("5", &UserChanges { first_name: Some("J".into()), ..Default::default() }).await,
        Err(BackendError::Unavailable(_))
    ));
    assert_eq!(sim.count("PUT /users/{id}"), 1, "a PUT is not");
    sim.fail_route("DELETE /users/{id}", 504);
    assert!(matches!(b.delete_user("8").await, Err(BackendError::Unavailable(_))));
    assert_eq!(sim.count("DELETE /users/{id}"), 1, "a DELETE is not");
    sim.reset_counts();
    sim.fail_next(10, 502);
    assert!(matches!(b.get_user("5").await, Err(BackendError::Unavailable(_))));
    assert_eq!(sim.count("GET /users/{id}"), 3, "retries are bounded");
    sim.clear_failures();
    sim.fail_next(1, 500);
    assert!(matches!(b.list_users().await, Err(BackendError::Unavailable(_))));

    let no_rights = ForemanBackend::new(&config(&sim, "jdoe", JDOE_PASSWORD)).unwrap();
    match no_rights.list_users().await {
        Err(BackendError::Forbidden(m)) => assert!(m.contains("view_users"), "{m}"),
        other => panic!("{other:?}"),
    }
    let secret = "Wrong-Service-Password-7";
    let bad = ForemanBackend::new(&config(&sim, "admin", secret)).unwrap();
    for e in [
        bad.list_users().await.unwrap_err(),
        bad.list_groups().await.unwrap_err(),
        bad.create_user(&new_user("zed")).await.unwrap_err(),
    ] {
        assert!(matches!(e, BackendError::Auth(_)), "{e:?}");
        assert!(!e.to_string().contains(secret) && !format!("{e:?}").contains(secret));
    }
}

#[tokio::test]
async fn foreman_timeouts_and_outages_are_unavailable() {
    let sim = ForemanSim::start().await;
    let mut cfg = config(&sim, "admin", ADMIN_PASSWORD);
    cfg.timeout = Duration::from_millis(200);
    cfg.retries = 0;
    let b = ForemanBackend::new(&cfg).unwrap();
    sim.set_delay(Duration::from_millis(600));
    let e = b.get_user("5").await.unwrap_err();
    assert!(matches!(e, BackendError::Timeout(_)), "{e:?}");
    assert!(!e.to_string().contains(ADMIN_PASSWORD));
    let e = b.check_password(&user_ref("5", "jdoe"), JDOE_PASSWORD).await.unwrap_err();
    assert!(matches!(e, BackendError::Timeout(_)), "{e:?}");
    assert!(!e.to_string().contains(JDOE_PASSWORD));
    sim.set_delay(Duration::ZERO);

    let b = backend(&sim);
    sim.stop();
    let e = b.list_users().await.unwrap_err();
    assert!(matches!(e, BackendError::Unavailable(_)), "{e:?}");
    sim.restart().await;
    assert_eq!(b.list_users().await.unwrap().len(), 12);
}

// ---------- through the directory ----------

fn gateway_config(sim: &ForemanSim, cache: &str) -> Config {
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
        kind = "foreman"
        url = "{}"
        username = "admin"
        password = "{ADMIN_PASSWORD}"
        timeout = "2s"
        retries = 0
        failed_check_burst = 12
        "#,
        sim.url()
    );
    Config::parse(&text).expect("config")
}

#[tokio::test]
async fn nothing_is_cached_as_changed_unless_foreman_confirmed_it() {
    let sim = ForemanSim::start().await;
    let cfg = gateway_config(&sim, "");
    let backend = idgate::backend::build(&cfg).unwrap();
    let d = Directory::new(&cfg, backend);
    d.refresh_full().await.unwrap();
    let a = Caller::system();
    let name_of = |d: &Directory, id: &str| d.snapshot().unwrap().user_by_id(id).unwrap().first_name.clone();

    sim.fail_route("PUT /users/{id}", 503);
    let r = d.update_user(&a, "10", UserChanges { first_name: Some("Kal".into()), ..Default::default() }).await;
    assert!(r.is_err());
    assert_eq!(name_of(&d, "10"), "Clark", "a failed write leaves the cache alone");

    let mut slow = gateway_config(&sim, "");
    if let idgate::config::BackendConfig::Foreman(f) = &mut slow.backend {
        f.timeout = Duration::from_millis(200);
    }
    let d2 = Directory::new(&slow, idgate::backend::build(&slow).unwrap());
    d2.refresh_full().await.unwrap();
    sim.set_delay(Duration::from_millis(500));
    let r = d2.add_member(&a, "12", "10").await;
    assert!(r.is_err(), "timed out");
    sim.set_delay(Duration::ZERO);
    let snap = d2.snapshot().unwrap();
    assert_eq!(
        snap.member_ids(snap.group_index_by_name("ops").unwrap()),
        vec!["5".to_string()],
        "not cached as a member"
    );

    sim.fail_route("PUT /usergroups/{id}", 500);
    assert!(d.add_member(&a, "12", "10").await.is_err());
    let ops = |d: &Directory| {
        let s = d.snapshot().unwrap();
        s.member_ids(s.group_index_by_name("ops").unwrap())
    };
    assert_eq!(ops(&d), vec!["5".to_string()]);
    assert!(
        d.create_group(
            &a,
            GroupSpec { new: NewGroup { name: "ckent".into(), ..Default::default() }, ..Default::default() }
        )
        .await
        .is_err()
    );
    assert!(d.snapshot().unwrap().group_by_name("ckent").is_none());

    // Confirmed writes are visible at once.
    d.update_user(&a, "10", UserChanges { first_name: Some("Kal".into()), ..Default::default() }).await.unwrap();
    assert_eq!(name_of(&d, "10"), "Kal");
    d.add_member(&a, "12", "10").await.unwrap();
    assert_eq!(ops(&d), vec!["5".to_string(), "10".to_string()]);
}

// ---------- LDAP application replays ----------

/// The seven application replays with idgate in front of the simulated Foreman. Every step runs:
/// Foreman has no modification-time search, so the `touch` of SSSD's and Keycloak's change
/// detection is served by a full refresh (incremental_sync is false), which still yields a new
/// modifyTimestamp from Foreman's `updated_at`. No replay step needs an unsupported capability.
#[tokio::test]
async fn client_replays_against_foreman() {
    let sim = Arc::new(ForemanSim::start().await);
    // jdoe is in ops (login group) and platform (admin group); ckent in neither.
    sim.modify_group(13, |g| {
        g.users.insert(5);
    });
    let r = idgate::app::start(gateway_config(&sim, "refresh_interval = \"1h\"\nfull_refresh_interval = \"1h\""))
        .await
        .expect("server starts");
    let url = format!("ldap://{}", r.ldap_addr);
    let users = r.directory.health().users;
    assert_eq!(users, 11, "12 listed users less the gateway's own account");
    let (sim2, dir) = (sim.clone(), r.directory.clone());
    let touch: TouchFn = Arc::new(move |login: String| {
        let (sim, dir) = (sim2.clone(), dir.clone());
        Box::pin(async move {
            let id = sim.user_id(&login).expect("user exists");
            sim.modify_user(id, |u| u.description = Some(format!("changed at {:?}", std::time::SystemTime::now())));
            dir.refresh_incremental().await.expect("refresh");
        })
    });
    let fx = DirFixture {
        base_dn: "dc=example,dc=com".into(),
        users_base: "ou=people,dc=example,dc=com".into(),
        groups_base: "ou=groups,dc=example,dc=com".into(),
        service_dn: "cn=reader,ou=services,dc=example,dc=com".into(),
        service_password: "svc-pw".into(),
        user_login: "jdoe".into(),
        user_password: JDOE_PASSWORD.into(),
        user_dn: "uid=jdoe,ou=people,dc=example,dc=com".into(),
        user_mail: "jane.doe@example.com".into(),
        user_groups: vec!["ops".into(), "platform".into()],
        user_nested_groups: Vec::new(),
        primary_group: Some("users".into()),
        login_group: "ops".into(),
        admin_group: "platform".into(),
        outsider_login: "ckent".into(),
        outsider_password: CKENT_PASSWORD.into(),
        disabled_login: "bwayne".into(),
        disabled_password: BWAYNE_PASSWORD.into(),
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
    assert!(sim.failed_logins() < 30, "the replays never tripped Foreman's lock-out");
    r.shutdown().await;
}

// ---------- nested groups and hidden accounts ----------

fn ids_of(groups: &[idgate::model::Group], id: u64) -> (Vec<String>, Vec<String>) {
    let g = groups.iter().find(|g| g.id == id.to_string()).unwrap_or_else(|| panic!("group {id}"));
    (g.members.clone(), g.member_groups.clone())
}

#[tokio::test]
async fn foreman_reads_nested_groups_including_a_cycle() {
    let sim = ForemanSim::start().await;
    let n = sim.seed_nesting();
    let b = backend(&sim);
    assert!(b.capabilities().nested_groups);
    let groups = b.list_groups().await.unwrap();
    let s = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>();
    assert_eq!(
        ids_of(&groups, n.company),
        (s(&[1, 6]), s(&[n.engineering])),
        "hidden members are listed as Foreman lists them"
    );
    assert_eq!(ids_of(&groups, n.engineering), (s(&[7]), s(&[n.backend])));
    assert_eq!(ids_of(&groups, n.backend), (s(&[5, 12]), vec![]));
    assert_eq!(ids_of(&groups, n.ring_a).1, s(&[n.ring_b]));
    assert_eq!(ids_of(&groups, n.ring_b).1, s(&[n.ring_a]));
    assert_eq!(b.get_group(&n.engineering.to_string()).await.unwrap().unwrap().member_groups, s(&[n.backend]));
}

#[tokio::test]
async fn foreman_nesting_is_read_modify_write_and_foreman_refuses_cycles() {
    let sim = ForemanSim::start().await;
    let b = Arc::new(backend(&sim));
    b.add_member_group("12", "13").await.unwrap();
    assert_eq!(sim.group_children(12), Some(vec![13]));
    assert_eq!(sim.last_body("PUT /usergroups/{id}").unwrap(), json!({"usergroup": {"usergroup_ids": [13]}}));
    assert_eq!(sim.group_members(12), Some(vec![5]), "user members untouched");
    sim.reset_counts();
    b.add_member_group("12", "13").await.unwrap();
    assert_eq!(sim.count("PUT /usergroups/{id}"), 0, "already nested: no write");
    assert!(matches!(b.add_member_group("12", "999").await, Err(BackendError::NotFound(_))));
    assert!(matches!(b.add_member_group("12", "ops").await, Err(BackendError::NotFound(_))));
    assert!(matches!(b.add_member_group("999", "13").await, Err(BackendError::NotFound(_))));
    assert!(matches!(b.add_member_group("12", "12").await, Err(BackendError::Invalid(_))));
    assert_eq!(sim.count("PUT /usergroups/{id}"), 0, "unknown ids and self-nesting are found out before a write");

    // Foreman itself refuses a cycle (its answer, not ours: the backend call is made).
    match b.add_member_group("13", "12").await {
        Err(BackendError::Invalid(m)) => assert!(m.contains("Adding would cause a cycle!"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(sim.count("PUT /usergroups/{id}"), 1);
    assert_eq!(sim.group_children(13), Some(vec![]));

    // A change made in Foreman meanwhile is read before the next write, not overwritten.
    let other = sim.add_group("other", &[]);
    sim.modify_group(12, |g| {
        g.children.insert(other);
    });
    let third = sim.add_group("third", &[]);
    b.add_member_group("12", &third.to_string()).await.unwrap();
    assert_eq!(sim.group_children(12), Some(vec![13, other, third]));
    b.remove_member_group("12", "13").await.unwrap();
    assert_eq!(sim.group_children(12), Some(vec![other, third]));
    b.remove_member_group("12", "13").await.unwrap();

    // Concurrent nesting changes on one group lose nothing (one lock per group).
    sim.set_delay(Duration::from_millis(20));
    let kids: Vec<u64> = (0..6).map(|i| sim.add_group(&format!("kid{i}"), &[])).collect();
    let tasks: Vec<_> = kids
        .iter()
        .map(|k| {
            let (b, k) = (b.clone(), k.to_string());
            tokio::spawn(async move { b.add_member_group("12", &k).await })
        })
        .collect();
    let removal = {
        let b = b.clone();
        tokio::spawn(async move { b.remove_member_group("12", &other.to_string()).await })
    };
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    removal.await.unwrap().unwrap();
    let mut want = vec![third];
    want.extend(&kids);
    assert_eq!(sim.group_children(12), Some(want));
}

#[tokio::test]
async fn foreman_refuses_any_new_nesting_while_a_cycle_exists() {
    let sim = ForemanSim::start().await;
    let n = sim.seed_nesting();
    let b = backend(&sim);
    match b.add_member_group("12", "13").await {
        Err(BackendError::Invalid(m)) => {
            assert!(m.contains("cycle") && m.contains("anywhere"), "explains Foreman's whole-graph check: {m}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(sim.group_children(12), Some(vec![]));
    // Removing a nesting is always allowed; afterwards new nestings are accepted again.
    b.remove_member_group(&n.ring_b.to_string(), &n.ring_a.to_string()).await.unwrap();
    assert_eq!(sim.group_children(n.ring_b), Some(vec![]));
    b.add_member_group("12", "13").await.unwrap();
    assert_eq!(sim.group_children(12), Some(vec![13]));
}

#[tokio::test]
async fn foreman_creates_a_group_with_member_groups() {
    let sim = ForemanSim::start().await;
    let b = backend(&sim);
    let g = b
        .create_group(&NewGroup {
            name: "parents".into(),
            members: vec!["5".into()],
            member_groups: vec!["13".into(), "12".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(g.member_groups, vec!["12".to_string(), "13".to_string()]);
    assert_eq!(sim.last_body("POST /usergroups").unwrap()["usergroup"]["usergroup_ids"], json!([12, 13]));
    sim.reset_counts();
    for bad in ["999", "x"] {
        let r = b
            .create_group(&NewGroup { name: "orphans".into(), member_groups: vec![bad.into()], ..Default::default() })
            .await;
        assert!(matches!(r, Err(BackendError::NotFound(_))), "{bad}: {r:?}");
    }
    assert_eq!(sim.count("POST /usergroups"), 0);
}

fn names_of(snap: &Snapshot, idx: Vec<usize>) -> Vec<String> {
    let mut v: Vec<String> = idx.into_iter().map(|i| snap.group(i).name.clone()).collect();
    v.sort();
    v
}

fn logins_of(snap: &Snapshot, idx: Vec<usize>) -> Vec<String> {
    let mut v: Vec<String> = idx.into_iter().map(|i| snap.user(i).login.clone()).collect();
    v.sort();
    v
}

#[tokio::test]
async fn nested_foreman_groups_in_the_directory() {
    let sim = ForemanSim::start().await;
    let n = sim.seed_nesting();
    let cfg = gateway_config(&sim, "");
    let d = Directory::new(&cfg, idgate::backend::build(&cfg).unwrap());
    d.refresh_full().await.unwrap();
    let snap = d.snapshot().unwrap();
    assert!(snap.has_nesting());
    let u = |login: &str| snap.user_index_by_login(login).unwrap_or_else(|| panic!("{login}"));
    let g = |name: &str| snap.group_index_by_name(name).unwrap_or_else(|| panic!("{name}"));
    assert_eq!(names_of(&snap, snap.groups_of_transitive(u("jdoe"))), ["backend", "company", "engineering", "ops"]);
    assert_eq!(names_of(&snap, snap.groups_of_transitive(u("pparker"))), ["company", "engineering"]);
    assert_eq!(logins_of(&snap, snap.members_transitive(g("company"))), ["dprince", "jdoe", "mmouse", "pparker"]);
    assert_eq!(logins_of(&snap, snap.members_transitive(g("engineering"))), ["dprince", "jdoe", "pparker"]);
    // The cycle: each member once, every group of the ring once.
    assert_eq!(names_of(&snap, snap.groups_of_transitive(u("bbanner"))), ["ring-a", "ring-b"]);
    assert_eq!(logins_of(&snap, snap.members_transitive(g("ring-a"))), ["bbanner", "tstark"]);
    assert_eq!(logins_of(&snap, snap.members_transitive(g("ring-b"))), ["bbanner", "tstark"]);
    assert_eq!(
        names_of(&snap, snap.descendants_of(g("ring-a"))),
        ["ring-a", "ring-b"],
        "the ring leads back to itself"
    );
    assert_eq!(names_of(&snap, snap.ancestors_of(g("backend"))), ["company", "engineering"]);

    // Hidden accounts: Foreman's own (never listed) and the gateway's (listed, kept out).
    for login in ["foreman_admin", "foreman_api_admin", "admin"] {
        assert!(snap.user_by_login(login).is_none(), "{login} is not in the directory");
    }
    assert!(!snap.member_ids(g("company")).contains(&"1".to_string()), "a hidden member is not published");
    let peer: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    for (login, pw) in [("foreman_admin", "hidden-1"), ("admin", ADMIN_PASSWORD), ("ADMIN", ADMIN_PASSWORD)] {
        let r = d.authenticate_user(login, pw, peer).await.unwrap();
        assert!(matches!(r, AuthOutcome::Invalid), "{login}: {r:?}");
    }
    assert!(matches!(d.authenticate_user("jdoe", JDOE_PASSWORD, peer).await.unwrap(), AuthOutcome::User(_)));

    let a = Caller::system();
    // The core allows it, Foreman refuses it (the ring's cycle): the error says so, nothing cached.
    sim.reset_counts();
    let e = d.add_member_group(&a, "12", "13").await.unwrap_err();
    assert!(e.to_string().contains("cycle"), "{e}");
    assert_eq!(sim.count("PUT /usergroups/{id}"), 1);
    let gi = |s: &Snapshot, name: &str| s.group_index_by_name(name).unwrap_or_else(|| panic!("{name}"));
    let now = d.snapshot().unwrap();
    assert!(now.member_group_ids(gi(&now, "ops")).is_empty());
    d.remove_member_group(&a, &n.ring_a.to_string(), &n.ring_b.to_string()).await.unwrap();
    assert_eq!(sim.group_children(n.ring_a), Some(vec![]));
    d.add_member_group(&a, "12", "13").await.unwrap();
    assert_eq!(sim.group_children(12), Some(vec![13]));
    let now = d.snapshot().unwrap();
    assert_eq!(now.member_group_ids(gi(&now, "ops")), vec!["13".to_string()]);
    assert_eq!(names_of(&now, now.parent_groups_of(gi(&now, "platform"))), ["ops"]);

    // Cycles are refused by the core before any backend call.
    sim.reset_counts();
    for (parent, child) in [(n.backend, n.company), (n.engineering, n.engineering), (13, 12)] {
        let r = d.add_member_group(&a, &parent.to_string(), &child.to_string()).await;
        let e = r.expect_err("a cycle");
        assert!(e.to_string().contains("cycle"), "{e}");
    }
    assert_eq!(sim.total_requests(), 0, "Foreman saw no request");
    assert_eq!(sim.group_children(n.backend), Some(vec![]));
}

// ---------- extra columns as custom attributes ----------

fn column(field: &str, syntax: idgate::config::AttributeSyntax) -> idgate::config::CustomAttribute {
    idgate::config::CustomAttribute {
        name: field.replace('_', ""),
        field: field.into(),
        scim_name: None,
        syntax,
        multi: false,
        separator: ",".into(),
        writable: true,
        indexed: true,
    }
}

fn with_columns(sim: &ForemanSim) -> ForemanBackend {
    use idgate::config::AttributeSyntax::{Boolean, Date, String as Text};
    backend(sim).with_attributes(&[
        column("description", Text),
        column("timezone", Text),
        column("last_login_on", Date),
        column("mail_enabled", Boolean),
        column("effective_admin", Boolean),
        column("no_such_column", Text),
    ])
}

fn custom_of(u: &User) -> Vec<(&str, &str)> {
    u.custom.iter().flat_map(|(k, v)| v.iter().map(move |x| (k.as_str(), x.as_str()))).collect()
}

#[tokio::test]
async fn foreman_user_columns_are_custom_attributes() {
    let sim = ForemanSim::start().await;
    sim.modify_group(12, |g| g.admin = true);
    let b = with_columns(&sim);
    assert!(b.capabilities().custom_fields);
    let users = b.list_users().await.unwrap();
    let jdoe = users.iter().find(|u| u.login == "jdoe").unwrap();
    assert_eq!(
        custom_of(jdoe),
        [
            ("description", "Provisioned by the identity gateway"),
            ("effective_admin", "true"),
            ("last_login_on", "1740902400"),
            ("mail_enabled", "true"),
        ],
        "read from the index shape; null columns and unknown ones absent"
    );
    assert_eq!(b.get_user("5").await.unwrap().unwrap().custom, jdoe.custom, "show shape reads the same");
    let ckent = users.iter().find(|u| u.login == "ckent").unwrap();
    assert_eq!(
        custom_of(ckent),
        [("effective_admin", "false"), ("last_login_on", "1740674469"), ("mail_enabled", "true")]
    );

    let set = |field: &str, v: Option<&str>| UserChanges {
        custom: [(field.to_string(), v.map(|v| vec![v.to_string()]))].into(),
        ..Default::default()
    };
    let u = b.update_user("10", &set("timezone", Some("Europe/Paris"))).await.unwrap();
    assert_eq!(u.custom.get("timezone"), Some(&vec!["Europe/Paris".to_string()]));
    assert_eq!(sim.user(10).unwrap().timezone.as_deref(), Some("Europe/Paris"));
    assert_eq!(sim.last_body("PUT /users/{id}").unwrap()["user"]["timezone"], json!("Europe/Paris"));
    b.update_user("5", &set("description", None)).await.unwrap();
    assert_eq!(sim.user(5).unwrap().description, None, "a clear is sent as null");
    match b.update_user("10", &set("timezone", Some("Mars/Olympus_Mons"))).await {
        Err(BackendError::Invalid(m)) => assert!(m.contains("Timezone"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(sim.user(10).unwrap().timezone.as_deref(), Some("Europe/Paris"), "nothing partial");
    sim.reset_counts();
    for field in ["last_login_on", "effective_admin"] {
        match b.update_user("10", &set(field, Some("1"))).await {
            Err(BackendError::Unsupported { what, .. }) => assert!(what.contains(field), "{what}"),
            other => panic!("{field}: {other:?}"),
        }
    }
    assert!(matches!(b.update_user("10", &set("nope", Some("x"))).await, Err(BackendError::Invalid(_))));
    let mut nu = new_user("withzone");
    nu.custom = [("last_login_on".to_string(), vec!["1".to_string()])].into();
    assert!(matches!(b.create_user(&nu).await, Err(BackendError::Unsupported { .. })));
    assert_eq!(sim.total_requests(), 0, "read-only columns are refused before any call");

    nu.custom = [("timezone".to_string(), vec!["Asia/Tokyo".to_string()])].into();
    let created = b.create_user(&nu).await.unwrap();
    assert_eq!(created.custom.get("timezone"), Some(&vec!["Asia/Tokyo".to_string()]));
    assert_eq!(sim.last_body("POST /users").unwrap()["user"]["timezone"], json!("Asia/Tokyo"));
}

#[tokio::test]
async fn foreman_custom_attributes_through_the_directory() {
    let sim = ForemanSim::start().await;
    let mut cfg = gateway_config(&sim, "");
    let mut last_login = column("last_login_on", idgate::config::AttributeSyntax::Date);
    last_login.writable = false;
    cfg.directory.attributes = vec![column("timezone", idgate::config::AttributeSyntax::String), last_login];
    let d = Directory::new(&cfg, idgate::backend::build(&cfg).unwrap());
    d.refresh_full().await.unwrap();
    let custom = |d: &Directory, id: &str| d.snapshot().unwrap().user_by_id(id).unwrap().custom.clone();
    assert_eq!(custom(&d, "10").get("last_login_on"), Some(&vec!["1740674469".to_string()]));
    let a = Caller::system();
    let tz = |v: &str| UserChanges {
        custom: [("timezone".to_string(), Some(vec![v.to_string()]))].into(),
        ..Default::default()
    };
    d.update_user(&a, "10", tz("America/New_York")).await.unwrap();
    assert_eq!(custom(&d, "10").get("timezone"), Some(&vec!["America/New_York".to_string()]));
    assert_eq!(sim.user(10).unwrap().timezone.as_deref(), Some("America/New_York"));
    assert!(d.update_user(&a, "10", tz("Nowhere/Else")).await.is_err());
    assert_eq!(custom(&d, "10").get("timezone"), Some(&vec!["America/New_York".to_string()]), "not cached");
    sim.reset_counts();
    let ro = UserChanges {
        custom: [("last_login_on".to_string(), Some(vec!["5".to_string()]))].into(),
        ..Default::default()
    };
    assert!(d.update_user(&a, "10", ro).await.is_err(), "not writable");
    assert_eq!(sim.count("PUT /users/{id}"), 0);
}
