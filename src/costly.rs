//! Costly evaluations: searches whose filter is large for the entries it must look at. They run on
//! the blocking pool rather than on the request workers, a bounded number at a time server-wide
//! (`ldap.costly_searches`) and per principal (`ldap.costly_searches_per_principal`), so that one
//! client's filters cannot stall everyone else's requests. Every evaluation, cheap or costly,
//! polls a [`Budget`], which ends it promptly at its time limit or when a shutdown has run out of
//! time, and a costly one also when its client goes away.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A search costing more than this many work units (filter weight × entries or resources it must
/// look at) is costly. An indexed equality lookup costs 1; a ten-term filter over ten thousand
/// entries costs 100 000, a few milliseconds of work in a release build.
pub const COSTLY_COST: u64 = 100_000;

/// Work units between two looks at the clock and the flags: a unit is one candidate entry or one
/// filter term, so a check costs a small fraction of the work it bounds.
const CHECK_EVERY: u32 = 32;

/// Why an evaluation ended early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Its time limit passed.
    TimeLimit,
    /// Its client went away, or the server is stopping.
    Cancelled,
}

/// Why a costly evaluation did not run (or did not finish).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("time limit exceeded while waiting for a turn among costly searches")]
    TimeLimit,
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("the evaluation failed")]
    Failed,
}

/// The limits one evaluation runs under. Not shared between threads: each evaluation owns one.
pub struct Budget {
    deadline: Option<Instant>,
    cancel: Option<Arc<AtomicBool>>,
    stopping: Option<Arc<AtomicBool>>,
    ticks: Cell<u32>,
    ended: Cell<Option<Stop>>,
}

impl Budget {
    /// No time limit and nothing that can cancel it: for evaluations bounded by their input (one
    /// entry, one small filter).
    pub fn unlimited() -> Budget {
        Budget::until(None)
    }

    /// Ends at `deadline`, if any.
    pub fn until(deadline: Option<Instant>) -> Budget {
        Budget { deadline, cancel: None, stopping: None, ticks: Cell::new(0), ended: Cell::new(None) }
    }

    /// Counts one unit of work; `true` once the evaluation must end. Looks at the clock and the
    /// flags only every few units, so it is cheap enough for inner loops.
    #[inline]
    pub fn tick(&self) -> bool {
        if self.ended.get().is_some() {
            return true;
        }
        let n = self.ticks.get().wrapping_add(1);
        self.ticks.set(n);
        n.is_multiple_of(CHECK_EVERY) && self.check()
    }

    /// Looks at the clock and the flags now; `true` once the evaluation must end.
    pub fn check(&self) -> bool {
        if self.ended.get().is_some() {
            return true;
        }
        let flagged = |f: &Option<Arc<AtomicBool>>| f.as_ref().is_some_and(|f| f.load(Ordering::Relaxed));
        let stop = if flagged(&self.cancel) || flagged(&self.stopping) {
            Some(Stop::Cancelled)
        } else if self.deadline.is_some_and(|d| Instant::now() >= d) {
            Some(Stop::TimeLimit)
        } else {
            None
        };
        self.ended.set(stop);
        stop.is_some()
    }

    /// Why the evaluation ended early, if it did.
    pub fn ended(&self) -> Option<Stop> {
        self.ended.get()
    }
}

/// Drops `value` on the blocking pool: freeing a large request (a filter of hundreds of thousands
/// of nodes) takes long enough to stall a request worker.
pub fn free_off_worker<T: Send + 'static>(value: T) {
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => drop(rt.spawn_blocking(move || drop(value))),
        Err(_) => drop(value),
    }
}

/// Frees what it holds with [`free_off_worker`] if dropped before it is taken.
struct FreeOnDrop<T: Send + 'static>(Option<T>);

impl<T: Send + 'static> Drop for FreeOnDrop<T> {
    fn drop(&mut self) {
        if let Some(v) = self.0.take() {
            free_off_worker(v);
        }
    }
}

/// Sets the cancel flag when dropped: the future awaiting a blocking evaluation holds it, so
/// dropping that future (client gone, task aborted) stops the evaluation.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A principal's share of the costly searches; the map entry goes when its last holder or waiter
/// does.
struct PrincipalTurn {
    key: String,
    sem: Arc<Semaphore>,
    permit: Option<OwnedSemaphorePermit>,
    map: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
}

impl Drop for PrincipalTurn {
    fn drop(&mut self) {
        drop(self.permit.take());
        if let Ok(mut map) = self.map.lock()
            && Arc::strong_count(&self.sem) == 2
        {
            // Only the map and this turn hold it: nobody else runs or waits for this principal.
            map.remove(&self.key);
        }
    }
}

/// The right to run one costly evaluation; released when the evaluation ends (not when its client
/// stops waiting), so the bound counts what really runs.
struct Turn {
    _global: OwnedSemaphorePermit,
    _principal: PrincipalTurn,
}

/// Server-wide admission of costly evaluations.
pub struct Gate {
    global: Arc<Semaphore>,
    per_principal: usize,
    principals: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
    stopping: Arc<AtomicBool>,
}

