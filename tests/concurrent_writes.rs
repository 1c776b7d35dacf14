//! Concurrent writes through the real protocols. SCIM and LDAP clients, each on its own connection,
//! are released together by a barrier; afterwards the result is read back over LDAP, over SCIM and
//! from the backend itself, and every acknowledged write must be there, whichever protocol made it
//! and whatever raced it. Also here: one password policy for both front ends, the externalId of a
//! user deleted over LDAP, and modifyTimestamp / meta.lastModified after writes.

mod common;
mod support;

use common::{ADMIN_DN, ADMIN_PW, group_dn, user_dn};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use common::scim::{ENTERPRISE_URN, Resp, Scim, TOKEN, member_ids};
use common::{Demo, WAIT, attr, bind, connect, norm_dn, parse_gt, search, try_bind, wait_past};
use idgate::app::Running;
use idgate::backend::Backend;
use idgate::backend::memory::MemoryBackend;
use idgate::config::Config;
use ldap3::{Ldap, LdapResult, Mod, Scope, SearchEntry};
use serde_json::{Value, json};
use support::dolibarr_sim::{DolibarrSim, Version};
use support::foreman_sim::{self as fm, ForemanSim};
use tokio::sync::Barrier;

fn one(v: &str) -> HashSet<String> {
    HashSet::from([v.to_string()])
}

fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn ldap_url(r: &Running) -> String {
    format!("ldap://{}", r.ldap_addr)
}

// ---- gateways ---------------------------------------------------------------------------------------

/// A gateway in front of a simulator, with the demo's write account and SCIM token.
fn sim_gateway_config(backend: &str) -> Config {
    let text = format!(
        r#"
        [ldap]
        listen = "127.0.0.1:0"
        [[ldap.service_accounts]]
        name = "admin"
        password = "{ADMIN_PW}"
        access = "write"
        [http]
        listen = "127.0.0.1:0"
        [scim]
        state_path = "{}"
        [[scim.tokens]]
        name = "test"
        token = "{TOKEN}"
        scope = "write"
        {backend}
        "#,
        common::fresh_state_path().display()
    );
    Config::parse(&text).expect("gateway config")
}

async fn start_gateway(cfg: Config) -> Running {
    tokio::time::timeout(WAIT, idgate::app::start(cfg)).await.expect("gateway starts in time").expect("gateway starts")
}

async fn dolibarr_gateway(sim: &DolibarrSim) -> Running {
    let backend = format!(
        "[backend]\nkind = \"dolibarr\"\nurl = \"{}\"\napi_key = \"{}\"\ntimeout = \"10s\"\nretries = 0\n",
        sim.url(),
        sim.admin_key()
    );
    start_gateway(sim_gateway_config(&backend)).await
}

async fn foreman_gateway(sim: &ForemanSim) -> Running {
    let backend = format!(
        "[backend]\nkind = \"foreman\"\nurl = \"{}\"\nusername = \"admin\"\npassword = \"{}\"\ntimeout = \"10s\"\nretries = 0\n",
        sim.url(),
        fm::ADMIN_PASSWORD
    );
    start_gateway(sim_gateway_config(&backend)).await
}

// ---- running clients together -------------------------------------------------------------------------

/// One client's work; it owns its (already connected) client and returns its failures.
type Task = Pin<Box<dyn Future<Output = Vec<String>> + Send>>;

/// Starts every task at once (a barrier releases them together) and collects their failures.
async fn release_together(tasks: Vec<Task>) -> Vec<String> {
    let barrier = Arc::new(Barrier::new(tasks.len()));
    let handles: Vec<_> = tasks
        .into_iter()
        .map(|t| {
            let b = barrier.clone();
            tokio::spawn(async move {
                b.wait().await;
                t.await
            })
        })
        .collect();
    let mut failures = Vec::new();
    for h in handles {
        match h.await {
            Ok(f) => failures.extend(f),
            Err(e) => failures.push(format!("a client task died: {e}")),
        }
    }
    failures
}

/// A modify over LDAP; `Err` for a transport failure or timeout.
async fn ldap_modify(l: &mut Ldap, dn: &str, mods: Vec<Mod<String>>) -> Result<LdapResult, String> {
    l.with_timeout(WAIT).modify(dn, mods).await.map_err(|e| format!("LDAP modify of {dn}: {e}"))
}

async fn ldap_close(mut l: Ldap) {
    let _ = tokio::time::timeout(WAIT, l.unbind()).await;
}

/// The one entry at `dn` (base search), or why there is none.
async fn read_entry(l: &mut Ldap, dn: &str, attrs: &[&str]) -> Result<SearchEntry, String> {
    let (mut entries, res) = search(l, dn, Scope::Base, "(objectClass=*)", attrs).await;
    if res.rc != 0 || entries.len() != 1 {
        return Err(format!("base search of {dn} over LDAP: rc {} with {} entries ({res})", res.rc, entries.len()));
    }
    Ok(entries.remove(0))
}

// ---- 1. group membership races ----------------------------------------------------------------------

/// Reads a group's members (backend user ids) from the backend itself; `None` without the group.
type BackendMembers =
    Arc<dyn Fn(String) -> Pin<Box<dyn Future<Output = Option<BTreeSet<String>>> + Send>> + Send + Sync>;

fn memory_members(b: Arc<MemoryBackend>) -> BackendMembers {
    Arc::new(move |gid: String| {
        let b = b.clone();
        Box::pin(async move {
            b.get_group(&gid).await.expect("memory backend read").map(|g| g.members.into_iter().collect())
        })
    })
}

fn sim_members(f: impl Fn(u64) -> Option<Vec<u64>> + Send + Sync + 'static) -> BackendMembers {
    let f = Arc::new(f);
    Arc::new(move |gid: String| {
        let got = gid.parse().ok().and_then(|g| f(g)).map(|m| m.into_iter().map(|u| u.to_string()).collect());
        Box::pin(async move { got })
    })
}

