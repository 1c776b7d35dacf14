//! Password checks of users (bind cache first, then the backend) and service accounts (constant
//! time), behind the throttle, with every failure answered in the same time whatever its cause.
//!
//! A wrong password for an existing user costs a backend check (Dolibarr delays each failed login
//! by about a second); an unknown name, a disabled user or a service account costs nothing. So that
//! the answer time does not tell which accounts exist, every failed bind is held until the time a
//! backend check usually takes to fail (a high quantile of the recent ones) has passed.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;

use super::throttle::Attempt;
use super::{AuthOutcome, Delta, Directory, DirectoryError};
use crate::backend::BackendError;
use crate::config::ServiceAccount;
use crate::model::User;

/// Recent failed backend checks the padding is computed from.
const SAMPLES: usize = 64;
/// No failure is padded beyond this, whatever the backend did.
const MAX_PADDING: Duration = Duration::from_secs(5);
/// While the backend failed a check this recently, unknown and disabled names answer
/// "unavailable" too, so that an outage does not tell existing accounts apart.
const OUTAGE_MEMORY: Duration = Duration::from_secs(30);

/// What a bind names, as the front end resolved it.
#[derive(Debug, Clone, Copy)]
pub enum BindName<'a> {
    User(&'a str),
    Service(&'a str),
    /// A name outside the tree: it can never bind, and must not say so any faster.
    Unknown(&'a str),
}

/// How long failed backend checks took lately.
pub(super) struct FailureTimes {
    floor: Duration,
    recent: Mutex<VecDeque<Duration>>,
    backend_failed: Mutex<Option<Instant>>,
}

impl FailureTimes {
    pub(super) fn new(floor: Duration) -> FailureTimes {
        FailureTimes { floor, recent: Mutex::new(VecDeque::with_capacity(SAMPLES)), backend_failed: Mutex::new(None) }
    }

    fn record(&self, took: Duration) {
        let mut r = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if r.len() == SAMPLES {
            r.pop_front();
        }
        r.push_back(took);
    }

    /// The time every failure takes at least: the 90th percentile of recent backend failures.
    fn target(&self) -> Duration {
        let mut v: Vec<Duration> = self.recent.lock().unwrap_or_else(|e| e.into_inner()).iter().copied().collect();
        let quantile = if v.is_empty() {
            Duration::ZERO
        } else {
            v.sort_unstable();
            v[(v.len() * 9 / 10).min(v.len() - 1)]
        };
        quantile.max(self.floor).min(MAX_PADDING)
    }

    fn note_outage(&self) {
        *self.backend_failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    fn in_outage(&self) -> bool {
        self.backend_failed.lock().unwrap_or_else(|e| e.into_inner()).is_some_and(|t| t.elapsed() < OUTAGE_MEMORY)
    }
}

/// Why a check failed; only the throttle and the metrics see the difference.
enum Failure {
    Unknown,
    Disabled,
    WrongPassword,
    /// A service account bound from outside its networks: counts against the address only.
    OutsideNetworks,
}

impl Directory {
    /// A configured service account by name (case-insensitive).
    pub fn service_account(&self, name: &str) -> Option<&ServiceAccount> {
        self.services.iter().find(|s| s.name.eq_ignore_ascii_case(name))
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
            .map_err(|e: Arc<BackendError>| DirectoryError::from((*e).clone()))?;
        let found = found.filter(|u| !self.hides(u));
        if let Some(u) = &found {
            self.apply(vec![Delta::PutUser(u.clone())]);
        }
        Ok(found)
    }

    /// `find_user` for binds: a name the snapshot lacks reaches the backend only within a small
    /// rate, and a miss is remembered until the next refresh, so that binds of made-up names cannot
    /// be turned into backend calls.
    async fn find_user_for_bind(&self, login: &str) -> Result<Option<Arc<User>>, DirectoryError> {
        let snap = self.snapshot()?;
        if let Some(u) = snap.user_by_login(login) {
            return Ok(Some(u.clone()));
        }
        // A user name an identity provider gave, which the backend took under another login.
        if let Some(&ui) = self.users_named(&snap, login).first() {
            return Ok(Some(snap.user(ui).clone()));
        }
        if self.hides_login(login) {
            return Ok(None);
        }
        let key = login.to_lowercase();
        if self.login_misses.contains_key(&key) || !self.login_lookup_budget.take() {
            return Ok(None);
        }
        let found = self.find_user(login).await?;
        if found.is_none() {
            self.login_misses.insert(key, ());
        }
        Ok(found)
    }

    /// Checks a bind's password behind the throttle. Failures are all answered after the same
    /// time; a throttled attempt is answered at once without a check. A backend failure is an
    /// `Err` (the caller answers "unavailable"), never `Invalid`.
    pub async fn authenticate(
        &self,
        name: BindName<'_>,
        password: &str,
        peer: IpAddr,
    ) -> Result<AuthOutcome, DirectoryError> {
        // The padding is fixed before the check, so that a check's own time cannot move it.
        let padded_until = Instant::now() + self.failure_times.target();
        let (key, kind) = match name {
            BindName::User(login) => (format!("user:{login}"), "user"),
            BindName::Service(n) => (format!("service:{n}"), "service"),
            BindName::Unknown(n) => (format!("other:{n}"), "user"),
        };
        let attempt = match self.throttle.admit(&key, peer) {
            Ok(a) => a,
            Err(busy) => {
                metrics::counter!("idgate_binds_total", "kind" => kind, "result" => "throttled").increment(1);
                return Ok(AuthOutcome::Throttled(busy.0));
            }
        };
        let checked = match name {
            BindName::User(login) => self.check_user(login, password).await,
            BindName::Service(n) => Ok(self.check_service(n, password, peer)),
            BindName::Unknown(_) => Ok(Err(Failure::Unknown)),
        };
        let failure = match checked {
            Ok(Ok(outcome)) => {
                self.throttle.success(attempt);
                metrics::counter!("idgate_binds_total", "kind" => kind, "result" => "ok").increment(1);
                return Ok(outcome);
            }
            Ok(Err(f)) => f,
            Err(e) => {
                metrics::counter!("idgate_binds_total", "kind" => kind, "result" => "unavailable").increment(1);
                return Err(e);
            }
        };
        let reason = match failure {
            Failure::Unknown => "unknown",
            Failure::Disabled => "disabled",
            Failure::WrongPassword => "wrong_password",
            Failure::OutsideNetworks => "outside_networks",
        };
        metrics::counter!("idgate_binds_total", "kind" => kind, "result" => "invalid", "reason" => reason).increment(1);
        if matches!(failure, Failure::Unknown | Failure::Disabled) && self.failure_times.in_outage() {
            let message = "the backend cannot check passwords right now".to_string();
            return Err(DirectoryError::Unavailable { message, timeout: false });
        }
        self.answer_failure(attempt, !matches!(failure, Failure::OutsideNetworks), padded_until).await;
        Ok(AuthOutcome::Invalid)
    }

    /// Counts a failure and holds its answer until both the usual failure time and the throttle's
    /// delay have passed.
    async fn answer_failure(&self, attempt: Attempt<'_>, count_name: bool, padded: Instant) {
        let delay = self.throttle.failure(attempt, count_name);
        tokio::time::sleep_until(tokio::time::Instant::from_std(padded.max(Instant::now() + delay))).await;
    }

    /// Checks a service account's password in constant time. Outside its networks the account
    /// cannot bind at all.
    fn check_service(&self, name: &str, password: &str, peer: IpAddr) -> Result<AuthOutcome, Failure> {
        let Some(sa) = self.service_account(name) else { return Err(Failure::Unknown) };
        if !sa.networks.is_empty() && !sa.networks.iter().any(|n| n.contains(&peer)) {
            return Err(Failure::OutsideNetworks);
        }
        if bool::from(sa.password.expose().as_bytes().ct_eq(password.as_bytes())) {
            Ok(AuthOutcome::Service { name: sa.name.clone(), access: sa.access })
        } else {
            Err(Failure::WrongPassword)
        }
    }

    /// Checks a user's password: the bind cache first, then the backend.
    async fn check_user(&self, login: &str, password: &str) -> Result<Result<AuthOutcome, Failure>, DirectoryError> {
        let user = match self.find_user_for_bind(login).await? {
            Some(u) if u.active => u,
            Some(_) => return Ok(Err(Failure::Disabled)),
            None => return Ok(Err(Failure::Unknown)),
        };
        if self.bind_cache.matches(&user.id, password) {
            return Ok(Ok(AuthOutcome::User(user)));
        }
        let started = Instant::now();
        match self.backend.check_password(&user, password).await {
            Ok(true) => {
                self.bind_cache.insert(&user.id, password);
                Ok(Ok(AuthOutcome::User(user)))
            }
            Ok(false) => {
                self.failure_times.record(started.elapsed());
                Ok(Err(Failure::WrongPassword))
            }
            Err(e) => {
                self.failure_times.note_outage();
                Err(e.into())
            }
        }
    }

    /// A user's password check (binds by login, and the old password of a password change).
    pub async fn authenticate_user(
        &self,
        login: &str,
        password: &str,
        peer: IpAddr,
    ) -> Result<AuthOutcome, DirectoryError> {
        self.authenticate(BindName::User(login), password, peer).await
    }
}

/// A token bucket: `take` succeeds at most `per_second` times a second on average, `burst` at once.
pub(super) struct Budget {
    per_second: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl Budget {
    pub(super) fn new(per_second: f64, burst: f64) -> Budget {
        Budget { per_second, burst, state: Mutex::new((burst, Instant::now())) }
    }

    pub(super) fn take(&self) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        s.0 = (s.0 + now.duration_since(s.1).as_secs_f64() * self.per_second).min(self.burst);
        s.1 = now;
        if s.0 >= 1.0 {
            s.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_follows_a_high_quantile_of_recent_failures() {
        let t = FailureTimes::new(Duration::from_millis(5));
        assert_eq!(t.target(), Duration::from_millis(5), "the floor before any sample");
        for ms in 1..=100 {
            t.record(Duration::from_millis(ms));
        }
        // The last 64 samples are 37..=100 ms; their 90th percentile is 94 ms.
        assert_eq!(t.target(), Duration::from_millis(94));
        t.record(Duration::from_secs(60));
        assert!(t.target() <= MAX_PADDING);
    }

    #[test]
    fn budget_refills_at_its_rate() {
        let b = Budget::new(100.0, 2.0);
        assert!(b.take() && b.take());
        assert!(!b.take(), "burst used up");
        std::thread::sleep(Duration::from_millis(30));
        assert!(b.take(), "refilled");
    }
}
