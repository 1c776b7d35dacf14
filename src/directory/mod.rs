//! The directory core: the one door through which front ends read and change identities. It holds
//! the cached snapshot, refreshes it from the backend, checks passwords (bind cache, throttling),
//! and knows the configured service accounts.

mod bind_cache;
pub mod snapshot;
mod throttle;
mod write;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use subtle::ConstantTimeEq;
use tokio::sync::{Mutex, watch};

use crate::backend::{Backend, BackendError, Capabilities};
use crate::config::{Config, Rights, ServiceAccount};
use crate::model::{Group, User};
pub use bind_cache::BindCache;
pub use snapshot::Snapshot;
use throttle::Throttle;
pub use write::Actor;

/// Why the directory could not answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DirectoryError {
    /// No usable snapshot: never loaded, or older than `max_stale`.
    #[error("directory data unavailable: {0}")]
    Stale(String),
    #[error(transparent)]
    Backend(#[from] BackendError),
}

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

pub struct Directory {
    backend: Arc<dyn Backend>,
    snapshot: ArcSwapOption<Snapshot>,
    generation: AtomicU64,
    /// Serialises snapshot replacement (refresh installs and write-through updates).
    install: Mutex<()>,
    /// Writes applied while a refresh was fetching, replayed onto its result.
    write_log: std::sync::Mutex<Vec<WriteOp>>,
    refreshing_since: std::sync::Mutex<Option<Instant>>,
    last_error: std::sync::Mutex<Option<String>>,
    /// Unix time at which the last successful refresh started (for incremental fetches).
    last_refresh_unix: AtomicU64,
    max_stale: Duration,
    refresh_interval: Duration,
    full_refresh_interval: Duration,
    bind_cache: BindCache,
    throttle: Throttle,
    /// Coalesces concurrent by-login lookups of users missing from the snapshot.
    login_lookups: moka::future::Cache<String, Option<Arc<User>>>,
    services: Vec<ServiceAccount>,
}

#[derive(Debug, Clone)]
enum WriteOp {
    PutUser(Arc<User>),
    DeleteUser(String),
    PutGroup(Arc<Group>),
    DeleteGroup(String),
}