struct Member {
    id: String,
    login: String,
}

/// One round's fresh group and users.
struct Round {
    n: usize,
    group_scim_id: String,
    group_backend_id: String,
    group_dn: String,
    users: Vec<Member>,
}

impl Round {
    fn label_of_id(&self, id: &str) -> String {
        self.users.iter().find(|u| u.id == id).map(|u| u.login.clone()).unwrap_or_else(|| format!("id:{id}"))
    }
    fn label_of_dn(&self, dn: &str) -> String {
        let n = norm_dn(dn);
        self.users.iter().find(|u| norm_dn(&user_dn(&u.login)) == n).map(|u| u.login.clone()).unwrap_or(n)
    }
}

/// Users valid for every backend here: Dolibarr refuses `@` in logins, Foreman wants a valid mail.
fn new_user(login: &str) -> Value {
    json!({
        "userName": login,
        "name": {"givenName": "Race", "familyName": "Tester"},
        "emails": [{"value": format!("{login}@example.com"), "type": "work", "primary": true}],
    })
}

async fn setup_round(s: &Scim, n: usize, users: usize) -> Round {
    let name = format!("racegroup{n:02}");
    let r = s.post("/Groups", json!({"displayName": name})).await;
    assert_eq!(r.status, 201, "round {n}: creating group {name}: {r}");
    let group_scim_id = r.id();
    let group_backend_id = group_scim_id.strip_prefix('g').expect("group ids start with g").to_string();
    let mut members = Vec::with_capacity(users);
    for i in 0..users {
        let login = format!("race{n:02}u{i:02}");
        let r = s.post("/Users", new_user(&login)).await;
        assert_eq!(r.status, 201, "round {n}: creating user {login}: {r}");
        members.push(Member { id: r.id(), login });
    }
    Round { n, group_scim_id, group_backend_id, group_dn: group_dn(&name), users: members }
}

async fn remove_round(s: &Scim, round: &Round) {
    let r = s.delete(&format!("/Groups/{}", round.group_scim_id)).await;
    assert_eq!(r.status, 204, "round {}: deleting the group: {r}", round.n);
    for u in &round.users {
        let r = s.delete(&format!("/Users/{}", u.id)).await;
        assert_eq!(r.status, 204, "round {}: deleting user {}: {r}", round.n, u.login);
    }
}

#[derive(Clone, Copy)]
enum Step {
    Add(usize),
    Remove(usize),
}

async fn scim_step(s: &Scim, round: &Round, step: Step) -> Result<(), String> {
    let path = format!("/Groups/{}", round.group_scim_id);
    let (what, ops) = match step {
        Step::Add(u) => (
            format!("adding {} over SCIM", round.users[u].login),
            json!([{"op": "add", "path": "members", "value": [{"value": round.users[u].id}]}]),
        ),
        Step::Remove(u) => (
            format!("removing {} over SCIM", round.users[u].login),
            json!([{"op": "remove", "path": format!("members[value eq \"{}\"]", round.users[u].id)}]),
        ),
    };
    let r = s.try_patch(&path, ops, &[]).await.map_err(|e| format!("{what}: {e}"))?;
    if r.status == 200 || r.status == 204 { Ok(()) } else { Err(format!("{what}: {r}")) }
}

async fn ldap_step(l: &mut Ldap, round: &Round, step: Step) -> Result<(), String> {
    let (what, m) = match step {
        Step::Add(u) => (
            format!("adding {} over LDAP", round.users[u].login),
            Mod::Add("member".to_string(), one(&user_dn(&round.users[u].login))),
        ),
        Step::Remove(u) => (
            format!("removing {} over LDAP", round.users[u].login),
            Mod::Delete("member".to_string(), one(&user_dn(&round.users[u].login))),
        ),
    };
    let r = ldap_modify(l, &round.group_dn, vec![m]).await.map_err(|e| format!("{what}: {e}"))?;
    if r.rc == 0 { Ok(()) } else { Err(format!("{what}: {r}")) }
}

/// Connects one client per entry (SCIM or LDAP), then releases them together; each runs its steps
/// in order on its own connection.
async fn run_phase(gw: &Running, round: &Arc<Round>, jobs: Vec<(bool, Vec<Step>)>) -> Vec<String> {
    let url = ldap_url(gw);
    let mut tasks: Vec<Task> = Vec::new();
    for (n, (over_scim, steps)) in jobs.into_iter().enumerate() {
        let round = round.clone();
        if over_scim {
            let s = Scim::new(gw.http_addr);
            s.warm_up().await;
            tasks.push(Box::pin(async move {
                for step in steps {
                    if let Err(e) = scim_step(&s, &round, step).await {
                        return vec![format!("client {n}: {e}")];
                    }
                }
                Vec::new()
            }));
        } else {
            let mut l = bind(&url, ADMIN_DN, ADMIN_PW).await;
            tasks.push(Box::pin(async move {
                let mut out = Vec::new();
                for step in steps {
                    if let Err(e) = ldap_step(&mut l, &round, step).await {
                        out.push(format!("client {n}: {e}"));
                        break;
                    }
                }
                ldap_close(l).await;
                out
            }));
        }
    }
    release_together(tasks).await
}

fn set_diff(source: &str, want: &BTreeSet<String>, got: &BTreeSet<String>) -> Option<String> {
    let missing: Vec<&String> = want.difference(got).collect();
    let unexpected: Vec<&String> = got.difference(want).collect();
    if missing.is_empty() && unexpected.is_empty() {
        return None;
    }
    Some(format!(
        "{source}: {} members, {} expected; missing {missing:?}; unexpected {unexpected:?}",
        got.len(),
        want.len()
    ))
}

