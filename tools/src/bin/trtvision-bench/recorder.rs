//! Frame recorder: pad probes that time every frame from its source to its end and every batch through each stage.

use super::*;

/// Per-frame start/end times and the measured window.
pub(crate) struct Recorder {
    pub(crate) t0: Instant,
    pub(crate) warmup: u64,
    /// Measured frames expected at the sinks (0: unknown, e.g. files).
    pub(crate) expected: u64,
    /// (camera, key) → (ns since t0 the frame left its source, measured).
    pub(crate) starts: Mutex<HashMap<(u32, u64), (u64, bool)>>,
    /// Per-camera count of buffers seen at the source (frame index for files).
    pub(crate) counts: Mutex<Vec<u64>>,
    pub(crate) latencies_ns: Mutex<soak::Latencies>,
    pub(crate) first_start: AtomicU64,
    pub(crate) last_end: AtomicU64,
    pub(crate) measured_end: AtomicU64,
    pub(crate) all_end: AtomicU64,
    pub(crate) unmatched: AtomicU64,
    pub(crate) cpu_start: Mutex<Option<f64>>,
    pub(crate) cpu_end: Mutex<Option<f64>>,
    pub(crate) use_offset: bool,
    /// Match frames by per-camera arrival order instead (encoders rewrite offset and PTS:
    /// x264enc adds its min-pts of 1000 h); frames are never dropped or reordered.
    pub(crate) by_sequence: bool,
    pub(crate) end_counts: Mutex<Vec<u64>>,
    /// Every measured frame's end time and latency, per camera.
    pub(crate) per_camera: Mutex<trtvision_tools::percamera::PerCamera>,
}

impl Recorder {
    /// `soak`: keep latencies in a fixed-size histogram ([`soak::Latencies`]).
    pub(crate) fn new(cameras: u32, warmup: u64, expected: u64, use_offset: bool, soak: bool) -> Arc<Self> {
        Arc::new(Self {
            t0: Instant::now(),
            warmup,
            expected,
            starts: Mutex::new(HashMap::with_capacity(4096)),
            counts: Mutex::new(vec![0; cameras as usize]),
            latencies_ns: Mutex::new(if soak {
                soak::Latencies::histogram()
            } else {
                soak::Latencies::exact(expected as usize)
            }),
            first_start: AtomicU64::new(u64::MAX),
            last_end: AtomicU64::new(0),
            measured_end: AtomicU64::new(0),
            all_end: AtomicU64::new(0),
            unmatched: AtomicU64::new(0),
            cpu_start: Mutex::new(None),
            cpu_end: Mutex::new(None),
            use_offset,
            by_sequence: false,
            end_counts: Mutex::new(vec![0; cameras as usize]),
            per_camera: Mutex::new(trtvision_tools::percamera::PerCamera::new(cameras as usize)),
        })
    }

    pub(crate) fn now(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64
    }

    pub(crate) fn key(&self, buf: &gst::BufferRef) -> u64 {
        if self.use_offset && buf.offset() != u64::MAX {
            buf.offset()
        } else {
            buf.pts().map(|p| p.nseconds()).unwrap_or(u64::MAX)
        }
    }

    pub(crate) fn on_source(&self, camera: u32, buf: &gst::BufferRef) {
        let now = self.now();
        let (seq, index) = {
            let mut c = self.counts.lock().unwrap();
            let n = c[camera as usize];
            c[camera as usize] += 1;
            if self.use_offset && buf.offset() != u64::MAX {
                (n, buf.offset())
            } else {
                (n, n)
            }
        };
        let measured = index >= self.warmup;
        if measured {
            let mut cs = self.cpu_start.lock().unwrap();
            if cs.is_none() {
                *cs = Some(cpu_time_s());
            }
            drop(cs);
            self.first_start.fetch_min(now, Ordering::Relaxed);
        }
        let key = if self.by_sequence { seq } else { self.key(buf) };
        self.starts.lock().unwrap().insert((camera, key), (now, measured));
    }

    pub(crate) fn on_end(&self, camera: u32, buf: &gst::BufferRef) {
        let now = self.now();
        let key = if self.by_sequence {
            let mut c = self.end_counts.lock().unwrap();
            let n = c[camera as usize];
            c[camera as usize] += 1;
            n
        } else {
            self.key(buf)
        };
        let start = self.starts.lock().unwrap().remove(&(camera, key));
        self.all_end.fetch_add(1, Ordering::Relaxed);
        match start {
            Some((t, true)) => {
                self.latencies_ns.lock().unwrap().push(now.saturating_sub(t));
                self.per_camera
                    .lock()
                    .unwrap()
                    .push(camera as usize, now, now.saturating_sub(t));
                self.last_end.fetch_max(now, Ordering::Relaxed);
                let n = self.measured_end.fetch_add(1, Ordering::Relaxed) + 1;
                if n == self.expected {
                    *self.cpu_end.lock().unwrap() = Some(cpu_time_s());
                }
            }
            Some((_, false)) => {}
            None => {
                self.unmatched.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Probe: every buffer on `pad` is a frame that left camera `camera`.
pub(crate) fn probe_source(pad: &gst::Pad, camera: u32, rec: &Arc<Recorder>) {
    let rec = rec.clone();
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(buf) = info.buffer() {
            rec.on_source(camera, buf);
        }
        gst::PadProbeReturn::Ok
    });
}

/// Probe: every buffer on `pad` is a frame of camera `camera` reaching the end.
pub(crate) fn probe_end_frame(pad: &gst::Pad, camera: u32, rec: &Arc<Recorder>) {
    let rec = rec.clone();
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(buf) = info.buffer() {
            rec.on_end(camera, buf);
        }
        gst::PadProbeReturn::Ok
    });
}

/// Probe: every buffer on `pad` is a batch; each slot is a frame reaching the end.
pub(crate) fn probe_end_batch(pad: &gst::Pad, rec: &Arc<Recorder>) {
    let rec = rec.clone();
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(buf) = info.buffer() {
            if let Some(meta) = buf.meta::<gsttrtvision::batch::BatchMeta>() {
                for slot in &meta.batch().slots {
                    rec.on_end(slot.pad_index(), &slot.buffer);
                }
            }
        }
        gst::PadProbeReturn::Ok
    });
}

/// Per-batch times at the src pads of trtmux and the analytics elements.
pub(crate) struct StageTimes {
    pub(crate) names: Vec<String>,
    /// per probe point: (batch number, ns since t0, slots)
    pub(crate) points: Vec<Mutex<Vec<(u64, u64, usize)>>>,
}

pub(crate) fn probe_stages(pipeline: &gst::Pipeline, names: &[String], t0: Instant) -> Arc<StageTimes> {
    let st = Arc::new(StageTimes {
        names: names.to_vec(),
        points: names
            .iter()
            .map(|_| Mutex::new(Vec::with_capacity(1024)))
            .collect(),
    });
    for (k, name) in names.iter().enumerate() {
        let el = pipeline.by_name(name).expect("stage element exists");
        let pad = el.static_pad("src").expect("stage has a src pad");
        let st = st.clone();
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let now = t0.elapsed().as_nanos() as u64;
            if let Some(buf) = info.buffer() {
                if let Some(meta) = buf.meta::<gsttrtvision::batch::BatchMeta>() {
                    let b = meta.batch();
                    st.points[k]
                        .lock()
                        .unwrap()
                        .push((b.batch_number, now, b.slots.len()));
                }
            }
            gst::PadProbeReturn::Ok
        });
    }
    st
}
