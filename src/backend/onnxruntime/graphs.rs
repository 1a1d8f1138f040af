//! Device side of fixed-batch runs: staging buffers for inputs that cannot be read past
//! their rows, and the output buffer sets and graph ids of CUDA-graph runs (see
//! [`super::fixed_batch`]).

use std::collections::HashMap;
use std::sync::Arc;

use ort::session::RunOptions;

use crate::cuda::{CudaError, DeviceBuffer, DeviceContext, Stream};
use crate::tensor::DType;

/// Distinct (input addresses, output set) graphs captured before new pairs run without one.
pub const MAX_GRAPHS: usize = 32;
/// Output buffer sets allocated before a run whose sets are all in use gets a set of its
/// own (not kept; run without a graph).
pub const MAX_OUTPUT_SETS: usize = 8;

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
    fn new(ctx: &DeviceContext, layouts: &[OutputLayout]) -> Result<Self, CudaError> {
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
/// fills them.
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
    /// `src` followed by zeros (`src` = 0: zeros only); returns its address. The copy is
    /// complete on return.
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
        let len = if src == 0 { 0 } else { len };
        // SAFETY: forwarded contract; the length is checked against the buffer.
        unsafe { buf.fill_from_device(src, len, &self.stream) }?;
        Ok(buf.ptr())
    }
}

/// Output sets and graph ids of a CUDA-graph session.
pub struct GraphRuns {
    ctx: DeviceContext,
    layouts: Vec<OutputLayout>,
    sets: Vec<Arc<OutputSet>>,
    ids: HashMap<(Vec<u64>, usize), i32>,
    options: HashMap<i32, RunOptions>,
    /// Cleared when a capture failed: every later run goes without a graph.
    pub enabled: bool,
}

/// The output set a run writes into: `pooled` is its index among the kept sets, `None`
/// for a set of its own (all kept sets were in use).
pub struct SetLease {
    pub set: Arc<OutputSet>,
    pub pooled: Option<usize>,
}

impl GraphRuns {
    pub fn new(ctx: &DeviceContext, layouts: Vec<OutputLayout>) -> Self {
        Self {
            ctx: ctx.clone(),
            layouts,
            sets: Vec::new(),
            ids: HashMap::new(),
            options: HashMap::new(),
            enabled: true,
        }
    }

    /// The outputs at the fixed batch.
    pub fn layouts(&self) -> &[OutputLayout] {
        &self.layouts
    }

    /// Graphs captured or being captured.
    pub fn graphs(&self) -> usize {
        self.ids.len()
    }

    /// Output sets kept.
    pub fn sets(&self) -> usize {
        self.sets.len()
    }

    /// A kept set none of whose tensors is alive any more, a new kept set while fewer than
    /// [`MAX_OUTPUT_SETS`] exist, else a set for this run only.
    pub fn acquire_set(&mut self) -> Result<SetLease, CudaError> {
        if let Some(i) = self.sets.iter().position(|s| Arc::strong_count(s) == 1) {
            return Ok(SetLease {
                set: self.sets[i].clone(),
                pooled: Some(i),
            });
        }
        let set = Arc::new(OutputSet::new(&self.ctx, &self.layouts)?);
        if self.sets.len() < MAX_OUTPUT_SETS {
            self.sets.push(set.clone());
            return Ok(SetLease {
                set,
                pooled: Some(self.sets.len() - 1),
            });
        }
        Ok(SetLease { set, pooled: None })
    }

    /// The graph id of a run reading `inputs` and writing set `pooled`: the id captured for
    /// this pair before, a new one while fewer than [`MAX_GRAPHS`] exist, else [`NO_GRAPH`].
    /// The flag says whether the id is new (this run captures it).
    pub fn graph_id(&mut self, inputs: &[u64], pooled: Option<usize>) -> (i32, bool) {
        let Some(set) = pooled.filter(|_| self.enabled) else {
            return (NO_GRAPH, false);
        };
        let key = (inputs.to_vec(), set);
        if let Some(&id) = self.ids.get(&key) {
            return (id, false);
        }
        if self.ids.len() >= MAX_GRAPHS {
            return (NO_GRAPH, false);
        }
        // Ids start at 1: 0 is what ONNX Runtime uses for runs that name none.
        let id = self.ids.len() as i32 + 1;
        self.ids.insert(key, id);
        (id, true)
    }

    /// Run options naming graph `id` (made once per id).
    pub fn run_options(&mut self, id: i32) -> ort::Result<&RunOptions> {
        if let std::collections::hash_map::Entry::Vacant(e) = self.options.entry(id) {
            let mut o = RunOptions::new()?;
            o.set("gpu_graph_id", id.to_string())?;
            e.insert(o);
        }
        Ok(self.options.get(&id).expect("inserted above"))
    }
}
