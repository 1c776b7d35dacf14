//! The directory core: the one door through which front ends read and change identities. It holds
//! the cached snapshot and refreshes it from the backend (`refresh.rs`), checks passwords
//! (`auth.rs`), decides who may read and write what (`access.rs`), and owns every write
//! (`write.rs`): front ends translate their protocol into these calls and nothing more.

mod access;
mod auth;
mod bind_cache;
pub mod custom;
pub mod error;
mod hidden;
mod locks;
mod names;
mod refresh;
pub mod snapshot;
pub mod state;
mod throttle;
mod write;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;

use crate::backend::{Backend, Capabilities};
use crate::config::{Config, DeleteMode, Rights, ServiceAccount};
use crate::model::{Group, User};
pub use access::{AccessPolicy, Action, Caller, Grant, Principal, ReadScope};
pub use auth::BindName;
pub use bind_cache::BindCache;
pub use custom::CustomAttrs;
pub use error::{DirectoryError, Upstream};
pub use hidden::Hidden;
pub use names::NameRule;
pub use snapshot::Snapshot;
pub use state::{StateError, StateStore};
use throttle::Throttle;
pub use write::{Attached, GroupEdit, GroupSpec, UserEdit, UserSpec};

/// The result of a password check.
#[derive(Debug, Clone)]
pub enum AuthOutcome {
    User(Arc<User>),
    Service {
        name: String,
        access: Rights,
    },
    /// Wrong name or password; deliberately says no more.
    Invalid,
    /// Too many failures for this name or address.
    Throttled(Duration),
}

/// Health as the HTTP endpoints and `check-config` report it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Health {
    pub loaded: bool,
    pub generation: u64,
    pub users: usize,
    pub groups: usize,
    pub age_seconds: Option<f64>,
    pub stale: bool,
    pub last_error: Option<String>,
}

/// Rules every write follows, whatever front end it came through.
#[derive(Debug, Clone)]
pub struct WritePolicy {
    pub password_min_length: usize,
    /// What deleting a user over LDAP means.
    pub ldap_delete_mode: DeleteMode,
}

pub struct Directory {
    backend: Arc<dyn Backend>,
    /// Backend kind and installation: part of every entity UUID.
    scope: String,
    snapshot: ArcSwapOption<Snapshot>,
    generation: AtomicU64,
    /// Serialises snapshot replacement (refresh installs and write-through deltas).
    install: std::sync::Mutex<()>,
    /// One refresh at a time.
    refreshing: tokio::sync::Mutex<()>,
    /// While a refresh fetches: the deltas applied meanwhile, replayed onto its result.
    write_log: std::sync::Mutex<Option<Vec<Delta>>>,
    last_error: std::sync::Mutex<Option<String>>,
    /// Unix time at which the last successful refresh started (for incremental fetches).
    last_refresh_unix: AtomicU64,
    max_stale: Duration,
    refresh_interval: Duration,
    full_refresh_interval: Duration,
    bind_cache: BindCache,
    throttle: Throttle,
    failure_times: auth::FailureTimes,
    /// Logins the backend did not know, until the next refresh could have brought them.
    login_misses: moka::sync::Cache<String, ()>,
    /// Backend lookups of logins the snapshot lacks, for binds.
    login_lookup_budget: auth::Budget,
    /// Coalesces concurrent by-login lookups of users missing from the snapshot.
    login_lookups: moka::future::Cache<String, Option<Arc<User>>>,
    services: Vec<ServiceAccount>,
    locks: locks::Locks,
    state: StateStore,
    access: AccessPolicy,
    policy: WritePolicy,
    /// Admission of costly searches, shared by the LDAP and SCIM front ends.
    searches: crate::costly::Gate,
    hidden: Hidden,
    names: NameRule,
    custom: CustomAttrs,
    member_of: crate::config::MemberOf,
}

