//! Several inference sessions working on alternate batches, results handed back in order.
//!
//! Each session runs on its own thread with its own runner (for trtinfer: its own
//! [`super::InferContext`], that is its own backend session, CUDA stream, output buffers
//! and CUDA graphs). Job `k` goes to session `k % n`, so batch `k + 1` is submitted while
//! batch `k` is still being inferred, and at most `n` jobs are in flight: a session holds at
//! most one job, and results come back oldest first. Channels are bounded (one slot each)
//! and created once: no allocation per job.
//!
//! Waiting for a result is cut short by a flush or a stop ([`FlightWake::set_flushing`],
//! from any thread, no lock of the caller's taken): the job stays in flight and its result
//! is collected (or dropped) later, so a flush never waits for an inference to end.

use std::collections::VecDeque;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use super::context::{InferContext, InferError, InferSettings, OperateOn};
use crate::backend::BackendError;
use crate::batch::BatchMeta;

/// Why no result came back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlightError {
    /// A session thread stopped without answering (its runner panicked).
    #[error("inference session {0} stopped unexpectedly")]
    Lost(usize),
    /// The wait was cut short by a flush or stop; the job is still in flight.
    #[error("the element is flushing")]
    Flushing,
}

/// What wakes a wait for a session's result: a result coming back, or a flush.
#[derive(Debug, Default)]
pub struct FlightWake {
    flushing: Mutex<bool>,
    changed: Condvar,
}

impl FlightWake {
    fn lock(&self) -> MutexGuard<'_, bool> {
        self.flushing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// While on, waits for results end at once with [`FlightError::Flushing`].
    pub fn set_flushing(&self, on: bool) {
        *self.lock() = on;
        self.changed.notify_all();
    }

    /// Whether waits are being cut short.
    pub fn flushing(&self) -> bool {
        *self.lock()
    }

    fn notify(&self) {
        let _g = self.lock();
        self.changed.notify_all();
    }
}

/// Tells the waiters when a session thread ends (a result sent, or the thread gone).
struct Notify(Arc<FlightWake>);

impl Drop for Notify {
    fn drop(&mut self) {
        self.0.notify();
    }
}

struct Session<T, R> {
    jobs: Option<SyncSender<T>>,
    results: Receiver<R>,
    thread: Option<JoinHandle<()>>,
}

/// Up to `n` jobs in flight over `n` sessions, answered in submission order.
pub struct InFlight<T: Send + 'static, R: Send + 'static> {
    sessions: Vec<Session<T, R>>,
    /// Sessions holding a job, oldest job first.
    order: VecDeque<usize>,
    /// Session of the next job.
    next: usize,
    wake: Arc<FlightWake>,
}

