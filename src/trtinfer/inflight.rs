//! Several inference sessions working on alternate batches, results handed back in order.
//!
//! Each session runs on its own thread with its own runner (for trtinfer: its own
//! [`super::InferContext`], that is its own backend session, CUDA stream, output buffers
//! and CUDA graphs). Job `k` goes to session `k % n`, so batch `k + 1` is submitted while
//! batch `k` is still being inferred, and at most `n` jobs are in flight: a session holds at
//! most one job, and results come back oldest first. Channels are bounded (one slot each)
//! and created once: no allocation per job.

use std::collections::VecDeque;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::context::{InferContext, InferSettings, OperateOn};
use crate::batch::BatchMeta;

/// A session thread that stopped without answering (its runner panicked).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("inference session {0} stopped unexpectedly")]
pub struct SessionLost(pub usize);

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
}

impl<T: Send + 'static, R: Send + 'static> InFlight<T, R> {
    /// Starts one thread per runner, named `{name}-{i}`.
    pub fn new<F>(name: &str, runners: Vec<F>) -> std::io::Result<Self>
    where
        F: FnMut(T) -> R + Send + 'static,
    {
        let n = runners.len();
        let mut sessions = Vec::with_capacity(n);
        for (i, mut run) in runners.into_iter().enumerate() {
            let (job_tx, job_rx) = sync_channel::<T>(1);
            let (res_tx, res_rx) = sync_channel::<R>(1);
            let thread = std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    while let Ok(job) = job_rx.recv() {
                        if res_tx.send(run(job)).is_err() {
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
    /// oldest result and returns it (the caller passes it on before anything newer).
    pub fn submit(&mut self, job: T) -> Result<Option<R>, SessionLost> {
        let done = if self.is_full() { self.wait_oldest()? } else { None };
        let i = self.next;
        let sent = self.sessions[i].jobs.as_ref().map(|tx| tx.send(job));
        if !matches!(sent, Some(Ok(()))) {
            return Err(SessionLost(i));
        }
        self.order.push_back(i);
        self.next = (i + 1) % self.sessions.len();
        Ok(done)
    }

    /// The oldest result if it is already there (never blocks).
    pub fn try_oldest(&mut self) -> Result<Option<R>, SessionLost> {
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
                Err(SessionLost(i))
            }
        }
    }

    /// Waits for the oldest result; `None` when nothing is in flight.
    pub fn wait_oldest(&mut self) -> Result<Option<R>, SessionLost> {
        let Some(i) = self.order.pop_front() else {
            return Ok(None);
        };
        self.sessions[i]
            .results
            .recv()
            .map(Some)
            .map_err(|_| SessionLost(i))
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
    pub result: Result<(), String>,
    pub warning: Option<String>,
    /// Bytes this batch copied from the device to the host.
    pub d2h_bytes: u64,
    /// Time the session took for this batch, ns.
    pub run_ns: u64,
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

    /// Starts one thread per context.
    pub fn start(contexts: Vec<InferContext>) -> std::io::Result<Self> {
        let contexts: Vec<_> = contexts.into_iter().map(|c| Arc::new(Mutex::new(c))).collect();
        let runners = contexts
            .iter()
            .map(|ctx| {
                let ctx = ctx.clone();
                move |buffer: gst::Buffer| run_one(&ctx, buffer)
            })
            .collect();
        Ok(Self {
            flight: InFlight::new("trtinfer-session", runners)?,
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
            Some(mut meta) => ctx.process(meta.batch_mut()).map_err(|e| e.to_string()),
            None => {
                Err("trtinfer received a buffer without batch metadata; it must come after trtmux".into())
            }
        }
    }));
    let result = ran.unwrap_or_else(|_| Err("the inference session panicked".into()));
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
        let mut f = InFlight::new("test", runners).unwrap();
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
        let mut f = InFlight::new("one", vec![|k: u32| k * 2]).unwrap();
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
        let mut f = InFlight::new("panic", runners).unwrap();
        f.submit(0).unwrap();
        f.submit(1).unwrap();
        assert_eq!(f.wait_oldest().unwrap(), Some(0));
        assert_eq!(f.wait_oldest(), Err(SessionLost(1)));
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
        )
        .unwrap();
        f.submit(0).unwrap();
        drop(f);
        assert_eq!(done.load(Ordering::SeqCst), 1);
    }
}
