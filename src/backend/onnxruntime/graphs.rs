//! Device side of fixed-batch runs: staging buffers for inputs that cannot be read past
//! their rows, and the CUDA graphs of a session captured at start (see
//! [`super::fixed_batch`]).
//!
//! ONNX Runtime captures a graph on a stream in CUDA's global capture mode: while it
//! captures, any other thread of the process that makes a call CUDA deems unsafe during a
//! capture (allocations, synchronous copies, the legacy stream) fails, and so does the
//! capture. So the graphs are captured when the session is opened, before the pipeline
//! moves data, one per output set, all reading the same staging input buffers; a run copies
//! its inputs into those buffers (a device-to-device copy on the session's stream) and
//! replays the graph of a free output set. ONNX Runtime keeps the graphs of each thread
//! apart, so every call into a graph session is made on one worker thread ([`Worker`]).
//!
//! An output set is in use until the last device tensor pointing into it is dropped. At
//! most `output-pool-size` sets (times the chunks of a batch) are in use at once
//! ([`OutputSets`]): while every set with a graph is held downstream, a run writes into a
//! set made for it without a graph (kept, with its binding, for later runs), and once the
//! bound is reached the next run waits for a set to come back (bounded by `pool-timeout`,
//! ended by a flush or stop of the element).

use std::sync::mpsc;
use std::sync::Arc;

use ort::session::{IoBinding, RunOptions, SessionInputValue};

use crate::backend::output_sets::{NewSet, OutputSets, SetLease};
use crate::cuda::{CudaError, DeviceBuffer, DeviceContext, Stream};
use crate::tensor::DType;

/// Output buffer sets with a captured graph each (fewer when `output-pool-size` is
/// smaller). A run that finds all of them in use writes into another set without a graph.
pub const GRAPH_SETS: usize = 4;

/// What a wait for an output set that timed out names.
pub const SETS_HELD: &str = "ONNX Runtime CUDA-graph output sets held by device output tensors";

/// Graph id that makes ONNX Runtime run without capturing or replaying a graph.
pub const NO_GRAPH: i32 = -1;

/// One output at the fixed batch, as the warm-up run produced it.
#[derive(Debug, Clone)]
pub struct OutputLayout {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub bytes: usize,
}

/// Device buffers for every output of one run; alive while any tensor handed out from
/// it is.
#[derive(Debug)]
pub struct OutputSet {
    buffers: Vec<DeviceBuffer>,
}

impl OutputSet {
    pub fn new(ctx: &DeviceContext, layouts: &[OutputLayout]) -> Result<Self, CudaError> {
        let buffers = layouts
            .iter()
            .map(|l| DeviceBuffer::new(ctx, l.bytes))
            .collect::<Result<_, _>>()?;
        Ok(Self { buffers })
    }

    /// Device address of output `i`.
    pub fn ptr(&self, i: usize) -> u64 {
        self.buffers[i].ptr()
    }
}

/// Staging buffers (one per model input, made when first needed) and the stream that
/// fills them, for padded runs without graphs.
pub struct Staging {
    ctx: DeviceContext,
    stream: Stream,
    buffers: Vec<Option<DeviceBuffer>>,
}

impl Staging {
    pub fn new(ctx: &DeviceContext, inputs: usize) -> Result<Self, CudaError> {
        Ok(Self {
            ctx: ctx.clone(),
            stream: Stream::new(ctx)?,
            buffers: (0..inputs).map(|_| None).collect(),
        })
    }

    /// Input `i`'s staging buffer of `bytes` holding the `len` bytes at device address
    /// `src` followed by zeros; returns its address. The copy is complete on return.
    ///
    /// # Safety
    /// `src` must be `len` readable bytes of device memory of this context, not being
    /// written by pending work.
    pub unsafe fn fill(&mut self, i: usize, bytes: usize, src: u64, len: usize) -> Result<u64, CudaError> {
        let slot = self
            .buffers
            .get_mut(i)
            .ok_or_else(|| CudaError::InvalidInput(format!("no model input {i}")))?;
        if slot.as_ref().is_none_or(|b| b.len() != bytes) {
            *slot = Some(DeviceBuffer::new(&self.ctx, bytes)?);
        }
        let buf = slot.as_ref().expect("made above");
        // SAFETY: forwarded contract; the length is checked against the buffer.
        unsafe { buf.fill_from_device(src, len, &self.stream) }?;
        Ok(buf.ptr())
    }
}

