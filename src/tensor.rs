//! Tensors exchanged between trtpreprocess, trtinfer and the output parsers.
//!
//! A tensor is a typed, shaped view over bytes that live either in host memory (the CPU
//! path, always available) or in device memory (the CUDA path). Host storage comes from a
//! [`HostTensorPool`] so that the hot path reuses buffers instead of allocating per batch.

use std::sync::Arc;

/// Element type of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    F32,
    F16,
    U8,
    I32,
    I64,
}

impl DType {
    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F16 => 2,
            DType::U8 => 1,
            DType::I64 => 8,
        }
    }

    /// Name used in caps, configs and JSON.
    pub const fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::U8 => "u8",
            DType::I32 => "i32",
            DType::I64 => "i64",
        }
    }

    /// Parses `f32`, `f16`/`fp16`, `u8`, `i32`, `i64`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float" | "float32" => DType::F32,
            "f16" | "fp16" | "half" | "float16" => DType::F16,
            "u8" | "uint8" => DType::U8,
            "i32" | "int32" => DType::I32,
            "i64" | "int64" => DType::I64,
            _ => return None,
        })
    }
}

/// Number of elements of a shape.
pub fn element_count(shape: &[usize]) -> usize {
    shape.iter().product()
}

pub mod pool;

use pool::{BoundedPool, PoolWaitError, Taken};

/// A recycled host byte buffer: returns to its pool when dropped.
#[derive(Debug)]
pub struct PooledBytes {
    bytes: Vec<u8>,
    home: Option<Arc<BoundedPool<Vec<u8>>>>,
}

/// Most idle buffers a [`HostTensorPool`] keeps: buffers returned beyond it are freed, so a
/// long queue that held many tensors once does not pin their memory after it drains.
pub const MAX_IDLE_HOST_BUFFERS: usize = 8;

impl PooledBytes {
    /// A buffer that belongs to no pool (tests, one-off tensors).
    pub fn detached(bytes: Vec<u8>) -> Self {
        Self { bytes, home: None }
    }
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes
    }
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.bytes
    }
}

impl Drop for PooledBytes {
    fn drop(&mut self) {
        if let Some(home) = self.home.take() {
            home.put(std::mem::take(&mut self.bytes));
        }
    }
}

/// Pool of host buffers of one size class. Buffers are allocated on first use and then
/// reused: after warm-up a pipeline allocates no tensor memory per batch. At most
/// [`MAX_IDLE_HOST_BUFFERS`] wait for reuse, and when no idle buffer is large enough for a
/// request (the shapes grew) the idle ones are released instead of kept.
///
/// A bounded pool ([`HostTensorPool::bounded`]) hands out at most `limit` buffers at once:
/// [`HostTensorPool::try_acquire`] waits for one to come back (see [`pool::BoundedPool`]).
#[derive(Debug, Clone)]
pub struct HostTensorPool {
    free: Arc<BoundedPool<Vec<u8>>>,
    timeout: Option<std::time::Duration>,
}

impl Default for HostTensorPool {
    fn default() -> Self {
        Self {
            free: Arc::new(BoundedPool::new(None, MAX_IDLE_HOST_BUFFERS)),
            timeout: None,
        }
    }
}

/// The smallest idle buffer that holds `len` (several sizes may share a pool); when none
/// does, the shapes grew and the smaller idle buffers are of older shapes: they are freed.
fn best_fit(idle: &mut Vec<Vec<u8>>, len: usize) -> Option<Vec<u8>> {
    let best = idle
        .iter()
        .enumerate()
        .filter(|(_, b)| b.capacity() >= len)
        .min_by_key(|(_, b)| b.capacity())
        .map(|(i, _)| i);
    match best {
        Some(i) => Some(idle.swap_remove(i)),
        None => {
            idle.clear();
            None
        }
    }
}

impl HostTensorPool {
    /// A pool without a bound: `acquire` never waits.
    pub fn new() -> Self {
        Self::default()
    }

    /// A pool of at most `limit` buffers out at once; `try_acquire` waits up to `timeout`
    /// (`None`: until a buffer comes back or the pool flushes) when all are out.
    pub fn bounded(limit: usize, timeout: Option<std::time::Duration>) -> Self {
        Self {
            free: Arc::new(BoundedPool::new(Some(limit), MAX_IDLE_HOST_BUFFERS.max(limit))),
            timeout,
        }
    }

    /// The wait behind this pool (flushing, timing, counters).
    pub fn control(&self) -> Arc<BoundedPool<Vec<u8>>> {
        self.free.clone()
    }

    /// A buffer of exactly `len` bytes; its content is unspecified. Waits while a bounded
    /// pool has all its buffers out (see [`HostTensorPool::bounded`]).
    pub fn try_acquire(&self, len: usize) -> Result<PooledBytes, PoolWaitError> {
        let mut bytes = match self.free.take(self.timeout, |idle| best_fit(idle, len))? {
            Taken::Idle(b) => b,
            Taken::New => Vec::new(),
        };
        bytes.resize(len, 0);
        Ok(PooledBytes {
            bytes,
            home: Some(self.free.clone()),
        })
    }

