//! Failed-bind throttling that slows guessing down without ever locking a legitimate client out.
//!
//! Failures are counted per (name, address), per name and per address. Past each counter's free
//! failures, a failure's answer is held back for a delay that doubles with every further failure
//! (capped), and further attempts of that pair or name that arrive while one is held are refused
//! at once as "busy". A client that waits for its answers before trying again is therefore slowed,
//! never refused: the right password always works on the next attempt. The per-address counter
//! only ever delays failures, so one shared address (an application server binding for all its
//! users) is never stopped; and an address that bound a name successfully is exempt from that
//! name's and its own counters for `trusted_for`. Names are keyed as the client sent them,
//! existing or not, so the throttle's answers reveal nothing about which accounts exist.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::ThrottleConfig;

/// Counters kept per map before expired ones are pruned; past it, new counters for failures that
/// cost nothing yet are not kept (the pair and name counters of a real attack exceed it).
const MAX_ENTRIES: usize = 200_000;

#[derive(Debug, Clone, Copy)]
struct Counter {
    failures: u32,
    last: Instant,
    /// Attempts arriving before this are refused (a failure's answer is being held until then).
    busy_until: Instant,
    /// Checks under way for this key while it is past its free failures.
    in_flight: u32,
}

impl Counter {
    fn new(now: Instant) -> Counter {
        Counter { failures: 0, last: now, busy_until: now, in_flight: 0 }
    }
}

#[derive(Default)]
struct State {
    pairs: HashMap<(String, IpAddr), Counter>,
    names: HashMap<String, Counter>,
    addresses: HashMap<IpAddr, Counter>,
    trusted: HashMap<(String, IpAddr), Instant>,
}

pub struct Throttle {
    cfg: ThrottleConfig,
    state: Mutex<State>,
}

/// Refused without a check: try again after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy(pub Duration);

/// An admitted attempt. Report its outcome with [`Throttle::success`] or [`Throttle::failure`];
/// dropping it unreported (a cancelled bind) releases it without counting anything.
pub struct Attempt<'a> {
    throttle: &'a Throttle,
    name: String,
    addr: IpAddr,
    trusted: bool,
    pair_held: bool,
    name_held: bool,
}

/// `first` doubled for each failure past `free`, capped at `max`; nothing up to `free`.
fn growth(failures: u32, free: u32, first: Duration, max: Duration) -> Duration {
    if failures <= free {
        return Duration::ZERO;
    }
    let doublings = (failures - free - 1).min(30);
    first.saturating_mul(1u32 << doublings).min(max)
}

/// Prunes counters idle longer than `forget`; true when the map has room for a new one.
fn room<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Counter>, now: Instant, forget: Duration) -> bool {
    if map.len() >= MAX_ENTRIES {
        map.retain(|_, c| c.in_flight > 0 || now.duration_since(c.last) < forget);
    }
    map.len() < MAX_ENTRIES
}

/// The counter for `key`, reset when it has been idle longer than `forget`.
fn counter<K: std::hash::Hash + Eq>(
    map: &mut HashMap<K, Counter>,
    key: K,
    now: Instant,
    forget: Duration,
) -> Option<&mut Counter> {
    if !map.contains_key(&key) && !room(map, now, forget) {
        return None;
    }
    let c = map.entry(key).or_insert_with(|| Counter::new(now));
    if c.in_flight == 0 && now.duration_since(c.last) >= forget {
        *c = Counter::new(now);
    }
    Some(c)
}