/// The graphs of a session: its stream, the staging inputs every graph reads, and the
/// output sets they write.
pub struct GraphRuns {
    ctx: DeviceContext,
    /// The session's compute stream (ONNX Runtime's `user_compute_stream`).
    stream: Arc<Stream>,
    /// Per model input: the buffer at the fixed batch the graphs read.
    inputs: Vec<DeviceBuffer>,
    layouts: Vec<OutputLayout>,
    /// Set `k` is written by graph `k + 1` for `k` below `options.len()`; the sets after
    /// those run without a graph.
    sets: Vec<Arc<OutputSet>>,
    /// Which sets are in use (held by a run or by its device output tensors).
    free: OutputSets,
    options: Vec<RunOptions>,
    /// Per set: the binding its graph was captured with, or it runs with (staging inputs,
    /// the set's outputs), left as it is.
    bindings: Vec<SetBinding>,
    no_graph: RunOptions,
    /// Cleared when a graph failed: later runs go without one.
    pub enabled: bool,
}

/// The output set a run writes into, held (with the set's lease) by the run and then by
/// the device tensors it hands out.
pub struct SetHold {
    pub set: Arc<OutputSet>,
    _lease: SetLease,
}

/// The output set of a run: its index and the graph id the run uses.
pub struct SetInUse {
    pub hold: Arc<SetHold>,
    pub index: usize,
    pub graph: i32,
}

/// What [`GraphRuns::take_set`] hands out.
pub enum NextSet {
    /// A set with its binding.
    Ready(SetInUse),
    /// None free: make one ([`GraphRuns::new_set`]), bind it and [`GraphRuns::add_set`].
    Make(NewSet),
}

/// A binding and the values it holds (fields drop in order: the binding first).
pub struct SetBinding {
    binding: IoBinding,
    _bound: Vec<SessionInputValue<'static>>,
}

impl SetBinding {
    pub fn new(binding: IoBinding, bound: Vec<SessionInputValue<'static>>) -> Self {
        Self {
            binding,
            _bound: bound,
        }
    }
}

impl GraphRuns {
    /// The state of a session whose compute stream is `stream`, reading `inputs`, its sets
    /// in use counted by `free` (none made yet: [`Self::make_sets`]).
    pub fn new(
        ctx: &DeviceContext,
        stream: Arc<Stream>,
        inputs: Vec<DeviceBuffer>,
        free: OutputSets,
    ) -> Result<Self, String> {
        let mut no_graph = RunOptions::new().map_err(|e| e.to_string())?;
        no_graph
            .set("gpu_graph_id", NO_GRAPH.to_string())
            .map_err(|e| e.to_string())?;
        Ok(Self {
            ctx: ctx.clone(),
            stream,
            inputs,
            layouts: Vec::new(),
            sets: Vec::new(),
            free,
            options: Vec::new(),
            bindings: Vec::new(),
            no_graph,
            enabled: true,
        })
    }

    /// [`GRAPH_SETS`] output sets (at most the bound on sets in use) laid out as `layouts`,
    /// and the run options of their graphs.
    pub fn make_sets(&mut self, layouts: Vec<OutputLayout>) -> Result<(), String> {
        self.layouts = layouts;
        self.sets.clear();
        self.options.clear();
        let mut made = Vec::new();
        for k in 0..GRAPH_SETS.min(self.free.limit()) {
            let crate::backend::output_sets::SetTake::New(new) =
                self.free.take().map_err(|e| e.to_string())?
            else {
                return Err("output sets in use before any was made".into());
            };
            self.sets.push(Arc::new(
                OutputSet::new(&self.ctx, &self.layouts).map_err(|e| e.to_string())?,
            ));
            made.push(new.made(k));
            let mut o = RunOptions::new().map_err(|e| e.to_string())?;
            o.set("gpu_graph_id", (k + 1).to_string())
                .map_err(|e| e.to_string())?;
            self.options.push(o);
        }
        // Free for the first runs.
        drop(made);
        Ok(())
    }

    /// The outputs at the fixed batch.
    pub fn layouts(&self) -> &[OutputLayout] {
        &self.layouts
    }

    /// Address of input `i`'s staging buffer.
    pub fn input_ptr(&self, i: usize) -> u64 {
        self.inputs[i].ptr()
    }