    /// A buffer of exactly `len` bytes from a pool without a bound (never waits). On a
    /// bounded pool that times out or flushes, a buffer outside the pool.
    pub fn acquire(&self, len: usize) -> PooledBytes {
        self.try_acquire(len)
            .unwrap_or_else(|_| PooledBytes::detached(vec![0; len]))
    }

    /// Buffers currently waiting for reuse.
    pub fn idle(&self) -> usize {
        self.free.idle()
    }
}

/// Where a tensor's bytes live.
#[derive(Debug, Clone)]
pub enum TensorStorage {
    /// Host memory, shared read-only once attached to a batch.
    Host(Arc<PooledBytes>),
    /// Device memory owned elsewhere (a pool of the CUDA path): pointer and byte length.
    /// The owner keeps it alive as long as the `keepalive` handle exists.
    Device {
        ptr: u64,
        len: usize,
        keepalive: Arc<dyn std::any::Any + Send + Sync>,
    },
}

impl TensorStorage {
    /// Device memory at `ptr` (`len` bytes) kept alive by `owner`.
    pub fn device(ptr: u64, len: usize, owner: impl std::any::Any + Send + Sync) -> Self {
        TensorStorage::Device {
            ptr,
            len,
            keepalive: Arc::new(owner),
        }
    }
}

/// A named, typed, shaped tensor.
#[derive(Debug, Clone)]
pub struct Tensor {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub storage: TensorStorage,
}

impl Tensor {
    /// A tensor with this one's name, type and shape in `storage` (e.g. its device copy).
    pub fn with_storage(&self, storage: TensorStorage) -> Tensor {
        Tensor {
            name: self.name.clone(),
            dtype: self.dtype,
            shape: self.shape.clone(),
            storage,
        }
    }

    /// Rows `range` of dimension 0: a view of the same device memory, or a copy of the
    /// host bytes into a buffer of `pool`. `None` when the range is outside the tensor.
    pub fn rows(&self, range: std::ops::Range<usize>, pool: &HostTensorPool) -> Option<Tensor> {
        let total = *self.shape.first()?;
        if range.start >= range.end || range.end > total {
            return None;
        }
        let row_len = element_count(&self.shape[1..]) * self.dtype.size();
        let (offset, len) = (range.start * row_len, range.len() * row_len);
        let storage = match &self.storage {
            TensorStorage::Host(bytes) => {
                let src = bytes.as_slice().get(offset..offset + len)?;
                let mut copy = pool.acquire(len);
                copy.as_mut_slice().copy_from_slice(src);
                TensorStorage::Host(Arc::new(copy))
            }
            TensorStorage::Device {
                ptr,
                len: total_len,
                keepalive,
            } => {
                if offset + len > *total_len {
                    return None;
                }
                TensorStorage::Device {
                    ptr: ptr + offset as u64,
                    len,
                    keepalive: keepalive.clone(),
                }
            }
        };
        let mut shape = self.shape.clone();
        shape[0] = range.len();
        Some(self.with_storage(storage).with_shape(shape))
    }

    fn with_shape(mut self, shape: Vec<usize>) -> Tensor {
        self.shape = shape;
        self
    }

    /// A host tensor from raw bytes (length must match shape and dtype).
    pub fn host(name: impl Into<String>, dtype: DType, shape: Vec<usize>, bytes: PooledBytes) -> Self {
        debug_assert_eq!(bytes.as_slice().len(), element_count(&shape) * dtype.size());
        Tensor {
            name: name.into(),
            dtype,
            shape,
            storage: TensorStorage::Host(Arc::new(bytes)),
        }
    }

    /// A host f32 tensor from values.
    pub fn from_f32(name: impl Into<String>, shape: Vec<usize>, values: &[f32]) -> Self {
        let mut bytes = Vec::with_capacity(values.len() * 4);
        for v in values {
            bytes.extend_from_slice(&v.to_ne_bytes());
        }
        Self::host(name, DType::F32, shape, PooledBytes::detached(bytes))
    }

    pub fn len_bytes(&self) -> usize {
        element_count(&self.shape) * self.dtype.size()
    }

    /// Host bytes, or `None` when the tensor lives on the device.
    pub fn host_bytes(&self) -> Option<&[u8]> {
        match &self.storage {
            TensorStorage::Host(b) => Some(b.as_slice()),
            TensorStorage::Device { .. } => None,
        }
    }