/// The group's members over LDAP, over SCIM and in the backend must all be exactly `expected`.
async fn verify_members(
    gw: &Running,
    round: &Round,
    backend: &BackendMembers,
    expected: &BTreeSet<usize>,
    when: &str,
) -> Result<(), String> {
    let want: BTreeSet<String> = expected.iter().map(|&u| round.users[u].login.clone()).collect();
    let mut problems = Vec::new();

    let mut l = bind(&ldap_url(gw), ADMIN_DN, ADMIN_PW).await;
    match read_entry(&mut l, &round.group_dn, &["member"]).await {
        Ok(e) => {
            let got = attr(&e, "member").iter().map(|d| round.label_of_dn(d)).collect();
            problems.extend(set_diff("over LDAP (member)", &want, &got));
        }
        Err(e) => problems.push(e),
    }
    ldap_close(l).await;

    let s = Scim::new(gw.http_addr);
    match s.try_raw(reqwest::Method::GET, &format!("/Groups/{}", round.group_scim_id), None, &[]).await {
        Ok(r) if r.status == 200 => {
            let got = member_ids(&r.body).iter().map(|id| round.label_of_id(id)).collect();
            problems.extend(set_diff("over SCIM (members)", &want, &got));
        }
        Ok(r) => problems.push(format!("SCIM GET of the group: {r}")),
        Err(e) => problems.push(e),
    }

    match backend(round.group_backend_id.clone()).await {
        Some(ids) => {
            let got = ids.iter().map(|id| round.label_of_id(id)).collect();
            problems.extend(set_diff("in the backend", &want, &got));
        }
        None => problems.push(format!("the backend has no group {}", round.group_backend_id)),
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("round {}, {when}: the group's members differ:\n  {}", round.n, problems.join("\n  ")))
    }
}

