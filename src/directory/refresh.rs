//! Keeping the snapshot fresh: full and incremental refreshes from the backend, merged with the
//! writes acknowledged while they fetched. Times only move forward: an entry whose content a
//! refresh finds changed is stamped no older than the moment the change was seen, so clients that
//! sync by `modifyTimestamp` (SSSD) never miss it; an unchanged entry keeps its time.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{Directory, DirectoryError, Snapshot, apply_delta, unix_now};
use crate::backend::BackendError;
use crate::model::{Group, User};

/// Overlap for incremental fetches, covering clock skew and same-second changes.
const INCREMENTAL_OVERLAP_SECS: u64 = 120;

/// What a fetch brought.
pub(super) enum Fetched {
    /// Everything.
    Full(Vec<User>, Vec<Group>),
    /// Users changed since the last refresh, and every group.
    Incremental(Vec<User>, Vec<Group>),
}

impl Directory {
    /// Loads everything from the backend. A failure leaves the current snapshot in place.
    pub async fn refresh_full(&self) -> Result<(), DirectoryError> {
        let _one = self.refreshing.lock().await;
        self.refresh_full_locked().await
    }

    async fn refresh_full_locked(&self) -> Result<(), DirectoryError> {
        let started_unix = unix_now();
        self.begin_fetch();
        match tokio::try_join!(self.backend.list_users(), self.backend.list_groups()) {
            Ok((users, groups)) => {
                self.install_fetched(Fetched::Full(users, groups), started_unix);
                metrics::counter!("idgate_refresh_total", "kind" => "full", "result" => "ok").increment(1);
                Ok(())
            }
            Err(e) => Err(self.fetch_failed("full", e)),
        }
    }

    fn fetch_failed(&self, kind: &'static str, e: BackendError) -> DirectoryError {
        self.end_fetch();
        self.note_error(Some(e.to_string()));
        tracing::warn!(error = %e, "{kind} refresh failed; keeping the current snapshot");
        metrics::counter!("idgate_refresh_total", "kind" => kind, "result" => "error").increment(1);
        e.into()
    }

    /// Fetches users changed since the last refresh and every group; falls back to a full refresh
    /// when the backend cannot filter by modification time or nothing was loaded yet.
    pub async fn refresh_incremental(&self) -> Result<(), DirectoryError> {
        let _one = self.refreshing.lock().await;
        if self.snapshot.load().is_none() || !self.capabilities().incremental_sync {
            return self.refresh_full_locked().await;
        }
        let started_unix = unix_now();
        let since = self.last_refresh_unix.load(Ordering::Relaxed).saturating_sub(INCREMENTAL_OVERLAP_SECS);
        self.begin_fetch();
        let fetched = tokio::try_join!(self.backend.list_users_changed_since(since as i64), self.backend.list_groups());
        match fetched {
            Ok((changed, groups)) => {
                self.install_fetched(Fetched::Incremental(changed, groups), started_unix);
                metrics::counter!("idgate_refresh_total", "kind" => "incremental", "result" => "ok").increment(1);
                Ok(())
            }
            Err(BackendError::Unsupported { .. }) => {
                self.end_fetch();
                self.refresh_full_locked().await
            }
            Err(e) => Err(self.fetch_failed("incremental", e)),
        }
    }

    pub(super) fn begin_fetch(&self) {
        *self.write_log.lock().unwrap_or_else(|e| e.into_inner()) = Some(Vec::new());
    }