    /// Values converted to f32 (host tensors of f32 or f16 only).
    pub fn to_f32(&self) -> Option<Vec<f32>> {
        let bytes = self.host_bytes()?;
        match self.dtype {
            DType::F32 => Some(
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            DType::F16 => Some(
                bytes
                    .chunks_exact(2)
                    .map(|c| half::f16::from_ne_bytes([c[0], c[1]]).to_f32())
                    .collect(),
            ),
            _ => None,
        }
    }

    /// f32 values of a host f32/f16 tensor: borrowed when the bytes are aligned f32,
    /// converted otherwise; `None` on the device or for other element types.
    pub fn f32_values(&self) -> Option<std::borrow::Cow<'_, [f32]>> {
        match self.as_f32() {
            Some(v) => Some(std::borrow::Cow::Borrowed(v)),
            None => self.to_f32().map(std::borrow::Cow::Owned),
        }
    }

    /// Borrowed f32 view without copying, for f32 host tensors whose bytes are aligned.
    pub fn as_f32(&self) -> Option<&[f32]> {
        if self.dtype != DType::F32 {
            return None;
        }
        let bytes = self.host_bytes()?;
        // SAFETY: f32 has no invalid bit patterns; align_to only yields the aligned middle.
        let (pre, mid, post) = unsafe { bytes.align_to::<f32>() };
        (pre.is_empty() && post.is_empty()).then_some(mid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_buffers_are_capped_and_outgrown_ones_released() {
        let pool = HostTensorPool::new();
        let held: Vec<PooledBytes> = (0..3 * MAX_IDLE_HOST_BUFFERS).map(|_| pool.acquire(64)).collect();
        assert_eq!(pool.idle(), 0);
        drop(held);
        assert_eq!(pool.idle(), MAX_IDLE_HOST_BUFFERS, "the rest is freed");
        // The shape grew: the small idle buffers go, one new buffer serves.
        let big = pool.acquire(4096);
        assert_eq!(pool.idle(), 0);
        drop(big);
        assert_eq!(pool.idle(), 1);
        // A smaller shape reuses the big buffer.
        let small = pool.acquire(16);
        assert_eq!(small.as_slice().len(), 16);
        assert_eq!(pool.idle(), 0);
    }

    #[test]
    fn rows_view_device_memory_and_copy_host_memory() {
        let values: Vec<f32> = (0..24).map(|v| v as f32).collect();
        let t = Tensor::from_f32("x", vec![4, 2, 3], &values);
        let pool = HostTensorPool::new();
        let mid = t.rows(1..3, &pool).expect("rows 1..3");
        assert_eq!(mid.shape, vec![2, 2, 3]);
        assert_eq!(mid.as_f32().unwrap(), &values[6..18]);
        assert!(t.rows(3..5, &pool).is_none(), "past the end");
        assert!(t.rows(2..2, &pool).is_none(), "empty");
        let dev = t.with_storage(TensorStorage::device(0x1000, 96, ()));
        let last = dev.rows(3..4, &pool).expect("row 3");
        match last.storage {
            TensorStorage::Device { ptr, len, .. } => assert_eq!((ptr, len), (0x1000 + 72, 24)),
            TensorStorage::Host(_) => panic!("a device view"),
        }
    }

    #[test]
    fn bounded_pool_waits_for_a_buffer_and_never_makes_more() {
        use std::time::{Duration, Instant};
        let pool = HostTensorPool::bounded(2, Some(Duration::from_secs(10)));
        let a = pool.try_acquire(64).expect("first");
        let b = pool.try_acquire(64).expect("second");
        let p2 = pool.clone();
        let waiter = std::thread::spawn(move || p2.try_acquire(64).map(|x| x.as_slice().len()));
        std::thread::sleep(Duration::from_millis(100));
        assert!(!waiter.is_finished(), "a third buffer waits");
        drop(a);
        assert_eq!(waiter.join().expect("no panic"), Ok(64));
        let stats = pool.control().stats();
        assert_eq!((stats.peak, stats.created, stats.waits), (2, 2, 1));
        let start = Instant::now();
        let short = HostTensorPool::bounded(1, Some(Duration::from_millis(50)));
        let _held = short.try_acquire(8).expect("one");
        assert!(short.try_acquire(8).is_err(), "times out");
        assert!(start.elapsed() < Duration::from_secs(5));
        drop(b);
    }

    #[test]
    fn pool_reuses_buffers() {
        let pool = HostTensorPool::new();
        let a = pool.acquire(1024);
        let ptr = a.as_slice().as_ptr();
        drop(a);
        assert_eq!(pool.idle(), 1);
        let b = pool.acquire(512);
        assert_eq!(b.as_slice().as_ptr(), ptr);
        assert_eq!(b.as_slice().len(), 512);
    }

    #[test]
    fn f16_roundtrip() {
        let vals = [0.5f32, -1.25, 3.0];
        let mut bytes = Vec::new();
        for v in vals {
            bytes.extend_from_slice(&half::f16::from_f32(v).to_ne_bytes());
        }
        let t = Tensor::host("x", DType::F16, vec![3], PooledBytes::detached(bytes));
        assert_eq!(t.to_f32().unwrap(), vals);
        assert!(t.as_f32().is_none());
    }
}