/// One acknowledged change to the cached directory.
#[derive(Debug, Clone)]
enum Delta {
    PutUser(Arc<User>),
    DeleteUser(String),
    /// A group's own fields; its memberships stay.
    PutGroupFields(Arc<Group>),
    /// A group with exactly the members it lists (a creation).
    PutGroup(Arc<Group>),
    DeleteGroup(String),
    /// One member group.
    MemberGroup {
        group: String,
        child: String,
        add: bool,
        at: i64,
    },
    /// One membership, with the time of the write that changed it.
    Member {
        group: String,
        user: String,
        add: bool,
        at: i64,
    },
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// `modified` no older than `at`.
fn stamped_user(u: &User, at: i64) -> Arc<User> {
    let mut u = u.clone();
    u.modified = Some(u.modified.unwrap_or(at).max(at));
    Arc::new(u)
}

fn stamped_group(g: &Group, at: i64) -> Arc<Group> {
    let mut g = g.clone();
    g.modified = Some(g.modified.unwrap_or(at).max(at));
    Arc::new(g)
}

fn apply_delta(s: &mut Snapshot, d: &Delta) {
    match d {
        Delta::PutUser(u) => {
            s.put_user(u.clone());
        }
        Delta::DeleteUser(id) => {
            s.remove_user(id);
        }
        Delta::PutGroupFields(g) => {
            s.put_group_fields(g.clone());
        }
        Delta::PutGroup(g) => {
            s.put_group(g.clone());
        }
        Delta::DeleteGroup(id) => {
            s.remove_group(id);
        }
        Delta::MemberGroup { group, child, add, at } => {
            let (Some(gi), Some(ci)) = (s.group_index(group), s.group_index(child)) else { return };
            if s.set_member_group(gi, ci, *add) {
                let g = stamped_group(s.group(gi), *at);
                s.put_group_fields(g);
            }
        }
        Delta::Member { group, user, add, at } => {
            let (Some(gi), Some(ui)) = (s.group_index(group), s.user_index(user)) else { return };
            if s.set_member(gi, ui, *add) {
                // The group's member list and the user's memberOf both changed.
                let g = stamped_group(s.group(gi), *at);
                s.put_group_fields(g);
                let u = stamped_user(s.user(ui), *at);
                s.put_user(u);
            }
        }
    }
}

impl Directory {
    /// A directory whose gateway-side state lives in memory only.
    pub fn new(cfg: &Config, backend: Arc<dyn Backend>) -> Arc<Directory> {
        Directory::with_state(cfg, backend, StateStore::memory())
    }

    /// A directory with its gateway-side state in `scim.state_path` (memory when unset).
    pub fn open(cfg: &Config, backend: Arc<dyn Backend>) -> Result<Arc<Directory>, StateError> {
        let state = StateStore::open(cfg.scim.state_path.as_deref())?;
        if cfg.scim.state_path.is_none() {
            tracing::warn!("scim.state_path is not set: externalId values are kept in memory only");
        }
        Ok(Directory::with_state(cfg, backend, state))
    }

    fn with_state(cfg: &Config, backend: Arc<dyn Backend>, state: StateStore) -> Arc<Directory> {
        Arc::new(Directory {
            scope: format!("{}\u{0}{}", backend.kind(), backend.instance()),
            snapshot: ArcSwapOption::empty(),
            generation: AtomicU64::new(0),
            install: Default::default(),
            refreshing: Default::default(),
            write_log: Default::default(),
            last_error: Default::default(),
            last_refresh_unix: AtomicU64::new(0),
            max_stale: cfg.cache.max_stale,
            refresh_interval: cfg.cache.refresh_interval,
            full_refresh_interval: cfg.cache.full_refresh_interval,
            bind_cache: BindCache::new(cfg.cache.bind_cache_ttl, 1_000_000),
            throttle: Throttle::new(cfg.bind_throttle.clone()),
            failure_times: auth::FailureTimes::new(cfg.bind_throttle.min_failure_time),
            login_misses: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(cfg.cache.refresh_interval.max(Duration::from_secs(1)))
                .build(),
            login_lookup_budget: auth::Budget::new(5.0, 20.0),
            login_lookups: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(5))
                .build(),
            services: cfg.ldap.service_accounts.clone(),
            locks: locks::Locks::default(),
            state,
            access: AccessPolicy {
                allow_anonymous: cfg.ldap.allow_anonymous,
                users_may_change_password: cfg.ldap.users_may_change_password,
                self_password_change_requires_old: cfg.ldap.self_password_change_requires_old,
            },
            policy: WritePolicy {
                password_min_length: cfg.ldap.password_min_length,
                ldap_delete_mode: cfg.ldap.delete_mode,
            },
            searches: crate::costly::Gate::new(cfg.ldap.costly_searches, cfg.ldap.costly_searches_per_principal),
            hidden: Hidden::new(&cfg.directory.hidden),
            names: NameRule::new(&cfg.directory.user_names, backend.refused_login_chars()),
            custom: CustomAttrs::new(&cfg.directory.attributes),
            member_of: cfg.directory.member_of,
            backend,
        })
    }

