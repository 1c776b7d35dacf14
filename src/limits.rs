//! Descriptor budgets. Every connection costs a descriptor, and a process that runs out of them
//! fails everywhere at once: accepts on every listener, backend calls, the state database. So the
//! soft `RLIMIT_NOFILE` is raised to the hard limit at start, a reserve is kept for everything that
//! is not a client connection, and the rest is split between the LDAP listeners
//! (`ldap.max_connections`, LDAP and LDAPS together) and HTTP (`http.max_connections`). Each
//! listener refuses connections beyond its own cap, so a flood on one cannot starve the other.

use crate::config::Config;

/// Descriptors kept for what is not a client connection: standard streams, the runtime's own
/// (epoll, wakers, signals), the three listening sockets, the state database, certificate files
/// read on reload, the connection each listener accepts only to close it when full, name lookups,
/// and above all the backend's HTTP connections, which take most of it.
pub const RESERVE: u64 = 256;

/// Below this the gateway cannot serve anything useful and refuses to start.
pub const MIN_LIMIT: u64 = 64;

/// Where Linux stops raising an "unlimited" hard limit (its default `fs.nr_open`).
const UNLIMITED_TARGET: u64 = 1 << 20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LimitsError {
    #[error(
        "the descriptor limit (RLIMIT_NOFILE) is {limit}, too low to serve connections (at least {MIN_LIMIT} needed)"
    )]
    TooLow { limit: u64 },
}

/// How the descriptor limit is shared out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// The soft limit in force, `None` where the platform has none.
    pub limit: Option<u64>,
    pub reserve: u64,
    /// Effective caps: the configured ones, or less when the limit is too low for them.
    pub ldap: usize,
    pub http: usize,
    /// The caps were lowered to fit.
    pub scaled: bool,
}

impl Budget {
    /// Splits `limit` descriptors. The reserve is [`RESERVE`], or a quarter of a small limit; when
    /// the configured caps and the reserve do not fit, both caps are scaled down in proportion.
    pub fn plan(limit: u64, ldap: usize, http: usize) -> Result<Budget, LimitsError> {
        if limit < MIN_LIMIT {
            return Err(LimitsError::TooLow { limit });
        }
        let reserve = RESERVE.min(limit / 4);
        let room = limit - reserve;
        // Computed wide so that no configured cap can overflow.
        let (want_ldap, want_http) = (ldap.max(1) as u128, http.max(1) as u128);
        let want = want_ldap + want_http;
        if want <= u128::from(room) {
            return Ok(Budget { limit: Some(limit), reserve, ldap, http, scaled: false });
        }
        // Proportional shares; each listener keeps at least one connection.
        let ldap_share = (u128::from(room) * want_ldap / want) as u64;
        let ldap_share = ldap_share.clamp(1, room - 1);
        let http_share = (room - ldap_share).min(u64::try_from(want_http).unwrap_or(u64::MAX));
        Ok(Budget {
            limit: Some(limit),
            reserve,
            ldap: usize::try_from(ldap_share).unwrap_or(usize::MAX),
            http: usize::try_from(http_share).unwrap_or(usize::MAX),
            scaled: true,
        })
    }

    /// Descriptors the connection caps and the reserve may use together.
    pub fn total(&self) -> u64 {
        self.reserve + self.ldap as u64 + self.http as u64
    }
}

/// Raises the descriptor limit, plans the budget, writes the effective caps into `cfg` and logs
/// them (once, here, at start).
pub fn apply(cfg: &mut Config) -> Result<Budget, LimitsError> {
    let budget = match raise_nofile() {
        Some(limit) => Budget::plan(limit, cfg.ldap.max_connections, cfg.http.max_connections)?,
        None => Budget {
            limit: None,
            reserve: RESERVE,
            ldap: cfg.ldap.max_connections,
            http: cfg.http.max_connections,
            scaled: false,
        },
    };
    if budget.scaled {
        tracing::warn!(
            nofile = budget.limit,
            reserve = budget.reserve,
            ldap_max_connections = budget.ldap,
            http_max_connections = budget.http,
            configured_ldap = cfg.ldap.max_connections,
            configured_http = cfg.http.max_connections,
            "descriptor limit too low for ldap.max_connections and http.max_connections; caps scaled down"
        );
    } else {
        tracing::info!(
            nofile = budget.limit,
            reserve = budget.reserve,
            ldap_max_connections = budget.ldap,
            http_max_connections = budget.http,
            "descriptor budget"
        );
    }
    cfg.ldap.max_connections = budget.ldap;
    cfg.http.max_connections = budget.http;
    Ok(budget)
}