    fn end_fetch(&self) {
        *self.write_log.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    pub(super) fn install_fetched(&self, fetched: Fetched, started_unix: u64) {
        let _guard = self.install.lock().unwrap_or_else(|e| e.into_inner());
        // Writes acknowledged while we were fetching may be missing from what we fetched.
        let log = self.write_log.lock().unwrap_or_else(|e| e.into_inner()).take().unwrap_or_default();
        let cur = self.snapshot.load_full();
        // What an incremental fetch may have changed; `None` after a full one (compare everything).
        let mut touched: Option<Touched> = None;
        let mut next = match (fetched, &cur) {
            (Fetched::Incremental(changed, groups), Some(cur)) => {
                let mut next = (**cur).clone();
                let mut t = Touched::default();
                for u in changed {
                    t.users.insert(u.id.clone());
                    if self.hides(&u) {
                        next.remove_user(&u.id);
                    } else {
                        next.put_user(Arc::new(u));
                    }
                }
                let listed: BTreeSet<String> = groups.iter().map(|g| g.id.clone()).collect();
                let gone: Vec<usize> =
                    next.groups().filter(|(_, g)| !listed.contains(&g.id)).map(|(gi, _)| gi).collect();
                for gi in gone {
                    t.users.extend(next.members_of(gi).into_iter().map(|ui| next.user(ui).id.clone()));
                    let id = next.group(gi).id.clone();
                    next.remove_group(&id);
                    t.gone_groups = true;
                }
                for (id, change) in next.put_groups(groups.into_iter().map(Arc::new).collect()) {
                    if !change.users.is_empty() || change.nesting {
                        t.users.extend(change.users.into_iter().map(|ui| next.user(ui).id.clone()));
                        t.groups.insert(id);
                    }
                }
                touched = Some(t);
                next
            }
            (Fetched::Full(users, groups) | Fetched::Incremental(users, groups), _) => Snapshot::build(
                &self.scope,
                0,
                users.into_iter().filter(|u| !self.hides(u)).map(Arc::new).collect(),
                groups.into_iter().map(Arc::new).collect(),
            ),
        };
        for d in &log {
            apply_delta(&mut next, d);
        }
        let changed = match &cur {
            Some(cur) => self.carry_times(cur, &mut next, unix_now() as i64, touched.as_ref()),
            None => true,
        };
        next.generation = match (&cur, changed) {
            // Same content: derived views stay valid.
            (Some(cur), false) => cur.generation,
            _ => self.next_generation(),
        };
        next.built_at = Instant::now();
        tracing::debug!(
            generation = next.generation,
            users = next.user_count(),
            groups = next.group_count(),
            "snapshot installed"
        );
        metrics::gauge!("idgate_cache_users").set(next.user_count() as f64);
        metrics::gauge!("idgate_cache_groups").set(next.group_count() as f64);
        self.snapshot.store(Some(Arc::new(next)));
        self.last_refresh_unix.store(started_unix, Ordering::Relaxed);
        self.note_error(None);
    }

    /// Compares `next` with `cur`: unchanged entries keep their (possibly newer) time, changed and
    /// new ones are stamped no older than `now`, and the state of users gone is forgotten. After an
    /// incremental fetch only what it `touched` is compared; the other users are the very same
    /// entries as in `cur`. True when anything changed.
    fn carry_times(&self, cur: &Snapshot, next: &mut Snapshot, now: i64, touched: Option<&Touched>) -> bool {
        let mut changed = cur.user_count() != next.user_count() || cur.group_count() != next.group_count();
        changed |= touched.is_some_and(|t| t.gone_groups);
        let group_ids = |s: &Snapshot, ui: usize| -> Vec<String> {
            s.groups_of(ui).into_iter().map(|g| s.group(g).id.clone()).collect()
        };
        let member_ids = |s: &Snapshot, gi: usize| -> (Vec<String>, Vec<String>) {
            let mut v = s.member_ids(gi);
            v.sort_unstable();
            let mut c = s.member_group_ids(gi);
            c.sort_unstable();
            (v, c)
        };
        let mut users = Vec::new();
        let candidates: Vec<usize> = match touched {
            Some(t) => t.users.iter().filter_map(|id| next.user_index(id)).collect(),
            None => next.users().map(|(ui, _)| ui).collect(),
        };
        for ui in candidates {
            let u = next.user(ui);
            let same = cur.user_index(&u.id).map(|ci| {
                let old = cur.user(ci);
                let same = (Arc::ptr_eq(old, u) || same_user(old, u)) && group_ids(cur, ci) == group_ids(next, ui);
                (same, old.modified)
            });
            let time = match same {
                Some((true, old)) => old.max(u.modified),
                _ => u.modified.max(Some(now)),
            };
            changed |= !matches!(same, Some((true, _)));
            if time != u.modified {
                users.push(Arc::new(User { modified: time, ..(**u).clone() }));
            }
        }
        let mut groups = Vec::new();
        for (gi, g) in next.groups() {
            let same = cur.group_index(&g.id).map(|ci| {
                let old = cur.group(ci);
                let members_same = match touched {
                    Some(t) => !t.groups.contains(&g.id),
                    None => member_ids(cur, ci) == member_ids(next, gi),
                };
                let same = (Arc::ptr_eq(old, g) || same_group(old, g)) && members_same;
                (same, old.modified)
            });
            let time = match same {
                Some((true, old)) => old.max(g.modified),
                _ => g.modified.max(Some(now)),
            };
            changed |= !matches!(same, Some((true, _)));
            if time != g.modified {
                groups.push(Arc::new(Group { modified: time, ..(**g).clone() }));
            }
        }
        for u in users {
            next.put_user(u);
        }
        for g in groups {
            next.put_group_fields(g);
        }
        // Only a full fetch notices deleted users.
        let gone: Vec<String> = match touched {
            Some(_) => Vec::new(),
            None => cur.users().filter(|(_, u)| next.user_index(&u.id).is_none()).map(|(_, u)| u.id.clone()).collect(),
        };
        for id in gone {
            changed = true;
            self.forget_state(&id, false);
        }
        changed
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
}

/// Entries an incremental fetch may have changed.
#[derive(Default)]
struct Touched {
    /// Users fetched as changed, or whose group memberships changed.
    users: BTreeSet<String>,
    /// Groups whose member list changed.
    groups: BTreeSet<String>,
    gone_groups: bool,
}

/// Equal but for the modification time.
fn same_user(a: &User, b: &User) -> bool {
    User { modified: None, ..a.clone() } == User { modified: None, ..b.clone() }
}

fn same_group(a: &Group, b: &Group) -> bool {
    a.name == b.name && a.description == b.description && a.created == b.created
}
