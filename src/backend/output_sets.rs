//! Device output buffer sets that travel downstream with a GPU backend's device output
//! tensors: native TensorRT's buffer sets and ONNX Runtime's CUDA-graph output sets. A set
//! is in use from the call that writes it until the last tensor pointing into it is
//! dropped; at most `output-pool-size` sets (times the chunks of the largest batch, see
//! [`OutputSets::hold_chunks`]) are in use at once. When all are, the next call waits for
//! one to come back (up to `pool-timeout`, a flush or stop of the element ends the wait)
//! instead of allocating more device memory. The sets themselves are the backend's; this
//! type hands out their indices.

use std::sync::Arc;
use std::time::Duration;

use super::{pool_wait_error, BackendError, BackendOptions};
use crate::tensor::pool::{BoundedPool, PoolStats, Taken};

/// The indices of a backend's output sets; see the [module documentation](self).
#[derive(Debug)]
pub struct OutputSets {
    free: Arc<BoundedPool<usize>>,
    /// `output-pool-size`: sets in use at most for batches in one chunk.
    base: usize,
    timeout: Option<Duration>,
    /// What a timeout names.
    what: &'static str,
}

/// Set `index` in use; it becomes free again when the lease drops (the device output
/// tensors hold it through their keepalive).
#[derive(Debug)]
pub struct SetLease {
    index: usize,
    free: Arc<BoundedPool<usize>>,
}

impl SetLease {
    /// The set's index among the backend's sets.
    pub fn index(&self) -> usize {
        self.index
    }
}

impl Drop for SetLease {
    fn drop(&mut self) {
        self.free.put(self.index);
    }
}

/// Permission to make one more set: [`NewSet::made`] once it exists; dropped before (the
/// allocation failed), the permission goes back.
#[derive(Debug)]
pub struct NewSet {
    free: Option<Arc<BoundedPool<usize>>>,
}

impl NewSet {
    /// The set made is `index` (the next one of the backend's list): in use from now on.
    pub fn made(mut self, index: usize) -> SetLease {
        let free = self.free.take().expect("taken once");
        SetLease { index, free }
    }
}

impl Drop for NewSet {
    fn drop(&mut self) {
        if let Some(free) = self.free.take() {
            free.forget(false);
        }
    }
}

/// What [`OutputSets::take`] hands out.
#[derive(Debug)]
pub enum SetTake {
    /// A free set (the lowest index free: sets with a CUDA graph come first).
    Idle(SetLease),
    /// None free, but the bound allows one more: the caller makes it.
    New(NewSet),
}

/// Raises `pool`'s bound to `base` x `chunks` (never lowers it): a batch run in `chunks`
/// chunks holds one set (or tensor) per chunk, and must never wait for what only it holds.
pub(super) fn hold_chunks<T>(pool: &BoundedPool<T>, base: usize, chunks: usize) {
    let want = base.saturating_mul(chunks.max(1));
    if pool.limit().is_some_and(|l| l < want) {
        pool.set_limit(Some(want));
    }
}

impl OutputSets {
    /// Sets `0..made` made already and free, at most `opts.output_limit()` in use, waits of
    /// `opts.pool_timeout`, in the element's pool set (flushes and stops wake a waiting
    /// call). `what` names the sets in a timeout error.
    pub fn new(opts: &BackendOptions, what: &'static str, made: usize) -> Self {
        let base = opts.output_limit();
        let free = Arc::new(BoundedPool::with_idle((0..made).collect(), Some(base), base));
        opts.pools.add(free.clone());
        Self {
            free,
            base,
            timeout: opts.output_timeout(),
            what,
        }
    }

    /// A free set, else permission to make one while fewer than the bound are in use, else
    /// waits for one to come back; fails when the element flushes or the wait times out.
    pub fn take(&self) -> Result<SetTake, BackendError> {
        let lowest = |idle: &mut Vec<usize>| {
            let k = idle.iter().enumerate().min_by_key(|(_, &i)| i).map(|(k, _)| k)?;
            Some(idle.swap_remove(k))
        };
        match self.free.take(self.timeout, lowest) {
            Ok(Taken::Idle(index)) => Ok(SetTake::Idle(SetLease {
                index,
                free: self.free.clone(),
            })),
            Ok(Taken::New) => Ok(SetTake::New(NewSet {
                free: Some(self.free.clone()),
            })),
            Err(e) => Err(pool_wait_error(e, self.what)),
        }
    }

    /// A batch runs in `chunks` chunks: up to `output-pool-size` x `chunks` sets in use.
    pub fn hold_chunks(&self, chunks: usize) {
        hold_chunks(&self.free, self.base, chunks);
    }

