//! [`BoundedPool`]: the wait behind every tensor pool with a bound (the host tensors of
//! trtpreprocess's CPU path, the device tensors of its CUDA path, the TensorRT backend's
//! output sets).
//!
//! A pool hands out at most `limit` resources at once. When all are out, `take` waits on a
//! condition variable until one comes back, the pool is flushed, or the timeout passes; it
//! never makes an extra one and never hands the caller a fallback. The pool does not create
//! resources itself: `take` either returns an idle one or tells the caller to create one
//! (counted as out from then on), so the same type serves host vectors and device buffers.
//!
//! Back-pressure belongs to a streaming element: while its pipeline is paused (a sink
//! prerolling holds buffers on purpose) a wait does not count towards the timeout
//! ([`BoundedPool::set_timing`]), and a flush or a stop wakes every waiter at once
//! ([`BoundedPool::set_flushing`]).

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Why [`BoundedPool::take`] returned without a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolWaitError {
    /// `limit` resources stayed out for the whole `waited` time.
    Timeout { limit: usize, waited: Duration },
    /// The pool is flushing (a flush, seek or stop is under way).
    Flushing,
}

impl std::fmt::Display for PoolWaitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PoolWaitError::Timeout { limit, waited } => write!(
                f,
                "all {limit} pooled tensors were still held downstream after {} ms",
                waited.as_millis()
            ),
            PoolWaitError::Flushing => f.write_str("the pool is flushing"),
        }
    }
}

impl std::error::Error for PoolWaitError {}

/// What [`BoundedPool::take`] hands out.
#[derive(Debug)]
pub enum Taken<T> {
    /// An idle resource, out from now on.
    Idle(T),
    /// Nothing idle fits but the bound allows one more: the caller creates it (counted as
    /// out already; if creating fails, call [`BoundedPool::forget`]).
    New,
}

/// Counters of a pool (all since it was made).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Resources out now.
    pub out: usize,
    /// Most resources out at once.
    pub peak: usize,
    /// Takes that had to wait for a resource to come back.
    pub waits: u64,
    /// Resources created (`Taken::New` answers not forgotten).
    pub created: u64,
}

struct Inner<T> {
    idle: Vec<T>,
    limit: Option<usize>,
    max_idle: usize,
    flushing: bool,
    timing: bool,
    stats: PoolStats,
}

/// A pool of at most `limit` resources out at once; see the [module documentation](self).
pub struct BoundedPool<T> {
    inner: Mutex<Inner<T>>,
    returned: Condvar,
}

impl<T> std::fmt::Debug for BoundedPool<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let g = self.lock();
        f.debug_struct("BoundedPool")
            .field("idle", &g.idle.len())
            .field("limit", &g.limit)
            .field("stats", &g.stats)
            .finish()
    }
}

impl<T> BoundedPool<T> {
    /// A pool of at most `limit` resources out at once (`None`: no bound, never waits)
    /// that keeps at most `max_idle` returned ones for reuse (the rest are dropped).
    pub fn new(limit: Option<usize>, max_idle: usize) -> Self {
        Self::with_idle(Vec::new(), limit, max_idle)
    }

