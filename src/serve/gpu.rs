//! GPU memory for `GET /metrics`, read through NVML (`libnvidia-ml.so.1`, part of the NVIDIA
//! driver, loaded at run time by the `nvml-wrapper` crate). Without NVML (no driver, a CPU
//! machine) there are no GPU series: the service says so once in its log and carries on.

/// Memory of one GPU at the time of a scrape.
#[derive(Clone, Debug, PartialEq)]
pub struct GpuSample {
    /// NVML device index.
    pub index: u32,
    /// Product name, e.g. "NVIDIA H100 80GB HBM3".
    pub name: String,
    /// Device memory in use by all processes (total − free, as NVML counts it: memory the
    /// driver reserves is included), bytes.
    pub used_bytes: u64,
    pub total_bytes: u64,
    /// Memory this process holds on the GPU, when NVML lists the process (it does not, for
    /// example, inside a container whose PID namespace differs from the driver's); `None`
    /// means unknown, never zero.
    pub process_bytes: Option<u64>,
}

/// An open NVML handle.
pub struct GpuMemory {
    nvml: nvml_wrapper::Nvml,
}

impl GpuMemory {
    /// NVML, or the reason it is not there.
    pub fn open() -> Result<Self, String> {
        // The driver installs libnvidia-ml.so.1; the unversioned name only comes with
        // development packages.
        let mut why = String::new();
        for lib in ["libnvidia-ml.so.1", "libnvidia-ml.so"] {
            match nvml_wrapper::Nvml::builder()
                .lib_path(std::ffi::OsStr::new(lib))
                .init()
            {
                Ok(nvml) => return Ok(Self { nvml }),
                Err(nvml_wrapper::error::NvmlError::LibloadingError(_)) => {
                    why = "libnvidia-ml.so.1 (NVML, part of the NVIDIA driver) cannot be loaded".into();
                }
                Err(e) => return Err(format!("NVML does not start ({e})")),
            }
        }
        Err(why)
    }

    /// The number of GPUs NVML sees.
    pub fn device_count(&self) -> u32 {
        self.nvml.device_count().unwrap_or(0)
    }

    /// Memory of every GPU NVML sees; a GPU whose memory cannot be read is left out.
    pub fn sample(&self) -> Vec<GpuSample> {
        let pid = std::process::id();
        let count = self.nvml.device_count().unwrap_or(0);
        (0..count)
            .filter_map(|index| {
                let dev = self.nvml.device_by_index(index).ok()?;
                let mem = dev.memory_info().ok()?;
                let process_bytes = dev
                    .running_compute_processes()
                    .ok()
                    .into_iter()
                    .chain(dev.running_graphics_processes().ok())
                    .flatten()
                    .filter(|p| p.pid == pid)
                    .map(|p| match p.used_gpu_memory {
                        nvml_wrapper::enums::device::UsedGpuMemory::Used(b) => Some(b),
                        nvml_wrapper::enums::device::UsedGpuMemory::Unavailable => None,
                    })
                    // A process with compute and graphics contexts is listed twice, with
                    // the same memory.
                    .reduce(|a, b| a.max(b))
                    .flatten();
                Some(GpuSample {
                    index,
                    name: dev.name().map(|n| n.trim().to_string()).unwrap_or_default(),
                    used_bytes: mem.total.saturating_sub(mem.free),
                    total_bytes: mem.total,
                    process_bytes,
                })
            })
            .collect()
    }
}