/// Per round: a fresh group and 52 fresh users. Phase 1: 20 SCIM and 20 LDAP clients each add one
/// user. Phase 2: 10 SCIM and 10 LDAP clients remove members added in phase 1 (half of them added
/// over the other protocol), 5 SCIM and 5 LDAP clients add new users, and one SCIM and one LDAP
/// client each add then remove one more user. (52 users: the 40 + 10 + 2 distinct ones this needs.)
async fn membership_rounds(name: &str, gw: &Running, backend: BackendMembers, rounds: usize) {
    let admin = Scim::new(gw.http_addr);
    let started = Instant::now();
    for n in 0..rounds {
        let t = Instant::now();
        let round = Arc::new(setup_round(&admin, n, 52).await);
        let setup = t.elapsed();

        // Phase 1: users 0..20 over SCIM, 20..40 over LDAP.
        let jobs = (0..40).map(|u| (u < 20, vec![Step::Add(u)])).collect();
        let failures = run_phase(gw, &round, jobs).await;
        assert!(
            failures.is_empty(),
            "{name} round {n}, phase 1: {} of 40 additions failed:\n  {}",
            failures.len(),
            failures.join("\n  ")
        );
        let mut expected: BTreeSet<usize> = (0..40).collect();
        if let Err(e) = verify_members(gw, &round, &backend, &expected, "after phase 1 (40 concurrent adds)").await {
            panic!("{name} {e}");
        }

        // Phase 2. Removed over SCIM: 0..5 (added over SCIM) and 20..25 (added over LDAP); over LDAP:
        // 5..10 and 25..30. Added: 40..45 over SCIM, 45..50 over LDAP. Added then removed: 50 over
        // SCIM, 51 over LDAP.
        let mut jobs: Vec<(bool, Vec<Step>)> = Vec::new();
        jobs.extend((0..5).chain(20..25).map(|u| (true, vec![Step::Remove(u)])));
        jobs.extend((5..10).chain(25..30).map(|u| (false, vec![Step::Remove(u)])));
        jobs.extend((40..45).map(|u| (true, vec![Step::Add(u)])));
        jobs.extend((45..50).map(|u| (false, vec![Step::Add(u)])));
        jobs.push((true, vec![Step::Add(50), Step::Remove(50)]));
        jobs.push((false, vec![Step::Add(51), Step::Remove(51)]));
        let failures = run_phase(gw, &round, jobs).await;
        assert!(
            failures.is_empty(),
            "{name} round {n}, phase 2: {} of 32 clients failed:\n  {}",
            failures.len(),
            failures.join("\n  ")
        );
        for u in (0..10).chain(20..30) {
            expected.remove(&u);
        }
        expected.extend(40..50);
        if let Err(e) =
            verify_members(gw, &round, &backend, &expected, "after phase 2 (removals racing additions)").await
        {
            panic!("{name} {e}");
        }
        // Not needed for the checks, but it keeps the directory the same size in every round:
        // each write rebuilds the snapshot, so rounds would otherwise get slower and slower.
        remove_round(&admin, &round).await;
        eprintln!("{name}: round {n} took {:?} (setup {setup:?})", t.elapsed());
    }
    eprintln!("{name}: {rounds} rounds in {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn membership_races_lose_nothing_memory() {
    let demo = common::start_demo_full().await;
    membership_rounds("memory", &demo.running, memory_members(demo.backend.clone()), 50).await;
    demo.running.shutdown().await;
}

// The simulators get the full 50 rounds too: alone on 2 cores in a debug build a round takes about
// 0.7 s against Dolibarr's and 0.9 s against Foreman's (35 s and 42 s per test; measured with the
// checks turned into log lines, since the current code fails in round 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn membership_races_lose_nothing_dolibarr23() {
    let sim = Arc::new(DolibarrSim::start(Version::V23).await);
    let gw = dolibarr_gateway(&sim).await;
    let s = sim.clone();
    membership_rounds("dolibarr23", &gw, sim_members(move |g| s.group_members(g)), 50).await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn membership_races_lose_nothing_foreman() {
    let sim = Arc::new(ForemanSim::start().await);
    let gw = foreman_gateway(&sim).await;
    let s = sim.clone();
    membership_rounds("foreman", &gw, sim_members(move |g| s.group_members(g)), 50).await;
    gw.shutdown().await;
}

// ---- 2. concurrent patches of one user ------------------------------------------------------------------

/// Language tags cycled through by the LDAP writer (consecutive ones differ).
const LANGS: [&str; 4] = ["fr-FR", "de-DE", "es-ES", "it-IT"];

/// What round `r` writes. SCIM writes title, mobile, familyName, email, employeeNumber,
/// displayName, externalId and active; LDAP writes telephoneNumber, givenName and
/// preferredLanguage. The user model has no more writable attributes than these eleven, so there is
/// one writer per attribute: with more writers some would share an attribute and the final state
/// would depend on their order.
struct Want {
    title: String,
    mobile: String,
    family: String,
    email: String,
    employee: String,
    display: String,
    external: String,
    active: bool,
    phone: String,
    given: String,
    lang: &'static str,
}

fn want(r: usize) -> Want {
    Want {
        title: format!("Title {r}"),
        mobile: format!("+1 555 1{r:03}"),
        family: format!("Family{r}"),
        email: format!("patched{r}@example.com"),
        employee: format!("EMP-{r}"),
        display: format!("Shown Name {r}"),
        external: format!("ext-{r}"),
        active: r % 2 == 1,
        phone: format!("+1 555 2{r:03}"),
        given: format!("Given{r}"),
        lang: LANGS[r % LANGS.len()],
    }
}

fn field_check(out: &mut Vec<String>, source: &str, field: &str, want: &str, got: &str) {
    if want != got {
        out.push(format!("{field} {source}: want {want:?}, got {got:?}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_user_patches_lose_no_field() {
    let demo = common::start_demo_full().await;
    let gw = &demo.running;
    let admin = Scim::new(gw.http_addr);
    let login = "patchee";
    let dn = user_dn(login);
    let r = admin
        .post(
            "/Users",
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE_URN],
                "userName": login, "externalId": "ext-init", "displayName": "Shown Init", "title": "Title init",
                "name": {"givenName": "Given", "familyName": "Family"}, "locale": "en-US", "active": true,
                "emails": [{"value": "patchee@example.com", "type": "work", "primary": true}],
                "phoneNumbers": [{"value": "+1 555 0000", "type": "work"}, {"value": "+1 555 0001", "type": "mobile"}],
                ENTERPRISE_URN: {"employeeNumber": "EMP-init"},
            }),
        )
        .await;
    assert_eq!(r.status, 201, "creating {login}: {r}");
    let id = r.id();
    let path = format!("/Users/{id}");
    let started = Instant::now();
    for round in 0..20 {
        let w = want(round);
        let scim_ops = [
            ("title", json!([{"op": "replace", "path": "title", "value": w.title}])),
            ("mobile", json!([{"op": "replace", "path": "phoneNumbers[type eq \"mobile\"].value", "value": w.mobile}])),
            ("familyName", json!([{"op": "replace", "path": "name.familyName", "value": w.family}])),
            ("email", json!([{"op": "replace", "path": "emails[type eq \"work\"].value", "value": w.email}])),
            (
                "employeeNumber",
                json!([{"op": "replace", "path": format!("{ENTERPRISE_URN}:employeeNumber"), "value": w.employee}]),
            ),
            ("displayName", json!([{"op": "replace", "path": "displayName", "value": w.display}])),
            ("externalId", json!([{"op": "replace", "path": "externalId", "value": w.external}])),
            ("active", json!([{"op": "replace", "path": "active", "value": w.active}])),
        ];
        let ldap_mods = [
            ("telephoneNumber", w.phone.clone()),
            ("givenName", w.given.clone()),
            ("preferredLanguage", w.lang.to_string()),
        ];
        let mut tasks: Vec<Task> = Vec::new();
        for (field, ops) in scim_ops {
            let s = Scim::new(gw.http_addr);
            s.warm_up().await;
            let path = path.clone();
            tasks.push(Box::pin(async move {
                match s.try_patch(&path, ops, &[]).await {
                    Ok(r) if r.status == 200 => Vec::new(),
                    Ok(r) => vec![format!("SCIM PATCH of {field}: {r}")],
                    Err(e) => vec![format!("SCIM PATCH of {field}: {e}")],
                }
            }));
        }
        for (field, value) in ldap_mods {
            let mut l = bind(&demo.url, ADMIN_DN, ADMIN_PW).await;
            let dn = dn.clone();
            tasks.push(Box::pin(async move {
                let r = ldap_modify(&mut l, &dn, vec![Mod::Replace(field.to_string(), one(&value))]).await;
                ldap_close(l).await;
                match r {
                    Ok(r) if r.rc == 0 => Vec::new(),
                    Ok(r) => vec![format!("LDAP replace of {field}: {r}")],
                    Err(e) => vec![format!("LDAP replace of {field}: {e}")],
                }
            }));
        }
        let failures = release_together(tasks).await;
        assert!(failures.is_empty(), "round {round}: writes failed:\n  {}", failures.join("\n  "));

        let mut bad = Vec::new();
        // Over SCIM.
        let g = admin.get(&path).await;
        assert_eq!(g.status, 200, "round {round}: GET {path}: {g}");
        let b = &g.body;
        let s = |v: &Value| v.as_str().unwrap_or("<absent>").to_string();
        let phone_of = |ty: &str| {
            b["phoneNumbers"]
                .as_array()
                .and_then(|a| a.iter().find(|p| p["type"] == ty))
                .map(|p| s(&p["value"]))
                .unwrap_or_else(|| "<absent>".into())
        };
        let src = "over SCIM";
        field_check(&mut bad, src, "title", &w.title, &s(&b["title"]));
        field_check(&mut bad, src, "mobile", &w.mobile, &phone_of("mobile"));
        field_check(&mut bad, src, "work phone", &w.phone, &phone_of("work"));
        field_check(&mut bad, src, "name.familyName", &w.family, &s(&b["name"]["familyName"]));
        field_check(&mut bad, src, "name.givenName", &w.given, &s(&b["name"]["givenName"]));
        field_check(&mut bad, src, "email", &w.email, &s(&b["emails"][0]["value"]));
        field_check(&mut bad, src, "employeeNumber", &w.employee, &s(&b[ENTERPRISE_URN]["employeeNumber"]));
        field_check(&mut bad, src, "displayName", &w.display, &s(&b["displayName"]));
        field_check(&mut bad, src, "externalId", &w.external, &s(&b["externalId"]));
        field_check(&mut bad, src, "locale", w.lang, &s(&b["locale"]));
        field_check(&mut bad, src, "active", &w.active.to_string(), &b["active"].to_string());
        // Over LDAP.
        let mut l = bind(&demo.url, ADMIN_DN, ADMIN_PW).await;
        let attrs = [
            "title",
            "telephoneNumber",
            "mobile",
            "givenName",
            "sn",
            "cn",
            "mail",
            "employeeNumber",
            "preferredLanguage",
            "pwdAccountLockedTime",
        ];
        let e = read_entry(&mut l, &dn, &attrs).await.unwrap_or_else(|e| panic!("round {round}: {e}"));
        ldap_close(l).await;
        let a = |name: &str| attr(&e, name).join("|");
        let src = "over LDAP";
        field_check(&mut bad, src, "title", &w.title, &a("title"));
        field_check(&mut bad, src, "mobile", &w.mobile, &a("mobile"));
        field_check(&mut bad, src, "telephoneNumber", &w.phone, &a("telephoneNumber"));
        field_check(&mut bad, src, "sn", &w.family, &a("sn"));
        field_check(&mut bad, src, "givenName", &w.given, &a("givenName"));
        field_check(&mut bad, src, "cn", &format!("{} {}", w.given, w.family), &a("cn"));
        field_check(&mut bad, src, "mail", &w.email, &a("mail"));
        field_check(&mut bad, src, "employeeNumber", &w.employee, &a("employeeNumber"));
        field_check(&mut bad, src, "preferredLanguage", w.lang, &a("preferredLanguage"));
        field_check(
            &mut bad,
            src,
            "locked (pwdAccountLockedTime present)",
            &(!w.active).to_string(),
            &(!a("pwdAccountLockedTime").is_empty()).to_string(),
        );
        // In the backend.
        let u = demo.backend.get_user(&id).await.expect("backend read").expect("user in the backend");
        let o = |v: &Option<String>| v.clone().unwrap_or_else(|| "<absent>".into());
        let src = "in the backend";
        field_check(&mut bad, src, "title", &w.title, &o(&u.title));
        field_check(&mut bad, src, "mobile", &w.mobile, &o(&u.mobile));
        field_check(&mut bad, src, "phone", &w.phone, &o(&u.phone));
        field_check(&mut bad, src, "last_name", &w.family, &u.last_name);
        field_check(&mut bad, src, "first_name", &w.given, &u.first_name);
        field_check(&mut bad, src, "email", &w.email, &u.email);
        field_check(&mut bad, src, "employee_number", &w.employee, &o(&u.employee_number));
        field_check(&mut bad, src, "locale", &w.lang.replace('-', "_"), &o(&u.locale));
        field_check(&mut bad, src, "active", &w.active.to_string(), &u.active.to_string());
        assert!(
            bad.is_empty(),
            "round {round}: fields lost after 8 SCIM and 3 LDAP concurrent writes:\n  {}",
            bad.join("\n  ")
        );
    }
    eprintln!("concurrent_user_patches: 20 rounds in {:?}", started.elapsed());
    demo.running.shutdown().await;
}

// ---- 3. If-Match -------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn if_match_has_exactly_one_winner_per_version() {
    let demo = common::start_demo_full().await;
    let gw = &demo.running;
    let admin = Scim::new(gw.http_addr);
    let r = admin.post("/Users", json!({"userName": "contended", "name": {"familyName": "Contended"}})).await;
    assert_eq!(r.status, 201, "creating the user: {r}");
    let path = format!("/Users/{}", r.id());
    let started = Instant::now();
    for round in 0..10 {
        let cur = admin.get(&path).await;
        assert_eq!(cur.status, 200, "round {round}: {cur}");
        let etag = cur.etag().unwrap_or_else(|| panic!("round {round}: no ETag on {cur}"));
        let mut handles = Vec::new();
        let barrier = Arc::new(Barrier::new(20));
        for n in 0..20 {
            let s = Scim::new(gw.http_addr);
            s.warm_up().await;
            let (path, etag, barrier) = (path.clone(), etag.clone(), barrier.clone());
            handles.push(tokio::spawn(async move {
                let value = format!("candidate {round}-{n}");
                let ops = json!([{"op": "replace", "path": "title", "value": value}]);
                barrier.wait().await;
                (value, s.try_patch(&path, ops, &[("if-match", &etag)]).await)
            }));
        }
        let mut winners = Vec::new();
        let mut others = Vec::new();
        let mut refused = 0;
        for h in handles {
            match h.await {
                Ok((value, Ok(r))) if r.status == 200 => winners.push((value, r)),
                Ok((_, Ok(r))) if r.status == 412 => refused += 1,
                Ok((value, Ok(r))) => others.push(format!("{value}: {r}")),
                Ok((value, Err(e))) => others.push(format!("{value}: {e}")),
                Err(e) => others.push(format!("client task died: {e}")),
            }
        }
        assert!(others.is_empty(), "round {round}: answers other than 200 and 412:\n  {}", others.join("\n  "));
        let names: Vec<&String> = winners.iter().map(|(v, _)| v).collect();
        assert_eq!(
            (winners.len(), refused),
            (1, 19),
            "round {round}: with If-Match {etag}, {} PATCHes got 200 ({names:?}) and {refused} got 412",
            winners.len()
        );
        let (value, won) = &winners[0];
        let after = admin.get(&path).await;
        assert_eq!(after.body["title"].as_str(), Some(value.as_str()), "round {round}: the winner's title: {after}");
        assert_eq!(won.etag(), after.etag(), "round {round}: the winner's ETag is the current one");
        assert_ne!(after.etag().as_deref(), Some(etag.as_str()), "round {round}: the ETag changed");
    }
    eprintln!("if_match: 10 rounds in {:?}", started.elapsed());
    demo.running.shutdown().await;
}