    /// As [`BoundedPool::new`], starting with `idle` resources made up front.
    pub fn with_idle(idle: Vec<T>, limit: Option<usize>, max_idle: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                idle,
                limit: limit.map(|l| l.max(1)),
                max_idle,
                flushing: false,
                timing: true,
                stats: PoolStats::default(),
            }),
            returned: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<T>> {
        // Nothing panics while holding the lock; a poisoned one still holds valid counts.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An idle resource chosen by `pick` (given the idle list; it may also drop unusable
    /// ones from it), else permission to create one while fewer than `limit` are out, else
    /// waits until one comes back. `timeout` bounds the wait (`None`: no bound); the time
    /// counts only while [`BoundedPool::set_timing`] is on. Fails at once while flushing.
    pub fn take(
        &self,
        timeout: Option<Duration>,
        mut pick: impl FnMut(&mut Vec<T>) -> Option<T>,
    ) -> Result<Taken<T>, PoolWaitError> {
        let mut g = self.lock();
        let mut waited = false;
        // Time waited so far while timing was on, and since when the current stretch runs.
        let mut counted = Duration::ZERO;
        loop {
            if g.flushing {
                return Err(PoolWaitError::Flushing);
            }
            // The bound holds for idle resources too: a pool made with more idle ones than
            // a limit set later still hands out at most `limit`.
            let room = g.limit.is_none_or(|l| g.stats.out < l);
            let taken = if !room {
                None
            } else if let Some(t) = pick(&mut g.idle) {
                Some(Taken::Idle(t))
            } else {
                g.stats.created += 1;
                Some(Taken::New)
            };
            if let Some(taken) = taken {
                g.stats.out += 1;
                g.stats.peak = g.stats.peak.max(g.stats.out);
                if waited {
                    g.stats.waits += 1;
                }
                return Ok(taken);
            }
            waited = true;
            let limit = g.limit.unwrap_or(0);
            match timeout.filter(|_| g.timing) {
                None => g = self.returned.wait(g).unwrap_or_else(|p| p.into_inner()),
                Some(t) => {
                    let Some(left) = t.checked_sub(counted).filter(|d| !d.is_zero()) else {
                        return Err(PoolWaitError::Timeout { limit, waited: t });
                    };
                    let start = Instant::now();
                    let (ng, _) = self
                        .returned
                        .wait_timeout(g, left)
                        .unwrap_or_else(|p| p.into_inner());
                    g = ng;
                    // Time paused meanwhile (timing turned off) is not counted: set_timing
                    // wakes the waiters, which then wait without a deadline.
                    if g.timing {
                        counted += start.elapsed();
                    }
                }
            }
        }
    }

    /// Gives a resource back: it becomes idle (or is dropped past `max_idle`) and one
    /// waiter wakes.
    pub fn put(&self, item: T) {
        let mut g = self.lock();
        g.stats.out = g.stats.out.saturating_sub(1);
        if g.idle.len() < g.max_idle {
            g.idle.push(item);
        }
        drop(g);
        self.returned.notify_one();
    }

    /// A resource handed out is gone (dropped, or never created after `Taken::New`): one
    /// fewer is out and one waiter wakes.
    pub fn forget(&self, created: bool) {
        let mut g = self.lock();
        g.stats.out = g.stats.out.saturating_sub(1);
        if !created {
            g.stats.created = g.stats.created.saturating_sub(1);
        }
        drop(g);
        self.returned.notify_one();
    }

    /// While on, every take fails with [`PoolWaitError::Flushing`] and the waiting ones
    /// wake now (a flush, seek or stop must never wait for downstream).
    pub fn set_flushing(&self, on: bool) {
        self.lock().flushing = on;
        self.returned.notify_all();
    }

    /// Whether waits count towards their timeout (off while the pipeline is paused).
    pub fn set_timing(&self, on: bool) {
        self.lock().timing = on;
        self.returned.notify_all();
    }

    /// Changes the bound (`None`: none); waiters re-check it. The idle resources kept grow
    /// with the bound (a pool never drops what it may hand out again).
    pub fn set_limit(&self, limit: Option<usize>) {
        let mut g = self.lock();
        g.limit = limit.map(|l| l.max(1));
        if let Some(l) = g.limit {
            g.max_idle = g.max_idle.max(l);
        }
        drop(g);
        self.returned.notify_all();
    }

    /// The bound.
    pub fn limit(&self) -> Option<usize> {
        self.lock().limit
    }

    /// Resources idle now.
    pub fn idle(&self) -> usize {
        self.lock().idle.len()
    }

    /// The counters.
    pub fn stats(&self) -> PoolStats {
        self.lock().stats
    }
}

/// What an element does with its pools on flushes and state changes, whatever they hold.
pub trait PoolControl: Send + Sync {
    fn set_flushing(&self, on: bool);
    fn set_timing(&self, on: bool);
    fn stats(&self) -> PoolStats;
}

impl<T: Send> PoolControl for BoundedPool<T> {
    fn set_flushing(&self, on: bool) {
        BoundedPool::set_flushing(self, on)
    }
    fn set_timing(&self, on: bool) {
        BoundedPool::set_timing(self, on)
    }
    fn stats(&self) -> PoolStats {
        BoundedPool::stats(self)
    }
}

/// The pools of one element: flushes and state changes reach each of them, and pools made
/// later start in the current state.
#[derive(Default)]
pub struct PoolSet {
    inner: Mutex<PoolSetInner>,
}