impl<T: Send + 'static, R: Send + 'static> InFlight<T, R> {
    /// Starts one thread per runner, named `{name}-{i}`; `wake` cuts waits short.
    pub fn new<F>(name: &str, runners: Vec<F>, wake: Arc<FlightWake>) -> std::io::Result<Self>
    where
        F: FnMut(T) -> R + Send + 'static,
    {
        let n = runners.len();
        let mut sessions = Vec::with_capacity(n);
        for (i, mut run) in runners.into_iter().enumerate() {
            let (job_tx, job_rx) = sync_channel::<T>(1);
            let (res_tx, res_rx) = sync_channel::<R>(1);
            let wake = wake.clone();
            let thread = std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    // Also when `run` panics: the waiter learns that the session is gone,
                    // after the result channel is closed (locals drop in reverse order).
                    let _ended = Notify(wake.clone());
                    let res_tx = res_tx;
                    while let Ok(job) = job_rx.recv() {
                        let sent = res_tx.send(run(job));
                        wake.notify();
                        if sent.is_err() {
                            break;
                        }
                    }
                })?;
            sessions.push(Session {
                jobs: Some(job_tx),
                results: res_rx,
                thread: Some(thread),
            });
        }
        Ok(Self {
            sessions,
            order: VecDeque::with_capacity(n),
            next: 0,
            wake,
        })
    }

    /// Number of sessions (most jobs in flight).
    pub fn capacity(&self) -> usize {
        self.sessions.len()
    }

    /// Jobs submitted and not yet taken back.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Whether [`Self::submit`] needs a result taken back first.
    pub fn is_full(&self) -> bool {
        self.order.len() >= self.sessions.len()
    }

    /// Hands `job` to the next session; when all sessions are busy, first waits for the
    /// oldest result and returns it (the caller passes it on before anything newer). A
    /// flush during that wait drops `job`.
    pub fn submit(&mut self, job: T) -> Result<Option<R>, FlightError> {
        let done = if self.is_full() { self.wait_oldest()? } else { None };
        let i = self.next;
        let sent = self.sessions[i].jobs.as_ref().map(|tx| tx.send(job));
        if !matches!(sent, Some(Ok(()))) {
            return Err(FlightError::Lost(i));
        }
        self.order.push_back(i);
        self.next = (i + 1) % self.sessions.len();
        Ok(done)
    }

    /// The oldest result if it is already there (never blocks).
    pub fn try_oldest(&mut self) -> Result<Option<R>, FlightError> {
        let Some(&i) = self.order.front() else {
            return Ok(None);
        };
        match self.sessions[i].results.try_recv() {
            Ok(r) => {
                self.order.pop_front();
                Ok(Some(r))
            }
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::Disconnected) => {
                self.order.pop_front();
                Err(FlightError::Lost(i))
            }
        }
    }

    /// Waits for the oldest result; `None` when nothing is in flight. Ends at once with
    /// [`FlightError::Flushing`] while flushing (the job stays in flight).
    pub fn wait_oldest(&mut self) -> Result<Option<R>, FlightError> {
        self.wait(true)
    }

    /// Waits for the oldest result even while flushing (collecting what a flush left in
    /// flight before the stream restarts).
    pub fn collect_oldest(&mut self) -> Result<Option<R>, FlightError> {
        self.wait(false)
    }

    fn wait(&mut self, cut_by_flush: bool) -> Result<Option<R>, FlightError> {
        let wake = self.wake.clone();
        // A session sends its result, then notifies under the lock: checking the channel
        // under the lock before each wait misses no result.
        let mut flushing = wake.lock();
        loop {
            if cut_by_flush && *flushing {
                return Err(FlightError::Flushing);
            }
            if let Some(r) = self.try_oldest()? {
                return Ok(Some(r));
            }
            if self.order.is_empty() {
                return Ok(None);
            }
            flushing = wake.changed.wait(flushing).unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl<T: Send + 'static, R: Send + 'static> Drop for InFlight<T, R> {
    fn drop(&mut self) {
        // Results still in flight are dropped; closing the job channels ends the threads.
        for s in &mut self.sessions {
            s.jobs = None;
        }
        for &i in &self.order {
            let _ = self.sessions[i].results.recv();
        }
        for s in &mut self.sessions {
            if let Some(t) = s.thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// One batch buffer back from a session: the buffer with its results attached, what went
/// wrong, and what the backend worked around (reported once by the element).
pub struct Inferred {
    pub buffer: gst::Buffer,
    pub result: Result<(), BatchFailure>,
    pub warning: Option<String>,
    /// Bytes this batch copied from the device to the host.
    pub d2h_bytes: u64,
    /// Time the session took for this batch, ns.
    pub run_ns: u64,
}

/// Why a batch has no results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchFailure {
    /// A wait for output tensors was cut short by a flush or stop: drop the batch quietly.
    Flushing,
    /// Inference failed: the sentence for the element's error.
    Failed(String),
}

impl From<InferError> for BatchFailure {
    fn from(e: InferError) -> Self {
        match e {
            InferError::Backend(BackendError::Flushing) => BatchFailure::Flushing,
            e => BatchFailure::Failed(e.to_string()),
        }
    }
}

/// `n` inference contexts of one model working on alternate batches (trtinfer `sessions`).
pub struct Sessions {
    flight: InFlight<gst::Buffer, Inferred>,
    /// A result taken back early (all sessions were busy), to be output next.
    pub ready: Option<Inferred>,
    contexts: Vec<Arc<Mutex<InferContext>>>,
}

impl Sessions {
    /// Refuses settings a multi-session trtinfer cannot honour, with the sentence to show.
    pub fn check(s: &InferSettings, n: usize) -> Result<(), String> {
        if s.operate_on == OperateOn::Objects {
            return Err(format!(
                "sessions={n} is for whole-frame models: a secondary trtinfer (operate-on=objects) crops what earlier elements found in each batch and runs one batch at a time; set sessions=1"
            ));
        }
        if s.interval > 0 {
            return Err(format!(
                "sessions={n} cannot be combined with interval={}: skipped batches reuse the results of the previous inferred batch, which another session may not have finished; set interval=0 or sessions=1",
                s.interval
            ));
        }
        Ok(())
    }

    /// Starts one thread per context; `wake` cuts the element's waits short.
    pub fn start(contexts: Vec<InferContext>, wake: Arc<FlightWake>) -> std::io::Result<Self> {
        let contexts: Vec<_> = contexts.into_iter().map(|c| Arc::new(Mutex::new(c))).collect();
        let runners = contexts
            .iter()
            .map(|ctx| {
                let ctx = ctx.clone();
                move |buffer: gst::Buffer| run_one(&ctx, buffer)
            })
            .collect();
        Ok(Self {
            flight: InFlight::new("trtinfer-session", runners, wake)?,
            ready: None,
            contexts,
        })
    }

    pub fn flight(&mut self) -> &mut InFlight<gst::Buffer, Inferred> {
        &mut self.flight
    }

    /// Calls `f` on the first context (they all hold the same model).
    pub fn with_first<T>(&self, f: impl FnOnce(&InferContext) -> T) -> Option<T> {
        let c = self.contexts.first()?.lock().unwrap_or_else(|e| e.into_inner());
        Some(f(&c))
    }

    /// Bytes copied device to host by all sessions.
    pub fn d2h_bytes(&self) -> u64 {
        self.contexts
            .iter()
            .map(|c| c.lock().unwrap_or_else(|e| e.into_inner()).d2h_bytes)
            .sum()
    }
}

/// Runs one batch buffer through `ctx`; a panic becomes an error, never crosses threads.
fn run_one(ctx: &Mutex<InferContext>, mut buffer: gst::Buffer) -> Inferred {
    let mut ctx = ctx.lock().unwrap_or_else(|e| e.into_inner());
    let d2h_before = ctx.d2h_bytes;
    let began = std::time::Instant::now();
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        match buffer.make_mut().meta_mut::<BatchMeta>() {
            Some(mut meta) => ctx.process(meta.batch_mut()).map_err(BatchFailure::from),
            None => Err(BatchFailure::Failed(
                "trtinfer received a buffer without batch metadata; it must come after trtmux".into(),
            )),
        }
    }));
    let result = ran.unwrap_or_else(|_| Err(BatchFailure::Failed("the inference session panicked".into())));
    let run_ns = began.elapsed().as_nanos() as u64;
    Inferred {
        run_ns,
        buffer,
        result,
        warning: ctx.take_backend_warning(),
        d2h_bytes: ctx.d2h_bytes.saturating_sub(d2h_before),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    /// Sessions sleeping longer for lower job numbers: results must still come back in
    /// submission order, and several jobs must have run at once.
    #[test]
    fn results_in_order_with_jobs_overlapping() {
        let busy = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let runners: Vec<_> = (0..3)
            .map(|s| {
                let (busy, peak) = (busy.clone(), peak.clone());
                move |k: u32| {
                    let now = busy.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(u64::from(20 - k % 20)));
                    busy.fetch_sub(1, Ordering::SeqCst);
                    (s, k)
                }
            })
            .collect();
        let mut f = InFlight::new("test", runners, Default::default()).unwrap();
        let mut got = Vec::new();
        for k in 0..20u32 {
            assert!(f.len() <= 3);
            if let Some(r) = f.submit(k).unwrap() {
                got.push(r);
            }
            while let Some(r) = f.try_oldest().unwrap() {
                got.push(r);
            }
        }
        while let Some(r) = f.wait_oldest().unwrap() {
            got.push(r);
        }
        assert_eq!(
            got.iter().map(|r| r.1).collect::<Vec<_>>(),
            (0..20).collect::<Vec<_>>()
        );
        // Alternate batches: job k ran on session k % 3.
        assert!(got.iter().all(|&(s, k)| s == k as usize % 3));
        assert!(peak.load(Ordering::SeqCst) >= 2, "jobs never overlapped");
    }

    #[test]
    fn one_session_is_sequential() {
        let mut f = InFlight::new("one", vec![|k: u32| k * 2], Default::default()).unwrap();
        assert_eq!(f.submit(1).unwrap(), None);
        assert!(f.is_full());
        assert_eq!(f.submit(2).unwrap(), Some(2));
        assert_eq!(f.wait_oldest().unwrap(), Some(4));
        assert_eq!(f.wait_oldest().unwrap(), None);
    }

    #[test]
    fn panicking_session_is_reported_not_propagated() {
        let runners: Vec<Box<dyn FnMut(u32) -> u32 + Send>> = vec![
            Box::new(|k| k),
            Box::new(|_| panic!("session failure under test")),
        ];
        let mut f = InFlight::new("panic", runners, Default::default()).unwrap();
        f.submit(0).unwrap();
        f.submit(1).unwrap();
        assert_eq!(f.wait_oldest().unwrap(), Some(0));
        assert_eq!(f.wait_oldest(), Err(FlightError::Lost(1)));
    }

    #[test]
    fn dropping_with_jobs_in_flight_joins_the_threads() {
        let done = Arc::new(AtomicUsize::new(0));
        let d = done.clone();
        let mut f = InFlight::new(
            "drop",
            vec![move |_: u32| {
                std::thread::sleep(Duration::from_millis(30));
                d.fetch_add(1, Ordering::SeqCst);
            }],
            Default::default(),
        )
        .unwrap();
        f.submit(0).unwrap();
        drop(f);
        assert_eq!(done.load(Ordering::SeqCst), 1);
    }

    /// A session busy for seconds (a slow model, or a backend waiting for its outputs):
    /// a flush ends the wait of the streaming thread at once, the job stays in flight and
    /// its result is collected after the flush, in order.
    #[test]
    fn a_flush_cuts_the_wait_short_and_the_result_is_collected_later() {
        let wake = Arc::new(FlightWake::default());
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let release_rx = Mutex::new(release_rx);
        let mut f = InFlight::new(
            "flush",
            vec![move |k: u32| {
                // Job 0 runs until the test releases it (at most 20 s).
                if k == 0 {
                    let _ = release_rx.lock().unwrap().recv_timeout(Duration::from_secs(20));
                }
                k
            }],
            wake.clone(),
        )
        .unwrap();
        assert_eq!(f.submit(0).unwrap(), None);
        let flusher = {
            let wake = wake.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(200));
                wake.set_flushing(true);
            })
        };
        let began = std::time::Instant::now();
        // All sessions busy: submit waits for job 0, until the flush.
        assert_eq!(f.submit(1), Err(FlightError::Flushing));
        let waited = began.elapsed();
        assert!(
            waited >= Duration::from_millis(150) && waited < Duration::from_secs(5),
            "{waited:?}"
        );
        flusher.join().unwrap();
        assert_eq!(f.len(), 1, "job 0 still in flight, job 1 dropped");
        assert_eq!(
            f.wait_oldest(),
            Err(FlightError::Flushing),
            "no wait while flushing"
        );
        // After the flush: job 0's result is collected (the session was never abandoned).
        release_tx.send(()).unwrap();
        assert_eq!(f.collect_oldest().unwrap(), Some(0));
        wake.set_flushing(false);
        assert_eq!(f.submit(2).unwrap(), None);
        assert_eq!(f.wait_oldest().unwrap(), Some(2));
    }

    /// A session that panics while the streaming thread waits for it: the wait ends with
    /// the session lost, never hangs.
    #[test]
    fn a_session_dying_during_a_wait_ends_it() {
        let mut f = InFlight::new(
            "die",
            vec![|_: u32| -> u32 {
                std::thread::sleep(Duration::from_millis(100));
                panic!("session failure under test")
            }],
            Default::default(),
        )
        .unwrap();
        f.submit(0).unwrap();
        assert_eq!(f.wait_oldest(), Err(FlightError::Lost(0)));
    }
}
