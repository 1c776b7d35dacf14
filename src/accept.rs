//! Pieces shared by the listeners' accept loops (LDAP, LDAPS, HTTP): a warning that is written at
//! most once per interval, and the pause after an accept that failed for want of resources.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};

/// How often a listener may write the same warning; the others are counted and the count is
/// reported with the next line, so a flood costs one line per interval instead of one per event.
pub const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// Rate limit for one kind of warning. Each accept loop owns its own, so no locking is needed.
#[derive(Debug)]
pub struct RateLimitedWarn {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedWarn {
    pub fn new(interval: Duration) -> Self {
        RateLimitedWarn { interval, last: None, suppressed: 0 }
    }

    /// Records an event. `Some(n)` means "write the line now", `n` being the events left unlogged
    /// since the previous line; `None` means this one is counted and not logged.
    pub fn check(&mut self) -> Option<u64> {
        self.check_at(Instant::now())
    }

    fn check_at(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.saturating_duration_since(t) < self.interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// The end of a rate-limited line: how many were held back, and that more may be.
pub fn suppressed_note(suppressed: u64) -> String {
    let every = WARN_INTERVAL.as_secs();
    match suppressed {
        0 => format!("(such lines are written at most every {every} s)"),
        n => format!("({n} more since the previous such line; such lines are written at most every {every} s)"),
    }
}

/// A listener's accepting side: the next connection, skipping those that vanished before they were
/// accepted, and pausing (with a rate-limited warning) while accepts fail for want of resources.
pub struct Acceptor {
    listener: TcpListener,
    /// Names the listener in warnings: `LDAP`, `LDAPS`, `HTTP`.
    name: &'static str,
    failed: RateLimitedWarn,
    backoff: Backoff,
}

impl Acceptor {
    pub fn new(listener: TcpListener, name: &'static str) -> Acceptor {
        Acceptor { listener, name, failed: RateLimitedWarn::new(WARN_INTERVAL), backoff: Backoff::new() }
    }

    /// The next connection. Cancel-safe: callers race it against their shutdown signal.
    pub async fn next(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            match self.listener.accept().await {
                Ok(x) => {
                    self.backoff.reset();
                    return x;
                }
                Err(e) if is_per_connection(&e) => {}
                Err(e) => {
                    // Out of descriptors or memory: accepting again at once would fail the same way.
                    if let Some(suppressed) = self.failed.check() {
                        tracing::warn!(
                            listener = self.name,
                            error = %e,
                            "{} accept failed; pausing accepts {}",
                            self.name,
                            suppressed_note(suppressed)
                        );
                    }
                    tokio::time::sleep(self.backoff.next_pause()).await;
                }
            }
        }
    }
}

/// Errors that concern one incoming connection only (it went away before it was accepted): the
/// loop goes on at once. Anything else, such as EMFILE or ENFILE, would fail again immediately.
pub fn is_per_connection(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted)
}

/// The pause after an accept that failed for want of resources: short at first so that service
/// resumes quickly, doubling while failures go on so that a loop cannot spin on them.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_millis(500);

    pub fn new() -> Self {
        Backoff { next: Self::FIRST }
    }

    /// The pause to take now.
    pub fn next_pause(&mut self) -> Duration {
        let d = self.next;
        self.next = (d * 2).min(Self::MAX);
        d
    }

    /// After a successful accept.
    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_of_the_others() {
        let mut w = RateLimitedWarn::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(w.check_at(t0), Some(0), "the first event is logged");
        for i in 1..=99 {
            assert_eq!(w.check_at(t0 + Duration::from_millis(i * 50)), None);
        }
        assert_eq!(w.check_at(t0 + Duration::from_secs(10)), Some(99), "the next line reports the 99 held back");
        assert_eq!(w.check_at(t0 + Duration::from_secs(11)), None);
        assert_eq!(w.check_at(t0 + Duration::from_secs(30)), Some(1));
        assert_eq!(w.check_at(t0 + Duration::from_secs(45)), Some(0), "counter restarts after each line");
    }

    #[test]
    fn backoff_grows_to_a_bound_and_resets() {
        let mut b = Backoff::new();
        let pauses: Vec<_> = (0..10).map(|_| b.next_pause()).collect();
        assert_eq!(pauses[0], Duration::from_millis(10));
        assert_eq!(pauses[1], Duration::from_millis(20));
        assert!(pauses.windows(2).all(|p| p[1] >= p[0]));
        assert_eq!(*pauses.last().unwrap(), Duration::from_millis(500));
        b.reset();
        assert_eq!(b.next_pause(), Duration::from_millis(10));
    }

    #[test]
    fn only_vanished_connections_are_per_connection_errors() {
        assert!(is_per_connection(&io::Error::from(io::ErrorKind::ConnectionAborted)));
        assert!(!is_per_connection(&io::Error::from_raw_os_error(24)), "EMFILE backs off");
        assert!(!is_per_connection(&io::Error::from(io::ErrorKind::OutOfMemory)));
    }
}