struct PoolSetInner {
    pools: Vec<std::sync::Weak<dyn PoolControl>>,
    flushing: bool,
    timing: bool,
}

impl Default for PoolSetInner {
    fn default() -> Self {
        Self {
            pools: Vec::new(),
            flushing: false,
            timing: true,
        }
    }
}

impl std::fmt::Debug for PoolSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let g = self.lock();
        f.debug_struct("PoolSet")
            .field("pools", &g.pools.len())
            .field("flushing", &g.flushing)
            .field("timing", &g.timing)
            .finish()
    }
}

impl PoolSet {
    fn lock(&self) -> MutexGuard<'_, PoolSetInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds `pool` (it takes the set's flushing and timing state now).
    pub fn add(&self, pool: std::sync::Arc<dyn PoolControl>) {
        let mut g = self.lock();
        pool.set_flushing(g.flushing);
        pool.set_timing(g.timing);
        g.pools.retain(|p| p.strong_count() > 0);
        g.pools.push(std::sync::Arc::downgrade(&pool));
    }

    /// Flushing on or off for every pool (wakes their waiters).
    pub fn set_flushing(&self, on: bool) {
        let mut g = self.lock();
        g.flushing = on;
        g.pools.retain(|p| p.strong_count() > 0);
        for p in g.pools.iter().filter_map(|p| p.upgrade()) {
            p.set_flushing(on);
        }
    }

    /// Timing on (PLAYING) or off for every pool.
    pub fn set_timing(&self, on: bool) {
        let mut g = self.lock();
        g.timing = on;
        for p in g.pools.iter().filter_map(|p| p.upgrade()) {
            p.set_timing(on);
        }
    }

    /// Whether the pools are flushing.
    pub fn flushing(&self) -> bool {
        self.lock().flushing
    }

    /// The counters of the live pools, summed (`peak`: the largest of one pool).
    pub fn stats(&self) -> PoolStats {
        let g = self.lock();
        g.pools
            .iter()
            .filter_map(|p| p.upgrade())
            .map(|p| p.stats())
            .fold(PoolStats::default(), |a, s| PoolStats {
                out: a.out + s.out,
                peak: a.peak.max(s.peak),
                waits: a.waits + s.waits,
                created: a.created + s.created,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread;

    fn pop(v: &mut Vec<u32>) -> Option<u32> {
        v.pop()
    }

    fn take_now(p: &BoundedPool<u32>) -> Result<Taken<u32>, PoolWaitError> {
        p.take(Some(Duration::from_millis(1)), pop)
    }

    #[test]
    fn a_limit_below_the_idle_count_holds() {
        // Made with 3 idle resources, then bounded at 2 (the CUDA preprocessor's pool
        // before the element configures it): never more than 2 out.
        let p = BoundedPool::with_idle(vec![1, 2, 3], Some(8), 8);
        p.set_limit(Some(2));
        assert!(matches!(take_now(&p), Ok(Taken::Idle(_))));
        assert!(matches!(take_now(&p), Ok(Taken::Idle(_))));
        assert!(matches!(
            take_now(&p),
            Err(PoolWaitError::Timeout { limit: 2, .. })
        ));
        p.put(7);
        assert!(matches!(take_now(&p), Ok(Taken::Idle(7))));
        assert_eq!(p.stats().peak, 2);
    }

    #[test]
    fn creates_up_to_the_limit_then_reuses() {
        let p = BoundedPool::new(Some(2), 8);
        assert!(matches!(take_now(&p), Ok(Taken::New)));
        assert!(matches!(take_now(&p), Ok(Taken::New)));
        assert!(matches!(
            take_now(&p),
            Err(PoolWaitError::Timeout { limit: 2, .. })
        ));
        p.put(7);
        assert!(matches!(take_now(&p), Ok(Taken::Idle(7))));
        let s = p.stats();
        assert_eq!((s.out, s.peak, s.created), (2, 2, 2));
    }

    #[test]
    fn waits_until_a_resource_comes_back() {
        let p = Arc::new(BoundedPool::with_idle(vec![1u32], Some(1), 8));
        let Ok(Taken::Idle(held)) = take_now(&p) else {
            panic!("the idle one")
        };
        let p2 = p.clone();
        let start = Instant::now();
        let waiter = thread::spawn(move || p2.take(Some(Duration::from_secs(10)), pop));
        thread::sleep(Duration::from_millis(100));
        assert!(!waiter.is_finished(), "waits while the only resource is out");
        p.put(held);
        let got = waiter.join().expect("no panic");
        assert!(matches!(got, Ok(Taken::Idle(1))), "{got:?}");
        assert!(start.elapsed() < Duration::from_secs(5));
        assert_eq!(p.stats().waits, 1);
        assert_eq!(p.stats().out, 1);
    }

    #[test]
    fn times_out_with_the_limit_named() {
        let p = BoundedPool::<u32>::new(Some(3), 8);
        for _ in 0..3 {
            assert!(matches!(take_now(&p), Ok(Taken::New)));
        }
        let start = Instant::now();
        let err = p
            .take(Some(Duration::from_millis(150)), pop)
            .expect_err("times out");
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(150) && waited < Duration::from_secs(5),
            "{waited:?}"
        );
        assert_eq!(
            err,
            PoolWaitError::Timeout {
                limit: 3,
                waited: Duration::from_millis(150)
            }
        );
        assert!(err.to_string().contains("all 3 pooled tensors"), "{err}");
        assert_eq!(p.stats().out, 3, "no fourth one");
    }

    #[test]
    fn flushing_wakes_waiters_and_refuses_until_cleared() {
        let p = Arc::new(BoundedPool::<u32>::new(Some(1), 8));
        assert!(matches!(take_now(&p), Ok(Taken::New)));
        let p2 = p.clone();
        // No timeout: only the flush can end this wait.
        let waiter = thread::spawn(move || p2.take(None, pop));
        thread::sleep(Duration::from_millis(100));
        assert!(!waiter.is_finished());
        p.set_flushing(true);
        assert_eq!(
            waiter.join().expect("no panic").unwrap_err(),
            PoolWaitError::Flushing
        );
        assert_eq!(take_now(&p).unwrap_err(), PoolWaitError::Flushing);
        p.set_flushing(false);
        p.forget(true);
        assert!(matches!(take_now(&p), Ok(Taken::New)));
    }

    #[test]
    fn paused_time_does_not_count() {
        let p = Arc::new(BoundedPool::<u32>::new(Some(1), 8));
        assert!(matches!(take_now(&p), Ok(Taken::New)));
        p.set_timing(false);
        let p2 = p.clone();
        let waiter = thread::spawn(move || p2.take(Some(Duration::from_millis(50)), pop));
        thread::sleep(Duration::from_millis(300));
        assert!(!waiter.is_finished(), "no timeout while paused");
        p.set_timing(true);
        let got = waiter.join().expect("no panic");
        assert!(matches!(got, Err(PoolWaitError::Timeout { .. })), "{got:?}");
    }

    #[test]
    fn idle_resources_are_capped() {
        let p = BoundedPool::<u32>::new(None, 2);
        for _ in 0..5 {
            assert!(matches!(take_now(&p), Ok(Taken::New)));
        }
        for v in 0..5 {
            p.put(v);
        }
        assert_eq!(p.idle(), 2);
        assert_eq!(p.stats().out, 0);
        assert_eq!(p.stats().peak, 5);
    }

    #[test]
    fn a_set_reaches_pools_made_later() {
        let set = PoolSet::default();
        set.set_flushing(true);
        let p = Arc::new(BoundedPool::<u32>::new(Some(1), 1));
        set.add(p.clone());
        assert_eq!(take_now(&p).unwrap_err(), PoolWaitError::Flushing);
        set.set_flushing(false);
        assert!(matches!(take_now(&p), Ok(Taken::New)));
    }

    #[test]
    fn many_threads_never_exceed_the_limit() {
        let p = Arc::new(BoundedPool::<u32>::new(Some(3), 8));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let p = p.clone();
                thread::spawn(move || {
                    for _ in 0..200 {
                        let got = p.take(Some(Duration::from_secs(10)), pop).expect("no timeout");
                        let v = match got {
                            Taken::Idle(v) => v,
                            Taken::New => 0,
                        };
                        assert!(p.stats().out <= 3);
                        p.put(v);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("no panic");
        }
        let s = p.stats();
        assert_eq!(s.out, 0);
        assert!(s.peak <= 3 && s.created <= 3, "{s:?}");
    }
}