    /// The bound on sets in use now.
    pub fn limit(&self) -> usize {
        self.free.limit().unwrap_or(self.base)
    }

    /// The counters (sets in use, peak, waits, sets made).
    pub fn stats(&self) -> PoolStats {
        self.free.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::PoolTimeout;

    fn sets(size: usize, timeout: PoolTimeout) -> (OutputSets, BackendOptions) {
        let opts = BackendOptions {
            output_pool_size: size,
            pool_timeout: timeout,
            ..Default::default()
        };
        (OutputSets::new(&opts, "test output sets", 0), opts)
    }

    /// Takes a set, making it when needed (as a backend pushes it onto its list).
    fn take(s: &OutputSets, made: &mut usize) -> Result<SetLease, BackendError> {
        Ok(match s.take()? {
            SetTake::Idle(l) => l,
            SetTake::New(n) => {
                *made += 1;
                n.made(*made - 1)
            }
        })
    }

    /// Sets are made up to output-pool-size, then reused, lowest index first; one more
    /// waits for a set held downstream and times out naming the sets and the property.
    #[test]
    fn sets_are_made_up_to_the_bound_then_a_call_waits() {
        let (s, _opts) = sets(3, PoolTimeout::After(Duration::from_millis(150)));
        let mut made = 0;
        let held: Vec<_> = (0..3).map(|_| take(&s, &mut made).expect("in bound")).collect();
        assert_eq!(made, 3);
        assert_eq!(
            held.iter().map(SetLease::index).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        let began = std::time::Instant::now();
        let e = take(&s, &mut made).expect_err("a 4th set is refused").to_string();
        assert!(began.elapsed() >= Duration::from_millis(150), "waited first");
        assert!(
            e.contains("all 3 pooled tensors")
                && e.contains("test output sets")
                && e.contains("output-pool-size"),
            "{e}"
        );
        drop(held);
        let again = take(&s, &mut made).expect("one came back");
        assert_eq!(
            (again.index(), made),
            (0, 3),
            "reused, lowest index first, none made"
        );
        assert_eq!(s.stats().peak, 3);
    }

    /// A set coming back (its last device tensor dropped) wakes a waiting call, which gets
    /// that set; a flush of the element ends a wait at once; a failed allocation gives the
    /// permission back.
    #[test]
    fn a_returned_set_or_a_flush_ends_the_wait() {
        let (s, opts) = sets(1, PoolTimeout::Unlimited);
        let s = Arc::new(s);
        let mut made = 0;
        let first = take(&s, &mut made).expect("first");
        let s2 = s.clone();
        let waiter = std::thread::spawn(move || match s2.take() {
            Ok(SetTake::Idle(l)) => Ok(l.index()),
            Ok(SetTake::New(_)) => Err("made a second set".to_string()),
            Err(e) => Err(e.to_string()),
        });
        std::thread::sleep(Duration::from_millis(300));
        assert!(!waiter.is_finished(), "waits for the set held downstream");
        drop(first);
        assert_eq!(waiter.join().expect("no panic"), Ok(0));

        let held = take(&s, &mut made).expect("free again");
        let s2 = s.clone();
        let waiter = std::thread::spawn(move || s2.take().map(drop));
        std::thread::sleep(Duration::from_millis(100));
        opts.pools.set_flushing(true);
        let got = waiter.join().expect("no panic");
        assert!(matches!(got, Err(BackendError::Flushing)), "{got:?}");
        opts.pools.set_flushing(false);
        drop(held);

        // An allocation that failed: the permission goes back, nothing counted as made.
        let (s, _opts) = sets(1, PoolTimeout::After(Duration::from_millis(50)));
        match s.take().expect("room") {
            SetTake::New(n) => drop(n),
            SetTake::Idle(_) => panic!("nothing made yet"),
        }
        assert_eq!((s.stats().out, s.stats().created), (0, 0));
        assert!(matches!(s.take(), Ok(SetTake::New(_))), "room again");
    }

    /// A batch in 3 chunks may hold 3 x output-pool-size sets; the bound never shrinks.
    #[test]
    fn the_bound_grows_with_the_chunks_of_a_batch() {
        let (s, _opts) = sets(2, PoolTimeout::After(Duration::from_millis(50)));
        s.hold_chunks(3);
        assert_eq!(s.limit(), 6);
        let mut made = 0;
        let held: Vec<_> = (0..6)
            .map(|_| take(&s, &mut made).expect("in the grown bound"))
            .collect();
        assert!(take(&s, &mut made).is_err(), "a 7th waits and times out");
        s.hold_chunks(1);
        assert_eq!(s.limit(), 6, "never lowered");
        drop(held);
    }
}