impl Gate {
    /// `global` costly evaluations at once, `per_principal` of them for any one principal (both at
    /// least 1).
    pub fn new(global: usize, per_principal: usize) -> Gate {
        let global = global.clamp(1, Semaphore::MAX_PERMITS);
        Gate {
            global: Arc::new(Semaphore::new(global)),
            per_principal: per_principal.clamp(1, global),
            principals: Arc::default(),
            stopping: Arc::default(),
        }
    }

    /// A budget for an evaluation run in place (cheap ones): it ends at `deadline` or when the
    /// server stops.
    pub fn budget(&self, deadline: Option<Instant>) -> Budget {
        Budget { stopping: Some(self.stopping.clone()), ..Budget::until(deadline) }
    }

    /// Ends every evaluation still running (each notices within a few work units) and refuses new
    /// ones. Called when a shutdown runs out of time.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.global.close();
    }

    fn stopped(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// Waits for a turn: the principal's first, then the server's, so that one principal's queue
    /// never sits in front of other principals in the server-wide one (the semaphores are fair).
    async fn turn(&self, principal: &str) -> Result<Turn, Refused> {
        let sem = {
            let mut map = self.principals.lock().map_err(|_| Refused::Failed)?;
            map.entry(principal.to_string()).or_insert_with(|| Arc::new(Semaphore::new(self.per_principal))).clone()
        };
        let mut mine = PrincipalTurn { key: principal.to_string(), sem, permit: None, map: self.principals.clone() };
        mine.permit = Some(mine.sem.clone().acquire_owned().await.map_err(|_| Refused::ShuttingDown)?);
        let global = self.global.clone().acquire_owned().await.map_err(|_| Refused::ShuttingDown)?;
        Ok(Turn { _global: global, _principal: mine })
    }

    /// Runs `work` on the blocking pool when `principal` gets a turn. The wait counts against
    /// `deadline`, like the work itself: a search that spent its time limit queueing is answered
    /// at once. Dropping the returned future cancels the work.
    pub async fn run<T, F>(&self, principal: &str, deadline: Option<Instant>, work: F) -> Result<T, Refused>
    where
        T: Send + 'static,
        F: FnOnce(&Budget) -> T + Send + 'static,
    {
        // The work owns the request, which may be large: whether refused here or dropped while
        // waiting, it is freed off the request workers.
        let mut pending = FreeOnDrop(Some(work));
        if self.stopped() {
            return Err(Refused::ShuttingDown);
        }
        let turn = match deadline {
            Some(d) => tokio::time::timeout_at(d.into(), self.turn(principal)).await.unwrap_or(Err(Refused::TimeLimit)),
            None => self.turn(principal).await,
        }?;
        let Some(work) = pending.0.take() else { return Err(Refused::Failed) };
        let cancel = Arc::new(AtomicBool::new(false));
        let _guard = CancelOnDrop(cancel.clone());
        let budget = Budget { cancel: Some(cancel), ..self.budget(deadline) };
        let handle = tokio::task::spawn_blocking(move || {
            let _turn = turn;
            work(&budget)
        });
        handle.await.map_err(|e| {
            tracing::error!(error = %e, "a costly evaluation failed");
            Refused::Failed
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn budget_ends_at_its_deadline() {
        let b = Budget::until(Some(Instant::now() + Duration::from_millis(20)));
        let start = Instant::now();
        while !b.tick() {
            assert!(start.elapsed() < Duration::from_secs(5), "budget never ended");
        }
        assert_eq!(b.ended(), Some(Stop::TimeLimit));
        assert!(start.elapsed() >= Duration::from_millis(20));
        assert!(!Budget::unlimited().check());
    }

    #[tokio::test]
    async fn one_principal_waits_for_its_turn_and_others_pass() {
        let gate = Arc::new(Gate::new(2, 1));
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let g = gate.clone();
        // alice's first evaluation holds her turn until told to end.
        let first = tokio::spawn(async move {
            g.run("alice", None, move |_| {
                let _ = rx.recv_timeout(Duration::from_secs(10));
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Her second waits past its deadline; bob's runs at once.
        let soon = Instant::now() + Duration::from_millis(100);
        assert_eq!(gate.run("alice", Some(soon), |_| ()).await, Err(Refused::TimeLimit));
        assert_eq!(gate.run("bob", Some(Instant::now() + Duration::from_secs(5)), |_| 7).await, Ok(7));
        tx.send(()).unwrap();
        assert_eq!(first.await.unwrap(), Ok(()));
        assert!(gate.principals.lock().unwrap().is_empty(), "idle principals are forgotten");
    }

    #[tokio::test]
    async fn dropping_the_waiter_cancels_and_stop_ends_everything() {
        let gate = Arc::new(Gate::new(1, 1));
        let (tx, rx) = std::sync::mpsc::channel::<Option<Stop>>();
        let g = gate.clone();
        let waiter = tokio::spawn(async move {
            g.run("alice", None, move |b| {
                while !b.tick() {}
                let _ = tx.send(b.ended());
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        waiter.abort();
        let why = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(5))).await.unwrap();
        assert_eq!(why, Ok(Some(Stop::Cancelled)));

        let budget = gate.budget(None);
        gate.stop();
        assert!(budget.check(), "running evaluations see the stop");
        assert_eq!(gate.run("bob", None, |_| ()).await, Err(Refused::ShuttingDown));
    }
}