// ---- 4. password policy ------------------------------------------------------------------------------

const SHORT: &str = "Sh0rt!";

async fn bind_rc(url: &str, dn: &str, pw: &str) -> u32 {
    let mut l = connect(url).await;
    let rc = try_bind(&mut l, dn, pw).await.rc;
    ldap_close(l).await;
    rc
}

/// A 400 invalidValue, or a line saying what came instead.
fn expect_invalid_value(bad: &mut Vec<String>, what: &str, r: &Resp) {
    if r.status != 400 || r.scim_type() != "invalidValue" {
        bad.push(format!("{what}: want 400 invalidValue, got {r}"));
    }
}

/// Creates a user with a valid password over SCIM; returns its id.
async fn user_with_password(s: &Scim, login: &str, pw: &str) -> String {
    let r = s.post("/Users", json!({"userName": login, "name": {"familyName": "Policy"}, "password": pw})).await;
    assert_eq!(r.status, 201, "creating {login}: {r}");
    r.id()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scim_password_policy_matches_ldap() {
    let demo = common::start_demo_full().await;
    let min = common::demo_config().ldap.password_min_length;
    assert!(SHORT.chars().count() < min, "the demo's password_min_length ({min}) must refuse {SHORT:?}");
    let s = Scim::new(demo.running.http_addr);
    let mut bad = Vec::new();

    // SCIM create with a short password: refused, nothing created.
    let r = s.post("/Users", json!({"userName": "shortpw", "name": {"familyName": "Short"}, "password": SHORT})).await;
    expect_invalid_value(&mut bad, "SCIM POST /Users with a short password", &r);
    let found = s.filter("Users", "userName eq \"shortpw\"").await.total();
    if found != 0 {
        bad.push(format!("SCIM POST with a short password: the user was created ({found} found over SCIM)"));
    }
    if demo.backend.find_user_by_login("shortpw").await.expect("backend read").is_some() {
        bad.push("SCIM POST with a short password: the user is in the backend".into());
    }

    // SCIM PATCH replace password: refused, the old one still binds.
    let old = "Valid-pass-1";
    let id = user_with_password(&s, "pwpatch", old).await;
    let r = s.patch(&format!("/Users/{id}"), json!([{"op": "replace", "path": "password", "value": SHORT}])).await;
    expect_invalid_value(&mut bad, "SCIM PATCH replace password with a short one", &r);
    let rc = bind_rc(&demo.url, &user_dn("pwpatch"), old).await;
    if rc != 0 {
        bad.push(format!("after the SCIM PATCH the old password no longer binds (rc {rc})"));
    }

    // SCIM PUT with a short password: refused, the old one still binds.
    let old = "Valid-pass-2";
    let id = user_with_password(&s, "pwput", old).await;
    let mut body = s.get(&format!("/Users/{id}")).await.body;
    body["password"] = json!(SHORT);
    let r = s.put(&format!("/Users/{id}"), body).await;
    expect_invalid_value(&mut bad, "SCIM PUT with a short password", &r);
    let rc = bind_rc(&demo.url, &user_dn("pwput"), old).await;
    if rc != 0 {
        bad.push(format!("after the SCIM PUT the old password no longer binds (rc {rc})"));
    }

    // LDAP modify replace userPassword: constraintViolation (19), the old one still binds.
    let old = "Valid-pass-3";
    user_with_password(&s, "pwldap", old).await;
    let mut l = bind(&demo.url, ADMIN_DN, ADMIN_PW).await;
    let r = ldap_modify(&mut l, &user_dn("pwldap"), vec![Mod::Replace("userPassword".into(), one(SHORT))])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    ldap_close(l).await;
    if r.rc != 19 {
        bad.push(format!("LDAP replace of userPassword with a short one: want rc 19, got {r}"));
    }
    let rc = bind_rc(&demo.url, &user_dn("pwldap"), old).await;
    if rc != 0 {
        bad.push(format!("after the LDAP modify the old password no longer binds (rc {rc})"));
    }

    assert!(bad.is_empty(), "password_min_length {min} is not enforced alike:\n  {}", bad.join("\n  "));
    demo.running.shutdown().await;
}

// ---- 5. externalId of a user deleted over LDAP ----------------------------------------------------------

async fn demo_on_state(state: &Path) -> Demo {
    let state = state.to_path_buf();
    common::start_demo_with(move |c| c.scim.state_path = Some(state)).await
}

/// The memory backend never reuses an id within one process and offers no way to set the next one,
/// so the id comes back the way it would after a restart: a second gateway on the same state file,
/// with the demo backend seeded afresh, gives its first new user the id the first gateway's first
/// new user had.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn external_id_dies_with_the_user_deleted_over_ldap() {
    let state = common::fresh_state_path();
    let ext = "ext-0f9c2d7e-doomed";
    let filter = format!("externalId eq \"{ext}\"");

    let demo = demo_on_state(&state).await;
    let s = Scim::new(demo.running.http_addr);
    let r = s.post("/Users", json!({"userName": "doomed", "externalId": ext, "name": {"familyName": "Doomed"}})).await;
    assert_eq!(r.status, 201, "creating the user: {r}");
    let doomed_id = r.id();
    assert_eq!(s.filter("Users", &filter).await.total(), 1, "found by externalId before the delete");
    let mut l = bind(&demo.url, ADMIN_DN, ADMIN_PW).await;
    let r = l.with_timeout(WAIT).delete(&user_dn("doomed")).await.expect("LDAP delete answered");
    assert_eq!(r.rc, 0, "LDAP delete of the user: {r}");
    ldap_close(l).await;
    let found = s.filter("Users", &filter).await;
    assert_eq!(found.total(), 0, "after the LDAP delete, {filter} still finds {}", found.body["Resources"]);
    drop(s);
    demo.running.shutdown().await;

    // Same state file, the backend seeded afresh: the next user gets the deleted user's id.
    let demo = demo_on_state(&state).await;
    let s = Scim::new(demo.running.http_addr);
    let mut l = bind(&demo.url, ADMIN_DN, ADMIN_PW).await;
    let attrs = vec![
        ("objectClass".to_string(), HashSet::from(["inetOrgPerson".to_string()])),
        ("uid".to_string(), one("heir")),
        ("cn".to_string(), one("New Heir")),
        ("sn".to_string(), one("Heir")),
    ];
    let r = l.with_timeout(WAIT).add(&user_dn("heir"), attrs).await.expect("LDAP add answered");
    assert_eq!(r.rc, 0, "LDAP add of the new user: {r}");
    ldap_close(l).await;
    let heir = s.filter("Users", "userName eq \"heir\"").await;
    assert_eq!(heir.total(), 1, "the new user over SCIM: {heir}");
    let heir = heir.body["Resources"][0].clone();
    assert_eq!(heir["id"].as_str(), Some(doomed_id.as_str()), "precondition: the backend reused the deleted id");

    let found = s.filter("Users", &filter).await;
    let mut bad = Vec::new();
    if found.total() != 0 {
        bad.push(format!("{filter} finds {} user(s): {}", found.total(), found.body["Resources"]));
    }
    if let Some(x) = heir.get("externalId") {
        bad.push(format!("the new user {} has the deleted user's externalId {x}", heir["userName"]));
    }
    assert!(bad.is_empty(), "the externalId outlived the user deleted over LDAP:\n  {}", bad.join("\n  "));
    demo.running.shutdown().await;
}