/// Overlap for incremental fetches, covering clock skew and same-second changes.
const INCREMENTAL_OVERLAP_SECS: u64 = 120;

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Directory {
    pub fn new(cfg: &Config, backend: Arc<dyn Backend>) -> Arc<Directory> {
        Arc::new(Directory {
            backend,
            snapshot: ArcSwapOption::empty(),
            generation: AtomicU64::new(0),
            install: Mutex::new(()),
            write_log: Default::default(),
            refreshing_since: Default::default(),
            last_error: Default::default(),
            last_refresh_unix: AtomicU64::new(0),
            max_stale: cfg.cache.max_stale,
            refresh_interval: cfg.cache.refresh_interval,
            full_refresh_interval: cfg.cache.full_refresh_interval,
            bind_cache: BindCache::new(cfg.cache.bind_cache_ttl, 1_000_000),
            throttle: Throttle::new(cfg.bind_throttle.clone()),
            login_lookups: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(5))
                .build(),
            services: cfg.ldap.service_accounts.clone(),
        })
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    pub fn capabilities(&self) -> Capabilities {
        self.backend.capabilities()
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
            users: snap.as_ref().map_or(0, |s| s.users().len()),
            groups: snap.as_ref().map_or(0, |s| s.groups().len()),
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

    /// Loads everything from the backend. A failure leaves the current snapshot in place.
    pub async fn refresh_full(&self) -> Result<(), DirectoryError> {
        let started_unix = unix_now();
        self.begin_fetch();
        let fetched = tokio::try_join!(self.backend.list_users(), self.backend.list_groups());
        let (users, groups) = match fetched {
            Ok(v) => v,
            Err(e) => {
                self.end_fetch();
                self.note_error(Some(e.to_string()));
                tracing::warn!(error = %e, "full refresh failed; keeping the current snapshot");
                metrics::counter!("idgate_refresh_total", "kind" => "full", "result" => "error").increment(1);
                return Err(e.into());
            }
        };
        let users = users.into_iter().map(Arc::new).collect();
        let groups = groups.into_iter().map(Arc::new).collect();
        self.install_fetched(users, groups, started_unix).await;
        metrics::counter!("idgate_refresh_total", "kind" => "full", "result" => "ok").increment(1);
        Ok(())
    }

    /// Fetches users changed since the last refresh and every group; falls back to a full refresh
    /// when the backend cannot filter by modification time or nothing was loaded yet.
    pub async fn refresh_incremental(&self) -> Result<(), DirectoryError> {
        let Some(current) = self.snapshot.load_full() else { return self.refresh_full().await };
        if !self.capabilities().incremental_sync {
            return self.refresh_full().await;
        }
        let started_unix = unix_now();
        let since = self.last_refresh_unix.load(Ordering::Relaxed).saturating_sub(INCREMENTAL_OVERLAP_SECS);
        self.begin_fetch();
        let fetched = tokio::try_join!(self.backend.list_users_changed_since(since as i64), self.backend.list_groups());
        let (changed, groups) = match fetched {
            Ok(v) => v,
            Err(BackendError::Unsupported { .. }) => {
                self.end_fetch();
                return self.refresh_full().await;
            }
            Err(e) => {
                self.end_fetch();
                self.note_error(Some(e.to_string()));
                tracing::warn!(error = %e, "incremental refresh failed; keeping the current snapshot");
                metrics::counter!("idgate_refresh_total", "kind" => "incremental", "result" => "error").increment(1);
                return Err(e.into());
            }
        };
        let mut users: std::collections::HashMap<String, Arc<User>> =
            current.users().iter().map(|u| (u.id.clone(), u.clone())).collect();
        for u in changed {
            users.insert(u.id.clone(), Arc::new(u));
        }
        let groups = groups.into_iter().map(Arc::new).collect();
        self.install_fetched(users.into_values().collect(), groups, started_unix).await;
        metrics::counter!("idgate_refresh_total", "kind" => "incremental", "result" => "ok").increment(1);
        Ok(())
    }

    fn begin_fetch(&self) {
        let mut since = self.refreshing_since.lock().unwrap_or_else(|e| e.into_inner());
        if since.is_none() {
            *since = Some(Instant::now());
            self.write_log.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
    }

    fn end_fetch(&self) {
        *self.refreshing_since.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.write_log.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    async fn install_fetched(&self, users: Vec<Arc<User>>, groups: Vec<Arc<Group>>, started_unix: u64) {
        let _guard = self.install.lock().await;
        // Writes acknowledged while we were fetching may be missing from what we fetched.
        let log: Vec<WriteOp> = std::mem::take(&mut *self.write_log.lock().unwrap_or_else(|e| e.into_inner()));
        *self.refreshing_since.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let (users, groups) = replay(users, groups, &log);
        let unchanged = self.snapshot.load_full().is_some_and(|cur| same_content(&cur, &users, &groups));
        let snap = if unchanged {
            // Keep the generation (derived views stay valid) but record the confirmation time.
            let cur = self.snapshot.load_full().expect("checked above");
            Snapshot::build(cur.generation, users, groups)
        } else {
            Snapshot::build(self.next_generation(), users, groups)
        };
        tracing::debug!(
            generation = snap.generation,
            users = snap.users().len(),
            groups = snap.groups().len(),
            "snapshot installed"
        );
        metrics::gauge!("idgate_cache_users").set(snap.users().len() as f64);
        metrics::gauge!("idgate_cache_groups").set(snap.groups().len() as f64);
        self.snapshot.store(Some(Arc::new(snap)));
        self.last_refresh_unix.store(started_unix, Ordering::Relaxed);
        self.note_error(None);
    }

    /// Applies a write the backend acknowledged, so the next read shows it (read-your-writes).
    async fn apply(&self, op: WriteOp) {
        let _guard = self.install.lock().await;
        if self.refreshing_since.lock().unwrap_or_else(|e| e.into_inner()).is_some() {
            self.write_log.lock().unwrap_or_else(|e| e.into_inner()).push(op.clone());
        }
        let Some(cur) = self.snapshot.load_full() else { return };
        let (users, groups) = replay(cur.users().to_vec(), cur.groups().to_vec(), std::slice::from_ref(&op));
        let mut snap = Snapshot::build(self.next_generation(), users, groups);
        // A write does not make the rest of the data fresher.
        snap.built_at = cur.built_at;
        self.snapshot.store(Some(Arc::new(snap)));
    }

    pub async fn put_user(&self, user: User) {
        self.login_lookups.invalidate_all();
        self.apply(WriteOp::PutUser(Arc::new(user))).await
    }
    pub async fn forget_user(&self, id: &str) {
        self.bind_cache.evict(id);
        self.login_lookups.invalidate_all();
        self.apply(WriteOp::DeleteUser(id.to_string())).await
    }
    pub async fn put_group(&self, group: Group) {
        self.apply(WriteOp::PutGroup(Arc::new(group))).await
    }
    pub async fn forget_group(&self, id: &str) {
        self.apply(WriteOp::DeleteGroup(id.to_string())).await
    }

    /// Runs the refresh schedule until `shutdown` flips: incremental every `refresh_interval`,
    /// full every `full_refresh_interval`, faster retries while nothing is loaded.
    pub fn spawn_refresher(self: &Arc<Self>, mut shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        let dir = self.clone();
        tokio::spawn(async move {
            let mut last_full = Instant::now();
            loop {
                let wait = if dir.snapshot.load().is_none() {
                    dir.refresh_interval.min(Duration::from_secs(5))
                } else {
                    dir.refresh_interval
                };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => return,
                }
                let res = if last_full.elapsed() >= dir.full_refresh_interval || dir.snapshot.load().is_none() {
                    let r = dir.refresh_full().await;
                    if r.is_ok() {
                        last_full = Instant::now();
                    }
                    r
                } else {
                    dir.refresh_incremental().await
                };
                if let Err(e) = res {
                    tracing::debug!(error = %e, "scheduled refresh failed");
                }
            }
        })
    }

    /// A configured service account by name (case-insensitive).
    pub fn service_account(&self, name: &str) -> Option<&ServiceAccount> {
        self.services.iter().find(|s| s.name.eq_ignore_ascii_case(name))
    }

    /// Checks a service account's password (constant-time), with throttling.
    pub fn authenticate_service(&self, name: &str, password: &str, peer: IpAddr) -> AuthOutcome {
        let key = format!("service:{name}");
        if let Err(b) = self.throttle.check(&key, peer) {
            return AuthOutcome::Throttled(b.0);
        }
        match self.service_account(name) {
            Some(sa) if bool::from(sa.password.expose().as_bytes().ct_eq(password.as_bytes())) => {
                self.throttle.record_success(&key);
                AuthOutcome::Service { name: sa.name.clone(), access: sa.access }
            }
            _ => {
                self.throttle.record_failure(&key, peer);
                AuthOutcome::Invalid
            }
        }
    }

    /// Finds a user by login: the snapshot first, then (coalesced) the backend, for accounts
    /// created since the last refresh.
    pub async fn find_user(&self, login: &str) -> Result<Option<Arc<User>>, DirectoryError> {
        let snap = self.snapshot()?;
        if let Some(u) = snap.user_by_login(login) {
            return Ok(Some(u.clone()));
        }
        let backend = self.backend.clone();
        let key = login.to_lowercase();
        let owned = login.to_string();
        let found = self
            .login_lookups
            .try_get_with(key, async move { backend.find_user_by_login(&owned).await.map(|o| o.map(Arc::new)) })
            .await
            .map_err(|e: Arc<BackendError>| DirectoryError::Backend((*e).clone()))?;
        if let Some(u) = &found {
            self.apply(WriteOp::PutUser(u.clone())).await;
        }
        Ok(found)
    }

    /// Checks a user's password: bind cache first, then the backend. A backend failure is an
    /// `Err` (the caller answers "unavailable"), never `Invalid`.
    pub async fn authenticate_user(
        &self,
        login: &str,
        password: &str,
        peer: IpAddr,
    ) -> Result<AuthOutcome, DirectoryError> {
        let key = format!("user:{}", login.to_lowercase());
        if let Err(b) = self.throttle.check(&key, peer) {
            metrics::counter!("idgate_binds_total", "kind" => "user", "result" => "throttled").increment(1);
            return Ok(AuthOutcome::Throttled(b.0));
        }
        let user = match self.find_user(login).await? {
            Some(u) if u.active => u,
            _ => {
                self.throttle.record_failure(&key, peer);
                metrics::counter!("idgate_binds_total", "kind" => "user", "result" => "invalid").increment(1);
                return Ok(AuthOutcome::Invalid);
            }
        };
        if self.bind_cache.matches(&user.id, password) {
            self.throttle.record_success(&key);
            metrics::counter!("idgate_binds_total", "kind" => "user", "result" => "cached").increment(1);
            return Ok(AuthOutcome::User(user));
        }
        match self.backend.check_password(&user, password).await {
            Ok(true) => {
                self.bind_cache.insert(&user.id, password);
                self.throttle.record_success(&key);
                metrics::counter!("idgate_binds_total", "kind" => "user", "result" => "ok").increment(1);
                Ok(AuthOutcome::User(user))
            }
            Ok(false) => {
                self.throttle.record_failure(&key, peer);
                metrics::counter!("idgate_binds_total", "kind" => "user", "result" => "invalid").increment(1);
                Ok(AuthOutcome::Invalid)
            }
            Err(e) => {
                metrics::counter!("idgate_binds_total", "kind" => "user", "result" => "unavailable").increment(1);
                Err(e.into())
            }
        }
    }

    /// Forgets a user's cached password (after a password change).
    pub fn evict_bind_cache(&self, user_id: &str) {
        self.bind_cache.evict(user_id);
    }
}

fn replay(users: Vec<Arc<User>>, groups: Vec<Arc<Group>>, log: &[WriteOp]) -> (Vec<Arc<User>>, Vec<Arc<Group>>) {
    if log.is_empty() {
        return (users, groups);
    }
    let mut users = users;
    let mut groups = groups;
    for op in log {
        match op {
            WriteOp::PutUser(u) => {
                users.retain(|x| x.id != u.id);
                users.push(u.clone());
            }
            WriteOp::DeleteUser(id) => {
                users.retain(|x| &x.id != id);
                for g in groups.iter_mut() {
                    if g.members.iter().any(|m| m == id) {
                        let mut ng = (**g).clone();
                        ng.members.retain(|m| m != id);
                        *g = Arc::new(ng);
                    }
                }
            }
            WriteOp::PutGroup(g) => {
                groups.retain(|x| x.id != g.id);
                groups.push(g.clone());
            }
            WriteOp::DeleteGroup(id) => groups.retain(|x| &x.id != id),
        }
    }
    (users, groups)
}

fn same_content(cur: &Snapshot, users: &[Arc<User>], groups: &[Arc<Group>]) -> bool {
    if cur.users().len() != users.len() || cur.groups().len() != groups.len() {
        return false;
    }
    users.iter().all(|u| cur.user_by_id(&u.id).is_some_and(|c| **c == **u))
        && groups.iter().all(|g| cur.group_index(&g.id).is_some_and(|i| **cur.group(i) == **g))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::{MemoryBackend, Seed};

    fn dir(seed: &str, tweak: impl FnOnce(&mut Config)) -> (Arc<Directory>, Arc<MemoryBackend>) {
        let mut cfg = Config::parse("[backend]\nkind=\"memory\"\n").unwrap();
        cfg.ldap.service_accounts.push(ServiceAccount {
            name: "reader".into(),
            password: crate::config::Secret::new("pw"),
            access: Rights::all(crate::config::Access::Read),
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
        assert_eq!(d.snapshot().unwrap().users().len(), 2);
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
    async fn password_checks_use_the_cache_and_throttle() {
        let (d, _) = dir(SEED, |c| c.bind_throttle.max_failures_per_account = 2);
        d.refresh_full().await.unwrap();
        assert!(matches!(d.authenticate_user("alice", "pw-a", IP).await.unwrap(), AuthOutcome::User(_)));
        assert_eq!(d.bind_cache.len(), 1);
        assert!(matches!(d.authenticate_user("ALICE", "pw-a", IP).await.unwrap(), AuthOutcome::User(_)));
        assert!(matches!(d.authenticate_user("alice", "bad", IP).await.unwrap(), AuthOutcome::Invalid));
        assert!(matches!(d.authenticate_user("alice", "bad", IP).await.unwrap(), AuthOutcome::Invalid));
        assert!(matches!(d.authenticate_user("alice", "pw-a", IP).await.unwrap(), AuthOutcome::Throttled(_)));
        // unknown accounts are throttled exactly like known ones
        assert!(matches!(d.authenticate_user("ghost", "x", IP).await.unwrap(), AuthOutcome::Invalid));
        assert!(matches!(d.authenticate_user("ghost", "x", IP).await.unwrap(), AuthOutcome::Invalid));
        assert!(matches!(d.authenticate_user("ghost", "x", IP).await.unwrap(), AuthOutcome::Throttled(_)));
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
        assert!(matches!(
            d.authenticate_service("Reader", "pw", IP),
            AuthOutcome::Service { access: Rights { users: crate::config::Access::Read, .. }, .. }
        ));
        assert!(matches!(d.authenticate_service("reader", "pw2", IP), AuthOutcome::Invalid));
        assert!(matches!(d.authenticate_service("nobody", "pw", IP), AuthOutcome::Invalid));
    }

    #[tokio::test]
    async fn writes_during_a_refresh_survive_it() {
        let (d, _) = dir(SEED, |_| {});
        d.refresh_full().await.unwrap();
        d.begin_fetch();
        d.put_user(User { id: "77".into(), login: "late".into(), active: true, ..Default::default() }).await;
        // the fetched data predates the write
        let s = d.snapshot().unwrap();
        let users: Vec<_> = s.users().iter().filter(|u| u.id != "77").cloned().collect();
        d.install_fetched(users, s.groups().to_vec(), unix_now()).await;
        assert!(d.snapshot().unwrap().user_by_login("late").is_some());
    }
}
