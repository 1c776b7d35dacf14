//! Password checks: service accounts (constant time), users (bind cache first, then the backend),
//! with throttling of failures per name and per address.

use std::net::IpAddr;
use std::sync::Arc;

use subtle::ConstantTimeEq;

use super::{AuthOutcome, Delta, Directory, DirectoryError};
use crate::backend::BackendError;
use crate::config::ServiceAccount;
use crate::model::User;

impl Directory {
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
            .map_err(|e: Arc<BackendError>| DirectoryError::from((*e).clone()))?;
        if let Some(u) = &found {
            self.apply(vec![Delta::PutUser(u.clone())]);
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
}