// ---- 6. modifyTimestamp and meta.lastModified ------------------------------------------------------------

/// An entry's clocks as both front ends show them.
#[derive(Clone, Debug)]
struct Stamps {
    ldap: i64,
    scim: i64,
    etag: String,
}

fn rfc3339(s: &str) -> i64 {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("meta.lastModified {s:?} is not RFC 3339: {e}"))
        .unix_timestamp()
}

/// `scim_path` is `/Users/<id>` or `/Groups/<id>`; `dn` the same entry's DN.
async fn stamps(url: &str, s: &Scim, dn: &str, scim_path: &str) -> Stamps {
    let mut l = bind(url, ADMIN_DN, ADMIN_PW).await;
    let e = read_entry(&mut l, dn, &["modifyTimestamp"]).await.unwrap_or_else(|e| panic!("{e}"));
    ldap_close(l).await;
    let r = s.get(scim_path).await;
    assert_eq!(r.status, 200, "GET {scim_path}: {r}");
    Stamps {
        ldap: parse_gt(&common::first(&e, "modifyTimestamp")),
        scim: rfc3339(r.body["meta"]["lastModified"].as_str().unwrap_or_else(|| panic!("no lastModified: {r}"))),
        etag: r.etag().unwrap_or_else(|| panic!("no ETag: {r}")),
    }
}