    /// The installation scope that names entity UUIDs.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    pub fn capabilities(&self) -> Capabilities {
        self.backend.capabilities()
    }

    pub fn write_policy(&self) -> &WritePolicy {
        &self.policy
    }

    /// The configured custom attributes.
    pub fn custom_attributes(&self) -> &CustomAttrs {
        &self.custom
    }

    /// How `memberOf` is reported.
    pub fn member_of(&self) -> crate::config::MemberOf {
        self.member_of
    }

    /// How user names become logins.
    pub fn name_rule(&self) -> &NameRule {
        &self.names
    }

    /// True for an account kept out of the directory.
    pub fn hides(&self, u: &User) -> bool {
        self.hidden.hides(u) || self.backend.own_login().is_some_and(|l| l.eq_ignore_ascii_case(&u.login))
    }

    /// True for a login that may never be published or created.
    fn hides_login(&self, login: &str) -> bool {
        self.hidden.hides_login(login) || self.backend.own_login().is_some_and(|l| l.eq_ignore_ascii_case(login))
    }

    /// The accounts of `users` the directory hides, each with why, for `check-config`.
    pub fn hidden_report(&self, users: &[User]) -> Vec<(String, &'static str)> {
        let own = self.backend.own_login();
        users
            .iter()
            .filter_map(|u| {
                self.hidden.clone().with_login(own.clone()).reason(u, own.as_deref()).map(|r| (u.login.clone(), r))
            })
            .collect()
    }

    /// Where costly searches wait for their turn and get their budgets.
    pub fn searches(&self) -> &crate::costly::Gate {
        &self.searches
    }

    /// The current snapshot, unless there is none or it is older than `max_stale`.
    pub fn snapshot(&self) -> Result<Arc<Snapshot>, DirectoryError> {
        let snap = self
            .snapshot
            .load_full()
            .ok_or_else(|| DirectoryError::Stale(self.why_unavailable("the directory has not been loaded yet")))?;
        if snap.built_at.elapsed() > self.max_stale {
            return Err(DirectoryError::Stale(self.why_unavailable("the cached directory is older than max_stale")));
        }
        Ok(snap)
    }

    fn why_unavailable(&self, what: &str) -> String {
        match self.last_error.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            Some(e) => format!("{what} and the backend is failing ({e})"),
            None => what.to_string(),
        }
    }

    pub fn health(&self) -> Health {
        let snap = self.snapshot.load_full();
        Health {
            loaded: snap.is_some(),
            generation: snap.as_ref().map_or(0, |s| s.generation),
            users: snap.as_ref().map_or(0, |s| s.user_count()),
            groups: snap.as_ref().map_or(0, |s| s.group_count()),
            age_seconds: snap.as_ref().map(|s| s.built_at.elapsed().as_secs_f64()),
            stale: snap.as_ref().is_none_or(|s| s.built_at.elapsed() > self.max_stale),
            last_error: self.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }

    fn next_generation(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn note_error(&self, e: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = e;
    }

    /// Applies changes the backend acknowledged, so the next read shows them (read-your-writes).
    /// Costs O(size of the change), never a rebuild.
    fn apply(&self, deltas: Vec<Delta>) {
        let _guard = self.install.lock().unwrap_or_else(|e| e.into_inner());
        let deltas: Vec<Delta> = deltas
            .into_iter()
            .map(|d| match d {
                Delta::PutUser(u) if self.hides(&u) => Delta::DeleteUser(u.id.clone()),
                d => d,
            })
            .collect();
        if let Some(log) = self.write_log.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            log.extend(deltas.iter().cloned());
        }
        let Some(cur) = self.snapshot.load_full() else { return };
        let mut next = (*cur).clone();
        for d in &deltas {
            apply_delta(&mut next, d);
        }
        // A write does not make the rest of the data fresher: `built_at` stays.
        next.generation = self.next_generation();
        self.snapshot.store(Some(Arc::new(next)));
    }

    /// Forgets a user's cached password (after a password change).
    pub fn evict_bind_cache(&self, user_id: &str) {
        self.bind_cache.evict(user_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::{MemoryBackend, Seed};
    use std::net::IpAddr;

    fn dir(seed: &str, tweak: impl FnOnce(&mut Config)) -> (Arc<Directory>, Arc<MemoryBackend>) {
        let mut cfg = Config::parse("[backend]\nkind=\"memory\"\n").unwrap();
        cfg.ldap.service_accounts.push(ServiceAccount {
            name: "reader".into(),
            password: crate::config::Secret::new("pw"),
            access: Rights::all(crate::config::Access::Read),
            networks: Vec::new(),
        });
        tweak(&mut cfg);
        let seed: Seed = serde_json::from_str(seed).unwrap();
        let backend = Arc::new(MemoryBackend::from_seed(seed).unwrap());
        (Directory::new(&cfg, backend.clone()), backend)
    }

    const SEED: &str = r#"{"users":[{"login":"alice","password":"pw-a","email":"a@x"},{"login":"bob","password":"pw-b"}],
                           "groups":[{"name":"devs","members":["alice"]}]}"#;
    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[tokio::test]
    async fn unloaded_directory_is_unavailable_not_empty() {
        let (d, _) = dir(SEED, |_| {});
        assert!(matches!(d.snapshot(), Err(DirectoryError::Stale(_))));
        d.refresh_full().await.unwrap();
        assert_eq!(d.snapshot().unwrap().user_count(), 2);
    }

    /// A change made in the backend and found by an incremental refresh is stamped no older than
    /// the refresh, on both sides of a membership; entries it did not touch keep their time.
    #[tokio::test]
    async fn refreshes_move_times_forward_only_for_what_changed() {
        let (d, b) = dir(SEED, |_| {});
        d.refresh_full().await.unwrap();
        let old = |login: &str| d.snapshot().unwrap().user_by_login(login).unwrap().modified;
        let (alice_before, bob_before) = (old("alice"), old("bob"));
        let bob = b.find_user_by_login("bob").await.unwrap().unwrap();
        let devs = d.snapshot().unwrap().group_by_name("devs").unwrap().id.clone();
        // The backend's own time for the change lies in the past, as a slow refresh would find it.
        b.add_member(&devs, &bob.id).await.unwrap();
        let seen = unix_now() as i64;
        d.refresh_incremental().await.unwrap();
        let s = d.snapshot().unwrap();
        assert!(s.user_by_login("bob").unwrap().modified >= Some(seen), "bob's memberOf changed");
        assert!(s.user_by_login("bob").unwrap().modified >= bob_before);
        assert!(s.group_by_name("devs").unwrap().modified >= Some(seen), "the group's members changed");
        assert_eq!(old("alice"), alice_before, "alice was not touched");
        let g = s.generation;
        d.refresh_incremental().await.unwrap();
        assert_eq!(d.snapshot().unwrap().generation, g, "nothing new: same generation, same times");
        assert!(d.snapshot().unwrap().user_by_login("bob").unwrap().modified >= Some(seen));
    }

    #[tokio::test]
    async fn generation_stays_when_nothing_changed() {
        let (d, b) = dir(SEED, |_| {});
        d.refresh_full().await.unwrap();
        let g1 = d.snapshot().unwrap().generation;
        d.refresh_full().await.unwrap();
        assert_eq!(d.snapshot().unwrap().generation, g1);
        let alice = b.find_user_by_login("alice").await.unwrap().unwrap();
        b.update_user(&alice.id, &crate::model::UserChanges { email: Some("new@x".into()), ..Default::default() })
            .await
            .unwrap();
        d.refresh_incremental().await.unwrap();
        let s = d.snapshot().unwrap();
        assert!(s.generation > g1);
        assert_eq!(s.user_by_login("alice").unwrap().email, "new@x");
    }

    #[tokio::test]
    async fn password_checks_use_the_cache_and_slow_failures_down_without_locking_out() {
        let (d, _) = dir(SEED, |c| {
            c.bind_throttle.pair_free_failures = 2;
            c.bind_throttle.first_delay = Duration::from_millis(200);
        });
        d.refresh_full().await.unwrap();
        assert!(matches!(d.authenticate_user("alice", "pw-a", IP).await.unwrap(), AuthOutcome::User(_)));
        assert_eq!(d.bind_cache.len(), 1);
        assert!(matches!(d.authenticate_user("ALICE", "pw-a", IP).await.unwrap(), AuthOutcome::User(_)));
        for _ in 0..2 {
            assert!(matches!(d.authenticate_user("alice", "bad", IP).await.unwrap(), AuthOutcome::Invalid));
        }
        // The third failure is answered late, and meanwhile the pair is busy, not refused as wrong.
        let t = std::time::Instant::now();
        let (third, meanwhile) = tokio::join!(d.authenticate_user("alice", "bad", IP), async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            d.authenticate_user("alice", "pw-a", IP).await
        });
        assert!(matches!(third.unwrap(), AuthOutcome::Invalid));
        assert!(t.elapsed() >= Duration::from_millis(200), "{:?}", t.elapsed());
        assert!(matches!(meanwhile.unwrap(), AuthOutcome::Throttled(_)));
        // A client that waited for its answer gets in with the right password.
        assert!(matches!(d.authenticate_user("alice", "pw-a", IP).await.unwrap(), AuthOutcome::User(_)));
        // Unknown accounts are slowed exactly like known ones.
        for _ in 0..2 {
            assert!(matches!(d.authenticate_user("ghost", "x", IP).await.unwrap(), AuthOutcome::Invalid));
        }
        let t = std::time::Instant::now();
        assert!(matches!(d.authenticate_user("ghost", "x", IP).await.unwrap(), AuthOutcome::Invalid));
        assert!(t.elapsed() >= Duration::from_millis(200));
    }

    #[tokio::test]
    async fn users_created_after_the_refresh_can_bind() {
        let (d, b) = dir(SEED, |_| {});
        d.refresh_full().await.unwrap();
        b.create_user(&crate::model::NewUser {
            login: "carol".into(),
            active: true,
            password: Some("pw-c".into()),
            ..Default::default()
        })
        .await
        .unwrap();
        assert!(matches!(d.authenticate_user("carol", "pw-c", IP).await.unwrap(), AuthOutcome::User(_)));
        assert!(d.snapshot().unwrap().user_by_login("carol").is_some(), "looked-up user cached");
    }

    #[tokio::test]
    async fn service_accounts() {
        let (d, _) = dir(SEED, |_| {});
        let bind = |name, pw, ip| {
            let d = d.clone();
            async move { d.authenticate(BindName::Service(name), pw, ip).await.unwrap() }
        };
        assert!(matches!(
            bind("Reader", "pw", IP).await,
            AuthOutcome::Service { access: Rights { users: crate::config::Access::Read, .. }, .. }
        ));
        assert!(matches!(bind("reader", "pw2", IP).await, AuthOutcome::Invalid));
        assert!(matches!(bind("nobody", "pw", IP).await, AuthOutcome::Invalid));
    }

    #[tokio::test]
    async fn service_accounts_bind_only_from_their_networks() {
        let (d, _) = dir(SEED, |c| {
            c.ldap.service_accounts[0].networks = vec!["10.0.0.0/8".parse().unwrap()];
            c.bind_throttle.pair_free_failures = 1;
        });
        let outside: std::net::IpAddr = "192.0.2.1".parse().unwrap();
        let inside: std::net::IpAddr = "10.1.2.3".parse().unwrap();
        let bind = |pw, ip| {
            let d = d.clone();
            async move { d.authenticate(BindName::Service("reader"), pw, ip).await.unwrap() }
        };
        assert!(matches!(bind("pw", outside).await, AuthOutcome::Invalid), "right password, wrong network");
        for _ in 0..5 {
            assert!(matches!(bind("wrong", outside).await, AuthOutcome::Invalid));
        }
        assert!(matches!(bind("pw", inside).await, AuthOutcome::Service { .. }), "unaffected inside");
    }

    #[tokio::test]
    async fn writes_during_a_refresh_survive_it() {
        let (d, _) = dir(SEED, |_| {});
        d.refresh_full().await.unwrap();
        d.begin_fetch();
        let late = User { id: "77".into(), login: "late".into(), active: true, ..Default::default() };
        d.apply(vec![Delta::PutUser(Arc::new(late))]);
        // the fetched data predates the write
        let s = d.snapshot().unwrap();
        let users: Vec<User> = s.users().filter(|(_, u)| u.id != "77").map(|(_, u)| (**u).clone()).collect();
        let groups: Vec<Group> = s.groups().map(|(gi, _)| s.group_with_members(gi)).collect();
        d.install_fetched(refresh::Fetched::Full(users, groups), unix_now());
        assert!(d.snapshot().unwrap().user_by_login("late").is_some());
    }
}
