//! Remembers successful password checks as keyed hashes, so repeated binds do not reach the backend
//! and a cache dump reveals no password. Only successes are cached: a failure always asks again.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

pub struct BindCache {
    key: [u8; 32],
    entries: moka::sync::Cache<String, [u8; 32]>,
}

impl BindCache {
    pub fn new(ttl: Duration, capacity: u64) -> BindCache {
        BindCache {
            key: rand::random(),
            entries: moka::sync::Cache::builder().max_capacity(capacity).time_to_live(ttl).build(),
        }
    }

    fn digest(&self, user_id: &str, password: &str) -> [u8; 32] {
        // The key length is fixed, so this cannot fail.
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.key).expect("HMAC accepts any key length");
        mac.update(user_id.as_bytes());
        mac.update(&[0]);
        mac.update(password.as_bytes());
        mac.finalize().into_bytes().into()
    }

    pub fn insert(&self, user_id: &str, password: &str) {
        if !self.entries.policy().time_to_live().is_some_and(|t| t.is_zero()) {
            self.entries.insert(user_id.to_string(), self.digest(user_id, password));
        }
    }

    /// True when this exact password was confirmed for this user within the TTL.
    pub fn matches(&self, user_id: &str, password: &str) -> bool {
        match self.entries.get(user_id) {
            Some(stored) => bool::from(stored.ct_eq(&self.digest(user_id, password))),
            None => false,
        }
    }

    pub fn evict(&self, user_id: &str) {
        self.entries.invalidate(user_id);
    }

    pub fn len(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.entry_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_only_the_confirmed_password() {
        let c = BindCache::new(Duration::from_secs(60), 100);
        assert!(!c.matches("1", "pw"));
        c.insert("1", "pw");
        assert!(c.matches("1", "pw"));
        assert!(!c.matches("1", "pw2"));
        assert!(!c.matches("2", "pw"));
        c.evict("1");
        assert!(!c.matches("1", "pw"));
    }

    #[test]
    fn entries_expire() {
        let c = BindCache::new(Duration::from_millis(50), 100);
        c.insert("1", "pw");
        std::thread::sleep(Duration::from_millis(120));
        assert!(!c.matches("1", "pw"));
    }

    #[test]
    fn plaintext_is_not_stored() {
        let c = BindCache::new(Duration::from_secs(60), 100);
        c.insert("1", "hunter2-secret");
        let stored = c.entries.get("1").unwrap();
        assert!(!stored.windows(6).any(|w| w == b"hunter"));
    }
}