/// The wall clock just before a write, taken after the clock has passed every earlier second, so a
/// stamp the write did not move is older than it.
async fn fresh_second() -> i64 {
    wait_past(now_unix()).await;
    now_unix()
}

fn check_after_write(bad: &mut Vec<String>, what: &str, before: i64, prev: &Stamps, now: &Stamps) {
    if now.ldap < before {
        bad.push(format!(
            "{what}: LDAP modifyTimestamp {} is before the write at {}",
            common::format_gt(now.ldap),
            common::format_gt(before)
        ));
    }
    if now.scim < before {
        bad.push(format!(
            "{what}: SCIM meta.lastModified {} is before the write at {}",
            common::format_gt(now.scim),
            common::format_gt(before)
        ));
    }
    if now.etag == prev.etag {
        bad.push(format!("{what}: the ETag {} did not change", now.etag));
    }
}

fn check_not_backwards(bad: &mut Vec<String>, what: &str, before: i64, written: &Stamps, now: &Stamps) {
    for (proto, was, is) in
        [("LDAP modifyTimestamp", written.ldap, now.ldap), ("SCIM meta.lastModified", written.scim, now.scim)]
    {
        if is < was || is < before {
            bad.push(format!(
                "{what}: {proto} is {}; right after the write it was {}, and the write was at {}",
                common::format_gt(is),
                common::format_gt(was),
                common::format_gt(before)
            ));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_move_modify_timestamp_forward() {
    let demo = common::start_demo_full().await;
    let url = demo.url.clone();
    let s = Scim::new(demo.running.http_addr);
    let id_of = |login: &'static str| {
        let s = &s;
        async move {
            let r = s.filter("Users", &format!("userName eq \"{login}\"")).await;
            r.body["Resources"][0]["id"].as_str().unwrap_or_else(|| panic!("user {login}: {r}")).to_string()
        }
    };
    let bob = (user_dn("bob"), format!("/Users/{}", id_of("bob").await));
    let dave = (user_dn("dave"), format!("/Users/{}", id_of("dave").await));
    let admins = s.filter("Groups", "displayName eq \"admins\"").await;
    let admins_id = admins.body["Resources"][0]["id"].as_str().expect("group admins").to_string();
    let admins = (group_dn("admins"), format!("/Groups/{admins_id}"));
    let dave_id = dave.1.trim_start_matches("/Users/").to_string();
    assert!(!member_ids(&get_ok(&s, &admins.1).await).contains(&dave_id), "dave starts outside admins");

    let mut bad = Vec::new();
    // (entry, clock before its last write, stamps right after it)
    let mut written: BTreeMap<&str, (i64, Stamps)> = BTreeMap::new();

    // (a) LDAP modify of a user attribute.
    let prev = stamps(&url, &s, &bob.0, &bob.1).await;
    let before = fresh_second().await;
    let mut l = bind(&url, ADMIN_DN, ADMIN_PW).await;
    let r = ldap_modify(&mut l, &bob.0, vec![Mod::Replace("title".into(), one("Timestamp checker"))])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.rc, 0, "LDAP modify of bob's title: {r}");
    let now = stamps(&url, &s, &bob.0, &bob.1).await;
    check_after_write(&mut bad, "(a) bob after an LDAP modify of his title", before, &prev, &now);
    written.insert("bob", (before, now));

    // (b) SCIM PATCH adding a member: the group and the member (its memberOf) changed.
    let prev_g = stamps(&url, &s, &admins.0, &admins.1).await;
    let prev_u = stamps(&url, &s, &dave.0, &dave.1).await;
    let before = fresh_second().await;
    let r = s.patch(&admins.1, json!([{"op": "add", "path": "members", "value": [{"value": dave_id}]}])).await;
    assert!(r.status == 200 || r.status == 204, "SCIM PATCH adding dave to admins: {r}");
    let now_g = stamps(&url, &s, &admins.0, &admins.1).await;
    let now_u = stamps(&url, &s, &dave.0, &dave.1).await;
    check_after_write(&mut bad, "(b) group admins after a SCIM member add", before, &prev_g, &now_g);
    check_after_write(&mut bad, "(b) member dave after a SCIM member add", before, &prev_u, &now_u);

    // (c) LDAP modify removing that member.
    let before = fresh_second().await;
    let r = ldap_modify(&mut l, &admins.0, vec![Mod::Delete("member".into(), one(&dave.0))])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.rc, 0, "LDAP modify removing dave from admins: {r}");
    ldap_close(l).await;
    let after_g = stamps(&url, &s, &admins.0, &admins.1).await;
    let after_u = stamps(&url, &s, &dave.0, &dave.1).await;
    check_after_write(&mut bad, "(c) group admins after an LDAP member removal", before, &now_g, &after_g);
    check_after_write(&mut bad, "(c) member dave after an LDAP member removal", before, &now_u, &after_u);
    written.insert("admins", (before, after_g));
    written.insert("dave", (before, after_u));

    // A refresh must not turn the clocks back.
    let dir = demo.directory();
    for refresh in ["full refresh", "incremental refresh"] {
        let result = if refresh == "full refresh" { dir.refresh_full().await } else { dir.refresh_incremental().await };
        result.unwrap_or_else(|e| panic!("{refresh}: {e}"));
        for (name, (dn, path)) in [("bob", &bob), ("admins", &admins), ("dave", &dave)] {
            let (before, w) = &written[name];
            let now = stamps(&url, &s, dn, path).await;
            check_not_backwards(&mut bad, &format!("{name} after the {refresh}"), *before, w, &now);
        }
    }
    assert!(bad.is_empty(), "timestamps do not follow the writes:\n  {}", bad.join("\n  "));
    demo.running.shutdown().await;
}