impl Throttle {
    pub fn new(cfg: ThrottleConfig) -> Throttle {
        Throttle { cfg, state: Mutex::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_trusted(&self, st: &State, key: &(String, IpAddr), now: Instant) -> bool {
        st.trusted.get(key).is_some_and(|t| now.duration_since(*t) < self.cfg.trusted_for)
    }

    /// Admits an attempt for `name` (a key naming the account kind and name) from `addr`, or
    /// refuses it while a slowed-down failure of the same pair (or, from an address the name is not
    /// trusted from, of the same name) is being answered.
    pub fn admit(&self, name: &str, addr: IpAddr) -> Result<Attempt<'_>, Busy> {
        let name = name.to_lowercase();
        let now = Instant::now();
        let forget = self.cfg.forget_after;
        let mut st = self.lock();
        let pair_key = (name.clone(), addr);
        let trusted = self.is_trusted(&st, &pair_key, now);
        let mut wait = Duration::ZERO;
        let mut pair_held = false;
        let mut name_held = false;
        if let Some(c) = st.pairs.get_mut(&pair_key) {
            if now.duration_since(c.last) >= forget && c.in_flight == 0 {
                *c = Counter::new(now);
            }
            wait = wait.max(c.busy_until.saturating_duration_since(now));
            if c.failures >= self.cfg.pair_free_failures {
                // Past its free failures, a pair is checked one attempt at a time.
                if c.in_flight > 0 {
                    wait = wait.max(self.cfg.first_delay);
                }
                pair_held = true;
            }
        }
        if !trusted && let Some(c) = st.names.get_mut(&name) {
            if now.duration_since(c.last) >= forget && c.in_flight == 0 {
                *c = Counter::new(now);
            }
            wait = wait.max(c.busy_until.saturating_duration_since(now));
            if c.failures >= self.cfg.name_free_failures {
                if c.in_flight > 0 {
                    wait = wait.max(self.cfg.first_delay);
                }
                name_held = true;
            }
        }
        if !wait.is_zero() {
            return Err(Busy(wait));
        }
        if pair_held && let Some(c) = st.pairs.get_mut(&pair_key) {
            c.in_flight += 1;
        }
        if name_held && let Some(c) = st.names.get_mut(&name) {
            c.in_flight += 1;
        }
        drop(st);
        Ok(Attempt { throttle: self, name, addr, trusted, pair_held, name_held })
    }

    fn release(&self, st: &mut State, a: &Attempt<'_>) {
        if a.pair_held
            && let Some(c) = st.pairs.get_mut(&(a.name.clone(), a.addr))
        {
            c.in_flight = c.in_flight.saturating_sub(1);
        }
        if a.name_held
            && let Some(c) = st.names.get_mut(&a.name)
        {
            c.in_flight = c.in_flight.saturating_sub(1);
        }
    }

    /// A correct password: the pair is forgotten, the address trusted for the name and relieved.
    pub fn success(&self, mut a: Attempt<'_>) {
        let now = Instant::now();
        let mut st = self.lock();
        self.release(&mut st, &a);
        (a.pair_held, a.name_held) = (false, false);
        let key = (a.name.clone(), a.addr);
        st.pairs.remove(&key);
        if st.trusted.len() >= MAX_ENTRIES {
            let keep = self.cfg.trusted_for;
            st.trusted.retain(|_, t| now.duration_since(*t) < keep);
        }
        if st.trusted.len() < MAX_ENTRIES || st.trusted.contains_key(&key) {
            st.trusted.insert(key, now);
        }
        if let Some(c) = st.addresses.get_mut(&a.addr) {
            c.failures /= 2;
        }
    }

    /// A failed check. Returns how long to hold the answer back. `count_name` is false for
    /// attempts that can never succeed from this address (a service account bound from outside
    /// its networks), so that they cannot slow the account down for anyone else.
    pub fn failure(&self, mut a: Attempt<'_>, count_name: bool) -> Duration {
        let now = Instant::now();
        let cfg = &self.cfg;
        let forget = cfg.forget_after;
        let mut st = self.lock();
        self.release(&mut st, &a);
        (a.pair_held, a.name_held) = (false, false);
        let mut delay = Duration::ZERO;
        let mut name_delay = Duration::ZERO;
        if count_name && !a.trusted {
            if let Some(c) = counter(&mut st.names, a.name.clone(), now, forget) {
                c.failures = c.failures.saturating_add(1);
                c.last = now;
                name_delay = growth(c.failures, cfg.name_free_failures, cfg.first_delay, cfg.max_delay);
                c.busy_until = c.busy_until.max(now + name_delay);
            }
            delay = delay.max(name_delay);
        }
        if !a.trusted
            && let Some(c) = counter(&mut st.addresses, a.addr, now, forget)
        {
            c.failures = c.failures.saturating_add(1);
            c.last = now;
            delay = delay.max(growth(c.failures, cfg.address_free_failures, cfg.first_delay, cfg.max_address_delay));
        }
        if count_name && let Some(c) = counter(&mut st.pairs, (a.name.clone(), a.addr), now, forget) {
            c.failures = c.failures.saturating_add(1);
            c.last = now;
            delay = delay.max(growth(c.failures, cfg.pair_free_failures, cfg.first_delay, cfg.max_delay));
            c.busy_until = c.busy_until.max(now + delay);
        }
        delay
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if self.pair_held || self.name_held {
            let throttle = self.throttle;
            let mut st = throttle.lock();
            throttle.release(&mut st, self);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn throttle(tweak: impl FnOnce(&mut ThrottleConfig)) -> Throttle {
        let mut cfg = ThrottleConfig {
            first_delay: 40 * MS,
            max_delay: 160 * MS,
            max_address_delay: 80 * MS,
            ..Default::default()
        };
        tweak(&mut cfg);
        Throttle::new(cfg)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn fail(t: &Throttle, name: &str, addr: IpAddr) -> Duration {
        let a = t.admit(name, addr).expect("admitted");
        t.failure(a, true)
    }

    #[test]
    fn delays_grow_past_the_free_failures_and_are_capped() {
        let t = throttle(|c| c.pair_free_failures = 2);
        let a = ip("10.0.0.1");
        assert_eq!(fail(&t, "alice", a), Duration::ZERO);
        assert_eq!(fail(&t, "Alice", a), Duration::ZERO);
        assert_eq!(fail(&t, "alice", a), 40 * MS);
        // While that answer is held back, the pair is busy; afterwards it may try again.
        assert!(t.admit("alice", a).is_err());
        std::thread::sleep(45 * MS);
        assert_eq!(fail(&t, "alice", a), 80 * MS);
        std::thread::sleep(85 * MS);
        assert_eq!(fail(&t, "alice", a), 160 * MS);
        std::thread::sleep(165 * MS);
        assert_eq!(fail(&t, "alice", a), 160 * MS, "capped at max_delay");
        assert!(t.admit("bob", a).is_ok(), "other names from the address are not refused");
        assert!(t.admit("alice", ip("10.0.0.2")).is_ok(), "nor the name from other addresses");
    }

    #[test]
    fn a_correct_password_after_waiting_always_works_and_resets_the_pair() {
        let t = throttle(|c| c.pair_free_failures = 1);
        let a = ip("10.0.0.1");
        for _ in 0..4 {
            let d = fail(&t, "svc", a);
            std::thread::sleep(d + MS);
        }
        let attempt = t.admit("svc", a).expect("a client that waited is admitted");
        t.success(attempt);
        assert_eq!(fail(&t, "svc", a), Duration::ZERO, "the pair starts over");
    }

    #[test]
    fn past_the_free_failures_a_pair_is_checked_one_attempt_at_a_time() {
        let t = throttle(|c| c.pair_free_failures = 1);
        let a = ip("10.0.0.1");
        assert!(t.admit("x", a).is_ok() && t.admit("x", a).is_ok(), "concurrent while free");
        fail(&t, "x", a);
        let first = t.admit("x", a).expect("one attempt");
        assert!(t.admit("x", a).is_err(), "a second concurrent attempt is busy");
        drop(first);
        assert!(t.admit("x", a).is_ok(), "a dropped attempt releases its turn");
    }

    #[test]
    fn the_address_counter_delays_failures_but_never_refuses() {
        let t = throttle(|c| c.address_free_failures = 3);
        let a = ip("10.0.0.9");
        let delays: Vec<_> = (0..8).map(|i| fail(&t, &format!("user{i}"), a)).collect();
        assert_eq!(&delays[..3], &[Duration::ZERO; 3]);
        assert_eq!(delays[3], 40 * MS);
        assert_eq!(delays[7], 80 * MS, "capped at max_address_delay");
        assert!(t.admit("someone-new", a).is_ok());
        assert!(t.admit("user0", a).is_ok());
    }

    #[test]
    fn a_name_attacked_from_many_addresses_stays_usable_from_trusted_ones() {
        let t = throttle(|c| c.name_free_failures = 3);
        let home = ip("10.1.1.1");
        let ok = t.admit("carol", home).unwrap();
        t.success(ok);
        for i in 0..3 {
            fail(&t, "carol", ip(&format!("192.0.2.{i}")));
        }
        assert_eq!(fail(&t, "carol", ip("192.0.2.50")), 40 * MS);
        assert!(t.admit("carol", ip("192.0.2.51")).is_err(), "untrusted addresses wait");
        assert!(t.admit("carol", home).is_ok(), "the address carol binds from is not refused");
        let a = t.admit("carol", home).unwrap();
        assert_eq!(t.failure(a, true), Duration::ZERO, "nor slowed by the name's counter");
    }

    #[test]
    fn uncounted_failures_never_slow_the_name() {
        let t = throttle(|c| c.pair_free_failures = 1);
        let outside = ip("203.0.113.7");
        for _ in 0..10 {
            let a = t.admit("reader", outside).unwrap();
            t.failure(a, false);
        }
        assert!(t.admit("reader", outside).is_ok());
        assert!(t.admit("reader", ip("127.0.0.1")).is_ok());
        let a = t.admit("reader", ip("127.0.0.1")).unwrap();
        assert_eq!(t.failure(a, true), Duration::ZERO);
    }

    #[test]
    fn counters_are_forgotten_after_a_quiet_period() {
        let t = throttle(|c| {
            c.pair_free_failures = 1;
            c.forget_after = 60 * MS;
        });
        let a = ip("10.0.0.1");
        fail(&t, "x", a);
        assert_eq!(fail(&t, "x", a), 40 * MS);
        std::thread::sleep(120 * MS);
        assert_eq!(fail(&t, "x", a), Duration::ZERO);
    }

    #[test]
    fn success_relieves_the_address() {
        let t = throttle(|c| c.address_free_failures = 4);
        let a = ip("10.0.0.3");
        for i in 0..6 {
            fail(&t, &format!("u{i}"), a);
        }
        let ok = t.admit("good", a).unwrap();
        t.success(ok);
        // 6 failures halved to 3: the next one is the 4th, still free.
        assert_eq!(fail(&t, "u9", a), Duration::ZERO);
    }
}