/// Raises the soft descriptor limit to the hard one and returns the limit now in force; `None`
/// where the platform has no such limit or it cannot be read.
#[cfg(unix)]
fn raise_nofile() -> Option<u64> {
    use rlimit::Resource;
    let (soft, hard) = match rlimit::getrlimit(Resource::NOFILE) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the descriptor limit; connection caps are not checked against it");
            return None;
        }
    };
    let target = if hard == rlimit::INFINITY { UNLIMITED_TARGET } else { hard };
    match rlimit::increase_nofile_limit(target) {
        Ok(now) => Some(now),
        Err(e) => {
            tracing::warn!(error = %e, soft, hard, "cannot raise the descriptor limit; keeping the soft limit");
            Some(soft)
        }
    }
}

#[cfg(not(unix))]
fn raise_nofile() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fit_a_common_hard_limit_untouched() {
        let b = Budget::plan(65_536, 4096, 1024).unwrap();
        assert_eq!((b.ldap, b.http, b.reserve, b.scaled), (4096, 1024, RESERVE, false));
        // Exactly enough room is still enough.
        let b = Budget::plan(4096 + 1024 + RESERVE, 4096, 1024).unwrap();
        assert!(!b.scaled);
        assert_eq!(b.total(), 4096 + 1024 + RESERVE);
    }

    #[test]
    fn a_low_limit_scales_both_caps_in_proportion() {
        let b = Budget::plan(1024, 4096, 1024).unwrap();
        assert!(b.scaled);
        assert_eq!(b.reserve, 256, "a quarter of 1024");
        // 768 left: 4096/5120 of it for LDAP, the rest for HTTP.
        assert_eq!((b.ldap, b.http), (614, 154));
        assert_eq!(b.total(), 1024);
        let b = Budget::plan(4096 + 1024 + RESERVE - 1, 4096, 1024).unwrap();
        assert!(b.scaled);
        assert!(b.total() < 4096 + 1024 + RESERVE);
        assert!(b.ldap < 4096 && b.http <= 1024);
    }

    #[test]
    fn the_sum_never_exceeds_the_limit_and_every_cap_keeps_a_connection() {
        for limit in [MIN_LIMIT, 65, 100, 257, 1000, 1024, 5375, 20_000] {
            for (ldap, http) in [(1, 1), (1, 100_000), (100_000, 1), (4096, 1024), (usize::MAX, usize::MAX)] {
                let b = Budget::plan(limit, ldap, http).unwrap();
                assert!(b.total() <= limit, "{limit} {ldap} {http}: {b:?}");
                assert!(b.ldap >= 1 && b.http >= 1, "{limit} {ldap} {http}: {b:?}");
                assert!(b.ldap <= ldap && b.http <= http, "never raised: {b:?}");
                assert!(b.reserve >= limit / 4 || b.reserve == RESERVE, "{b:?}");
            }
        }
    }

    #[test]
    fn too_low_a_limit_is_an_error_naming_it() {
        let e = Budget::plan(MIN_LIMIT - 1, 4096, 1024).unwrap_err();
        assert_eq!(e, LimitsError::TooLow { limit: MIN_LIMIT - 1 });
        assert!(e.to_string().contains("63"), "{e}");
    }

    #[test]
    fn an_unlimited_limit_changes_nothing() {
        let b = Budget::plan(u64::MAX, 4096, 1024).unwrap();
        assert_eq!((b.ldap, b.http, b.scaled), (4096, 1024, false));
    }
}