    /// The sets with a graph each (set `k`: graph `k + 1`), for the captures at start.
    pub fn captured_sets(&self) -> impl Iterator<Item = Arc<OutputSet>> + '_ {
        self.sets.iter().cloned()
    }

    /// The bindings of the kept sets, in set order (made when their graphs are captured).
    pub fn set_bindings(&mut self, bindings: Vec<SetBinding>) {
        self.bindings = bindings;
    }

    /// The binding of set `k`.
    pub fn binding(&self, k: usize) -> &IoBinding {
        &self.bindings[k].binding
    }

    /// Run options without a graph.
    pub fn no_graph(&self) -> &RunOptions {
        &self.no_graph
    }

    /// Run options of `graph` ([`NO_GRAPH`] or a set's).
    pub fn options(&self, graph: i32) -> &RunOptions {
        match usize::try_from(graph - 1).ok().and_then(|k| self.options.get(k)) {
            Some(o) => o,
            None => &self.no_graph,
        }
    }

    /// A free set with its binding and graph (the lowest free index: sets with a graph
    /// first; no graph once graphs are off), else permission to make one while fewer than
    /// the bound are in use, else waits for one to come back (see [`OutputSets::take`]).
    pub fn take_set(&self) -> Result<NextSet, crate::backend::BackendError> {
        Ok(match self.free.take()? {
            crate::backend::output_sets::SetTake::Idle(lease) => NextSet::Ready(self.in_use(lease)),
            crate::backend::output_sets::SetTake::New(new) => NextSet::Make(new),
        })
    }

    /// A new output set laid out as the outputs, to be bound and added.
    pub fn new_set(&self) -> Result<Arc<OutputSet>, CudaError> {
        Ok(Arc::new(OutputSet::new(&self.ctx, &self.layouts)?))
    }

    /// Adds `set` (bound by `binding`) as the next set, in use by the caller; it runs
    /// without a graph.
    pub fn add_set(&mut self, new: NewSet, set: Arc<OutputSet>, binding: SetBinding) -> SetInUse {
        self.sets.push(set);
        self.bindings.push(binding);
        let lease = new.made(self.sets.len() - 1);
        self.in_use(lease)
    }

    fn in_use(&self, lease: SetLease) -> SetInUse {
        let index = lease.index();
        let graph = if self.enabled && index < self.options.len() {
            index as i32 + 1
        } else {
            NO_GRAPH
        };
        SetInUse {
            hold: Arc::new(SetHold {
                set: self.sets[index].clone(),
                _lease: lease,
            }),
            index,
            graph,
        }
    }

    /// Sets made so far (with a graph or not).
    pub fn made(&self) -> usize {
        self.sets.len()
    }

    /// A batch runs in `chunks` chunks: up to `output-pool-size` x `chunks` sets in use.
    pub fn hold_chunks(&self, chunks: usize) {
        self.free.hold_chunks(chunks);
    }

    /// Queues on the session's stream the copy of `len` bytes at `src` (device memory when
    /// `device`, else host memory) into input `i`'s staging buffer; the run that follows on
    /// the same stream reads them.
    ///
    /// # Safety
    /// `src` must be `len` readable bytes that stay unchanged until the stream has run the
    /// copy (the run's end synchronises it).
    pub unsafe fn stage_input(&self, i: usize, src: u64, len: usize, device: bool) -> Result<(), CudaError> {
        let dst = self
            .inputs
            .get(i)
            .ok_or_else(|| CudaError::InvalidInput(format!("no model input {i}")))?;
        // SAFETY: forwarded contract; the destination is checked by the callee.
        unsafe { dst.copy_on(src, len, device, &self.stream) }
    }

    /// Ends a capture a failed run left open on the session's stream (ONNX Runtime stops
    /// at the first error without ending it), so that later runs can use the stream.
    /// Returns whether one was open.
    pub fn end_broken_capture(&self) -> bool {
        self.stream.end_capture()
    }
}

/// One thread making every call into a session whose graphs ONNX Runtime keeps per
/// thread. A call blocks its caller until it has run.
pub struct Worker {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

type Job = Box<dyn FnOnce() + Send + 'static>;

impl Worker {
    pub fn new() -> Result<Self, String> {
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("trtv-ort-graphs".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    job();
                }
            })
            .map_err(|e| format!("cannot start the inference thread: {e}"))?;
        Ok(Self {
            jobs: Some(tx),
            thread: Some(thread),
        })
    }

    /// Runs `f` on the worker thread and returns its result; `None` when it panicked or
    /// the worker is gone.
    pub fn call<R: Send>(&self, f: impl FnOnce() -> R + Send) -> Option<R> {
        let (tx, rx) = mpsc::sync_channel::<std::thread::Result<R>>(1);
        let job: Box<dyn FnOnce() + Send + '_> = Box::new(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            let _ = tx.send(r);
        });
        // SAFETY: the job borrows from this frame (through `f`); this call does not return
        // before the job has run to its end (the reply below is sent as its last act, or
        // the job is dropped unrun when the channel is closed, which also ends `recv`), so
        // nothing it borrows is used after the borrow ends.
        let job: Job = unsafe { std::mem::transmute::<Box<dyn FnOnce() + Send + '_>, Job>(job) };
        self.jobs.as_ref()?.send(job).ok()?;
        rx.recv().ok()?.ok()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
