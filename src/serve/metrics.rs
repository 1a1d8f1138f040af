//! Prometheus metrics of the service (text exposition format on `GET /metrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, linear_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// Label of the per-camera series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CameraLabel {
    pub camera: String,
}

/// Label of the per-GPU series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GpuLabel {
    pub gpu: String,
    pub name: String,
}

/// Label of the per-model series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabel {
    pub model: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 ms to about 4 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 13))
}

fn inference_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 14))
}

/// Every series the service exports.
pub struct Metrics {
    registry: Registry,
    pub frames: Family<CameraLabel, Counter>,
    pub gaps: Family<CameraLabel, Counter>,
    pub reconnects: Family<CameraLabel, Counter>,
    pub fps: Family<CameraLabel, Gauge<f64, AtomicU64>>,
    pub latency: HistogramFamily<CameraLabel>,
    pub inference: HistogramFamily<ModelLabel>,
    pub batch_fill: Histogram,
    pub cameras: Gauge,
    gpu: Option<GpuSeries>,
}

/// GPU memory series, registered when NVML is there.
struct GpuSeries {
    used: Family<GpuLabel, Gauge>,
    total: Family<GpuLabel, Gauge>,
    process: Family<GpuLabel, Gauge>,
}

/// The series of one camera, kept by its probes.
#[derive(Clone)]
pub struct CameraSeries {
    pub frames: Counter,
    pub gaps: Counter,
    pub reconnects: Counter,
    pub fps: Gauge<f64, AtomicU64>,
    pub latency: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every series registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("trtvision");
        let frames = Family::<CameraLabel, Counter>::default();
        let gaps = Family::<CameraLabel, Counter>::default();
        let reconnects = Family::<CameraLabel, Counter>::default();
        let fps = Family::<CameraLabel, Gauge<f64, AtomicU64>>::default();
        let latency: HistogramFamily<CameraLabel> = Family::new_with_constructor(latency_histogram);
        let inference: HistogramFamily<ModelLabel> = Family::new_with_constructor(inference_histogram);
        let batch_fill = Histogram::new(linear_buckets(0.125, 0.125, 8));
        let cameras = Gauge::default();
        registry.register(
            "camera_frames",
            "Frames of the camera out of trtdemux",
            frames.clone(),
        );
        registry.register(
            "camera_gaps",
            "Breaks in the camera's timeline (GAP events, DISCONT frames, timestamp jumps)",
            gaps.clone(),
        );
        registry.register(
            "camera_reconnects",
            "Reconnections of the camera's source",
            reconnects.clone(),
        );
        registry.register(
            "camera_fps",
            "Frames per second of the camera over the last 2 s",
            fps.clone(),
        );
        registry.register(
            "camera_latency_seconds",
            "Time from the frame entering trtmux to it leaving trtdemux",
            latency.clone(),
        );
        registry.register(
            "inference_seconds",
            "Time a batch spends in a model's trtinfer element",
            inference.clone(),
        );
        registry.register(
            "batch_fill_ratio",
            "Frames in a batch divided by the batch size",
            batch_fill.clone(),
        );
        registry.register("cameras", "Cameras connected to the pipeline", cameras.clone());
        Self {
            registry,
            frames,
            gaps,
            reconnects,
            fps,
            latency,
            inference,
            batch_fill,
            cameras,
            gpu: None,
        }
    }

    /// Registers the GPU memory series (once NVML has been found).
    pub fn enable_gpu(&mut self) {
        if self.gpu.is_some() {
            return;
        }
        let series = GpuSeries {
            used: Family::default(),
            total: Family::default(),
            process: Family::default(),
        };
        self.registry.register(
            "gpu_memory_used_bytes",
            "Device memory in use on the GPU by all processes (NVML: total - free)",
            series.used.clone(),
        );
        self.registry.register(
            "gpu_memory_total_bytes",
            "Device memory of the GPU (NVML)",
            series.total.clone(),
        );
        self.registry.register(
            "gpu_process_memory_bytes",
            "Device memory this process holds on the GPU (NVML; absent where NVML does not list the process)",
            series.process.clone(),
        );
        self.gpu = Some(series);
    }

    /// Brings the GPU memory series up to date with `samples`.
    pub fn set_gpus(&self, samples: &[super::gpu::GpuSample]) {
        let Some(g) = &self.gpu else { return };
        for s in samples {
            let l = GpuLabel {
                gpu: s.index.to_string(),
                name: s.name.clone(),
            };
            let bytes = |b: u64| i64::try_from(b).unwrap_or(i64::MAX);
            g.used.get_or_create(&l).set(bytes(s.used_bytes));
            g.total.get_or_create(&l).set(bytes(s.total_bytes));
            match s.process_bytes {
                Some(b) => {
                    g.process.get_or_create(&l).set(bytes(b));
                }
                None => {
                    g.process.remove(&l);
                }
            }
        }
    }

    /// The series of camera `id`, created at zero.
    pub fn camera(&self, id: &str) -> CameraSeries {
        let l = CameraLabel { camera: id.into() };
        CameraSeries {
            frames: self.frames.get_or_create(&l).clone(),
            gaps: self.gaps.get_or_create(&l).clone(),
            reconnects: self.reconnects.get_or_create(&l).clone(),
            fps: self.fps.get_or_create(&l).clone(),
            latency: self.latency.get_or_create(&l).clone(),
        }
    }

    /// Removes camera `id`'s series (a removed camera disappears from the scrape).
    pub fn remove_camera(&self, id: &str) {
        let l = CameraLabel { camera: id.into() };
        self.frames.remove(&l);
        self.gaps.remove(&l);
        self.reconnects.remove(&l);
        self.fps.remove(&l);
        self.latency.remove(&l);
    }

    /// The inference-time histogram of `model`.
    pub fn model(&self, model: &str) -> Histogram {
        self.inference
            .get_or_create(&ModelLabel { model: model.into() })
            .clone()
    }

    /// The text exposition of every series.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            return format!("# metrics could not be encoded: {e}\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camera_series_appear_and_disappear() {
        let m = Metrics::new();
        let s = m.camera("door");
        s.frames.inc_by(3);
        s.latency.observe(0.02);
        s.fps.set(29.5);
        m.model("shapes-yolo").observe(0.01);
        m.batch_fill.observe(0.75);
        let text = m.encode();
        assert!(
            text.contains("trtvision_camera_frames_total{camera=\"door\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("trtvision_camera_fps{camera=\"door\"} 29.5"),
            "{text}"
        );
        assert!(
            text.contains("trtvision_camera_latency_seconds_bucket{le=\"0.032\",camera=\"door\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("trtvision_inference_seconds_count{model=\"shapes-yolo\"} 1"),
            "{text}"
        );
        assert!(text.contains("trtvision_batch_fill_ratio_count 1"), "{text}");
        assert!(text.ends_with("# EOF\n"));
        m.remove_camera("door");
        assert!(!m.encode().contains("door"));
        assert!(!text.contains("gpu"), "no GPU series without NVML: {text}");
    }

    #[test]
    fn gpu_memory_series_from_a_sample() {
        let mut m = Metrics::new();
        let sample = |process_bytes| super::super::gpu::GpuSample {
            index: 0,
            name: "NVIDIA H100 80GB HBM3".into(),
            used_bytes: 3 << 30,
            total_bytes: 85_520_809_984,
            process_bytes,
        };
        // Without enable_gpu (no NVML) samples are ignored.
        m.set_gpus(&[sample(Some(1 << 30))]);
        assert!(!m.encode().contains("gpu"));
        m.enable_gpu();
        m.set_gpus(&[sample(Some(1 << 30))]);
        let text = m.encode();
        let label = "{gpu=\"0\",name=\"NVIDIA H100 80GB HBM3\"}";
        for line in [
            format!("trtvision_gpu_memory_used_bytes{label} 3221225472"),
            format!("trtvision_gpu_memory_total_bytes{label} 85520809984"),
            format!("trtvision_gpu_process_memory_bytes{label} 1073741824"),
            "# TYPE trtvision_gpu_memory_used_bytes gauge".to_string(),
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing from\n{text}");
        }
        // The process's share unknown on the next scrape: its series goes, it is not 0.
        m.set_gpus(&[sample(None)]);
        let text = m.encode();
        assert!(!text.contains("trtvision_gpu_process_memory_bytes{"), "{text}");
        assert!(text.contains("trtvision_gpu_memory_used_bytes{"), "{text}");
    }
}
