//! Failed-bind throttling per account and per source address. Accounts are keyed by the name the
//! client sent, existing or not, so the answers reveal nothing about which accounts exist.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::ThrottleConfig;

struct Window {
    failures: u32,
    started: Instant,
}

pub struct Throttle {
    cfg: ThrottleConfig,
    accounts: Mutex<HashMap<String, Window>>,
    addresses: Mutex<HashMap<IpAddr, Window>>,
}

/// How long until the caller may try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocked(pub Duration);

impl Throttle {
    pub fn new(cfg: ThrottleConfig) -> Throttle {
        Throttle { cfg, accounts: Mutex::default(), addresses: Mutex::default() }
    }

    fn blocked_in<K: std::hash::Hash + Eq>(
        map: &Mutex<HashMap<K, Window>>,
        key: &K,
        max: u32,
        window: Duration,
    ) -> Option<Duration> {
        let map = map.lock().unwrap_or_else(|e| e.into_inner());
        let w = map.get(key)?;
        let age = w.started.elapsed();
        (max > 0 && w.failures >= max && age < window).then(|| window - age)
    }

    /// `Err` when the account or the address has used up its failures for the window.
    pub fn check(&self, account: &str, addr: IpAddr) -> Result<(), Blocked> {
        let account = account.to_lowercase();
        let w = self.cfg.forget_after;
        let a = Self::blocked_in(&self.accounts, &account, self.cfg.pair_free_failures, w);
        let b = Self::blocked_in(&self.addresses, &addr, self.cfg.address_free_failures, w);
        match a.into_iter().chain(b).max() {
            Some(d) => Err(Blocked(d)),
            None => Ok(()),
        }
    }

    fn bump<K: std::hash::Hash + Eq>(map: &Mutex<HashMap<K, Window>>, key: K, window: Duration) {
        let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 100_000 {
            map.retain(|_, w| w.started.elapsed() < window);
        }
        let w = map.entry(key).or_insert(Window { failures: 0, started: Instant::now() });
        if w.started.elapsed() >= window {
            *w = Window { failures: 0, started: Instant::now() };
        }
        w.failures += 1;
    }

    pub fn record_failure(&self, account: &str, addr: IpAddr) {
        Self::bump(&self.accounts, account.to_lowercase(), self.cfg.forget_after);
        Self::bump(&self.addresses, addr, self.cfg.forget_after);
    }

    /// A successful bind clears the account's failures (not the address's).
    pub fn record_success(&self, account: &str) {
        self.accounts.lock().unwrap_or_else(|e| e.into_inner()).remove(&account.to_lowercase());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(per_account: u32, per_addr: u32, window_ms: u64) -> Throttle {
        Throttle::new(ThrottleConfig {
            pair_free_failures: per_account,
            address_free_failures: per_addr,
            forget_after: Duration::from_millis(window_ms),
            ..ThrottleConfig::default()
        })
    }

    #[test]
    fn blocks_after_the_limit_and_recovers() {
        let th = t(3, 100, 100);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..3 {
            assert!(th.check("Alice", ip).is_ok());
            th.record_failure("alice", ip);
        }
        assert!(th.check("ALICE", ip).is_err());
        assert!(th.check("bob", ip).is_ok(), "other accounts unaffected");
        std::thread::sleep(Duration::from_millis(150));
        assert!(th.check("alice", ip).is_ok(), "window over");
    }

    #[test]
    fn per_address_limit_spans_accounts() {
        let th = t(100, 2, 10_000);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        th.record_failure("a", ip);
        th.record_failure("b", ip);
        assert!(th.check("c", ip).is_err());
        assert!(th.check("c", "10.0.0.2".parse().unwrap()).is_ok());
    }

    #[test]
    fn success_resets_account() {
        let th = t(2, 100, 10_000);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        th.record_failure("a", ip);
        th.record_success("a");
        th.record_failure("a", ip);
        assert!(th.check("a", ip).is_ok());
    }
}