async fn get_ok(s: &Scim, path: &str) -> Value {
    let r = s.get(path).await;
    assert_eq!(r.status, 200, "GET {path}: {r}");
    r.body
}

/// A member added in the ERP since the last refresh is not in the cache. A SCIM removal of it
/// answered 200 must still reach the ERP, in both request forms clients use.
#[tokio::test]
async fn acknowledged_removals_reach_the_backend_even_when_the_cache_is_behind() {
    let demo = common::start_demo_full().await;
    let s = Scim::new(demo.running.http_addr);
    let g = s.post("/Groups", json!({"displayName": "behind"})).await;
    assert_eq!(g.status, 201, "{g}");
    let (gid, backend_gid) = (g.id(), g.id().trim_start_matches('g').to_string());
    let mut ids = Vec::new();
    for login in ["behind1", "behind2"] {
        let r = s.post("/Users", new_user(login)).await;
        assert_eq!(r.status, 201, "{r}");
        ids.push(r.id());
        // Straight into the ERP, behind the gateway's back.
        demo.backend.add_member(&backend_gid, &r.id()).await.expect("backend add");
    }
    let in_backend = |id: String| {
        let b = demo.backend.clone();
        let gid = backend_gid.clone();
        async move { b.get_group(&gid).await.unwrap().unwrap().members.contains(&id) }
    };
    let r = s
        .patch(
            &format!("/Groups/{gid}"),
            json!([{"op": "remove", "path": format!("members[value eq \"{}\"]", ids[0])}]),
        )
        .await;
    assert!(r.status == 200 || r.status == 204, "filter form: {r}");
    assert!(!in_backend(ids[0].clone()).await, "filter-form removal answered {} but never reached the ERP", r.status);
    let r = s
        .patch(&format!("/Groups/{gid}"), json!([{"op": "remove", "path": "members", "value": [{"value": ids[1]}]}]))
        .await;
    assert!(r.status == 200 || r.status == 204, "value form: {r}");
    assert!(!in_backend(ids[1].clone()).await, "value-form removal answered {} but never reached the ERP", r.status);
}
