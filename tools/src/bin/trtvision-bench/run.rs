//! One measured run: frames/s, latency, CPU, RSS, GPU memory and PCIe traffic, soak drift, per-stage times.

use super::*;

/// What one measured run produced.
pub(crate) struct RunResult {
    pub(crate) frames: u64,
    pub(crate) frames_all: u64,
    /// Frames that left the sources (warm-up included).
    pub(crate) frames_sourced: u64,
    pub(crate) unmatched: u64,
    pub(crate) wall_s: f64,
    pub(crate) fps_total: f64,
    pub(crate) lat_ms: Option<(f64, f64, f64)>,
    pub(crate) lat_mean_ms: Option<f64>,
    /// How the latency percentiles were computed ([`soak::Latencies::method`]).
    pub(crate) lat_method: &'static str,
    pub(crate) cpu_cores: Option<f64>,
    pub(crate) cpu_window: &'static str,
    pub(crate) rss: Option<RssStats>,
    pub(crate) run_wall_s: f64,
    pub(crate) gpu: Option<GpuRun>,
    pub(crate) soak: Option<SoakRun>,
    /// Counters of the trtvision elements read at EOS (warm-up included).
    pub(crate) counters: Vec<(String, Value)>,
    /// Per-camera rates and latencies, whole run and per [`PER_CAMERA_WINDOW_S`] window.
    pub(crate) per_camera: Option<trtvision_tools::percamera::Summary>,
}

/// Length of the windows of the per-camera summary (drift over a long run).
pub(crate) const PER_CAMERA_WINDOW_S: f64 = 10.0;

/// What the elements counted since start, read at EOS: frames trtoverlay drew on the GPU,
/// bytes of inference results each trtinfer copied from the GPU (e.g. dense summaries
/// instead of maps), and the batch statistics of trtmux and trtinfer, by element name.
pub(crate) fn element_counters(p: &gst::Pipeline) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for e in p.iterate_recurse().into_iter().flatten() {
        let factory = e.factory().map(|f| f.name().to_string()).unwrap_or_default();
        let name = e.name().trim_start_matches("st_").to_string();
        // Batches and time per batch: how long trtmux took to make one, trtinfer to infer
        // one and trtinfer's streaming thread to wait for a session's result.
        let batch_stats = |fields: &[(&str, &str)]| {
            let st = e.property::<Option<gst::Structure>>("stats");
            fields
                .iter()
                .filter_map(|(key, field)| {
                    let v = st.as_ref()?.get::<u64>(*field).ok()?;
                    let v = if key.ends_with("_ms") {
                        Value::from(stats::round(v as f64 / 1e6, 3))
                    } else {
                        Value::from(v)
                    };
                    Some((format!("{name}.{key}"), v))
                })
                .collect::<Vec<_>>()
        };
        match factory.as_str() {
            "trtoverlay" => out.push((
                format!("{name}.gpu_frames"),
                Value::from(e.property::<u64>("gpu-frames")),
            )),
            "trtinfer" => {
                out.push((
                    format!("{name}.d2h_bytes"),
                    Value::from(e.property::<u64>("d2h-bytes")),
                ));
                out.extend(batch_stats(&[
                    ("batches", "batches"),
                    ("mean_infer_ms", "mean-infer-ns"),
                    ("mean_wait_ms", "mean-wait-ns"),
                ]));
            }
            "trtmux" => out.extend(batch_stats(&[
                ("batches", "batches"),
                ("mean_make_ms", "mean-ns"),
            ])),
            _ => continue,
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// What a `--duration` run adds: the raw 1 s samples and how often each file looped.
pub(crate) struct SoakRun {
    /// End of the last measured frame: drift fits stop there.
    pub(crate) end_ns: u64,
    pub(crate) rss_mib: Vec<(u64, f64)>,
    pub(crate) vram_mib: Vec<(u64, f64)>,
    pub(crate) file_passes: Vec<u64>,
}

/// What the GPU sampler saw during the main run.
pub(crate) struct GpuRun {
    pub(crate) method: &'static str,
    pub(crate) vram: Option<gpumon::VramStats>,
    pub(crate) vram_samples: usize,
    /// Bytes per measured frame over the measured window (with --pcie).
    pub(crate) h2d_per_frame: Option<f64>,
    pub(crate) d2h_per_frame: Option<f64>,
    pub(crate) h2d_total_mib: Option<f64>,
    pub(crate) d2h_total_mib: Option<f64>,
    pub(crate) pcie_samples_in_window: usize,
    /// "counters" or "throughput" (gpumon::PcieBytes::source).
    pub(crate) pcie_source: &'static str,
    /// Integrated throughput per frame over the same window (cross-check of the counters).
    pub(crate) sampled_per_frame: Option<(f64, f64)>,
}

pub(crate) struct RssStats {
    pub(crate) steady: f64,
    pub(crate) peak: f64,
    pub(crate) drift_mib_per_min: f64,
    pub(crate) samples_second_half: usize,
    pub(crate) vmhwm: Option<f64>,
}

pub(crate) fn rss_stats(samples: &[(u64, u64)], window: (u64, u64)) -> Option<RssStats> {
    let peak = samples.iter().map(|s| s.1).max()? as f64 / 1024.0;
    let inwin: Vec<(u64, u64)> = samples
        .iter()
        .copied()
        .filter(|s| s.0 >= window.0 && s.0 <= window.1)
        .collect();
    let use_: &[(u64, u64)] = if inwin.len() >= 4 { &inwin } else { samples };
    let half = &use_[use_.len() / 2..];
    let mut mib: Vec<f64> = half.iter().map(|s| s.1 as f64 / 1024.0).collect();
    let steady = stats::median(&mut mib);
    let xs: Vec<f64> = half.iter().map(|s| s.0 as f64 / 60e9).collect();
    let ys: Vec<f64> = half.iter().map(|s| s.1 as f64 / 1024.0).collect();
    let drift = stats::slope(&xs, &ys);
    Some(RssStats {
        steady,
        peak,
        drift_mib_per_min: drift,
        samples_second_half: half.len(),
        vmhwm: proc_status_kib("VmHWM:").map(|k| k as f64 / 1024.0),
    })
}

/// Builds, probes and runs one pipeline; `end` says where frames end.
pub(crate) fn measured_run(
    o: &Opts,
    desc: &str,
    end: SinkKind,
    stage_names: &[String],
    sample_rss: bool,
) -> (RunResult, Option<Arc<StageTimes>>) {
    let p = parse(desc);
    // Soak (before the source probes, which must see the shifted timestamps): one RSS/VRAM sample per second; file cameras loop until the deadline.
    let soak = sample_rss && o.duration_s.is_some();
    let interval_ms = if soak { 1000 } else { 100 };
    let passes: Vec<Arc<AtomicU64>> = (0..o.cameras).map(|_| Arc::new(AtomicU64::new(0))).collect();
    if let (true, Some(d), SourceKind::Files(_)) = (soak, o.duration_s, &o.source) {
        let deadline = Instant::now() + Duration::from_secs(d);
        for (i, n) in passes.iter().enumerate() {
            let dec = p
                .by_name(&format!("dec{i}"))
                .or_else(|| p.by_name(&format!("src{i}")))
                .expect("decoder exists");
            if let Err(e) = soak::loop_until(&dec, deadline, n.clone()) {
                die(&e);
            }
        }
    }
    let measured_per_cam = o.frames - o.warmup;
    let expected = if o.is_scene() {
        measured_per_cam * o.cameras as u64
    } else {
        0
    };
    let mut rec = Recorder::new(o.cameras, o.warmup, expected, o.is_scene(), soak);
    if o.encode.is_some() && desc.contains("x264enc") {
        Arc::get_mut(&mut rec).expect("not shared yet").by_sequence = true;
    }
    for i in 0..o.cameras {
        let src = p.by_name(&format!("src{i}")).expect("source exists");
        if o.pace && o.pace_rate != 1.0 {
            pace_at_rate(&src.static_pad("sink").unwrap(), o.pace_rate);
        }
        probe_source(&src.static_pad("src").unwrap(), i, &rec);
    }
    match end {
        SinkKind::Demux => {
            for i in 0..o.cameras {
                let s = p.by_name(&format!("out{i}")).unwrap();
                probe_end_frame(&s.static_pad("sink").unwrap(), i, &rec);
            }
        }
        SinkKind::Tiler => {
            let t = p.by_name("t").unwrap();
            probe_end_batch(&t.static_pad("sink").unwrap(), &rec);
        }
        SinkKind::Fakesink => {
            let s = p.by_name("out0").unwrap();
            probe_end_batch(&s.static_pad("sink").unwrap(), &rec);
        }
    }
    let stages = if stage_names.is_empty() {
        None
    } else {
        Some(probe_stages(&p, stage_names, rec.t0))
    };
    let sampler = sample_rss.then(|| RssSampler::start(rec.t0, Duration::from_millis(interval_ms)));
    let gpu_sampler = if o.gpu_sampling() && (sample_rss || o.pcie) {
        let every = if o.pcie { 0 } else { interval_ms };
        let s = gpumon::GpuSampler::start(nvml(), rec.t0, o.pcie, every);
        if s.is_none() {
            eprintln!("trtvision-bench: no NVML and no nvidia-smi: vram_mib / h2d / d2h stay null");
        }
        s
    } else {
        None
    };
    let t_run = Instant::now();
    // A soak of live synthetic cameras ends when its time is up (if the pipeline cannot keep
    // up, the frames made by then drain); file cameras end after their last pass.
    let stop_after = o
        .duration_s
        .filter(|_| soak && o.is_scene())
        .map(Duration::from_secs);
    let mut counters = Vec::new();
    if let Err(e) = run_to_eos_then(&p, o.timeout_s, stop_after, || counters = element_counters(&p)) {
        eprintln!("trtvision-bench: pipeline failed: {e}\n{desc}");
        std::process::exit(1);
    }
    let run_wall_s = t_run.elapsed().as_secs_f64();
    let cpu_eos = cpu_time_s();
    let eos_ns = rec.now();
    let samples = sampler.map(|s| s.finish()).unwrap_or_default();
    let gpu_method = gpu_sampler.as_ref().map(|s| s.method);
    let gpu_samples = gpu_sampler.map(|s| s.finish());
    drop(p);

    let frames = rec.measured_end.load(Ordering::Relaxed);
    let first = rec.first_start.load(Ordering::Relaxed);
    let last = rec.last_end.load(Ordering::Relaxed);
    let wall_s = if frames > 0 && last > first {
        (last - first) as f64 / 1e9
    } else {
        0.0
    };
    let (lat_summary, lat_method) = {
        let l = rec.latencies_ns.lock().unwrap();
        (l.summary_ms(), l.method())
    };
    let lat_ms = lat_summary.map(|(p50, p95, p99, _)| (p50, p95, p99));
    let lat_mean_ms = lat_summary.map(|(.., mean)| mean);
    let cpu_start = *rec.cpu_start.lock().unwrap();
    let cpu_end = *rec.cpu_end.lock().unwrap();
    let (cpu_cores, cpu_window) = match (cpu_start, cpu_end) {
        (Some(a), Some(b)) if wall_s > 0.0 => (Some((b - a) / wall_s), "first-measured-frame-to-last-frame"),
        (Some(a), None) if eos_ns > first => (
            Some((cpu_eos - a) / ((eos_ns - first) as f64 / 1e9)),
            "first-measured-frame-to-eos",
        ),
        _ => (None, "none"),
    };
    let rss = if sample_rss {
        rss_stats(&samples, (first, last))
    } else {
        None
    };
    let soak = soak.then(|| SoakRun {
        end_ns: last,
        rss_mib: samples.iter().map(|s| (s.0, s.1 as f64 / 1024.0)).collect(),
        vram_mib: gpu_samples
            .iter()
            .flatten()
            .filter_map(|s| s.used_mib.map(|m| (s.t_ns, m)))
            .collect(),
        file_passes: passes.iter().map(|n| n.load(Ordering::Relaxed)).collect(),
    });
    let gpu = gpu_samples.map(|gs| {
        let (a, b) = (first, last);
        let per_frame = |v: Option<f64>| v.filter(|_| frames > 0).map(|x| x / frames as f64);
        let pcie = if o.pcie {
            gpumon::pcie_bytes(&gs, a, b)
        } else {
            None
        };
        let (h2d, d2h) = (pcie.map(|p| p.h2d), pcie.map(|p| p.d2h));
        GpuRun {
            method: match pcie {
                Some(p) if p.source == "counters" => gpumon::METHOD_NVML_COUNTERS,
                _ => gpu_method.unwrap_or(""),
            },
            vram: gpumon::vram_stats(&gs, a, b),
            vram_samples: gs.iter().filter(|s| s.used_mib.is_some()).count(),
            h2d_per_frame: per_frame(h2d),
            d2h_per_frame: per_frame(d2h),
            h2d_total_mib: h2d.map(|v| v / 1048576.0),
            d2h_total_mib: d2h.map(|v| v / 1048576.0),
            pcie_samples_in_window: pcie.map(|p| p.readings).unwrap_or(0),
            pcie_source: pcie.map(|p| p.source).unwrap_or("none"),
            sampled_per_frame: pcie
                .and_then(|p| p.sampled)
                .filter(|_| frames > 0)
                .map(|(h, d)| (h / frames as f64, d / frames as f64)),
        }
    });
    let res = RunResult {
        frames,
        frames_all: rec.all_end.load(Ordering::Relaxed),
        frames_sourced: rec.counts.lock().unwrap().iter().sum(),
        unmatched: rec.unmatched.load(Ordering::Relaxed),
        wall_s,
        fps_total: if wall_s > 0.0 { frames as f64 / wall_s } else { 0.0 },
        lat_ms,
        lat_mean_ms,
        lat_method,
        cpu_cores,
        cpu_window,
        rss,
        run_wall_s,
        gpu,
        soak,
        counters,
        per_camera: rec
            .per_camera
            .lock()
            .unwrap()
            .summary(first, last, PER_CAMERA_WINDOW_S),
    };
    (res, stages)
}

/// Soak records: `rss_mib` / `vram_mib` drift from the samples after the drift warm-up
/// (replacing the short-run second-half fit), and a `soak` object with the series.
pub(crate) fn soak_keys(o: &Opts, sk: &SoakRun, rec: &mut Vec<(String, Value)>) {
    let duration = o.duration_s.unwrap_or(0);
    let warmup_s = o.drift_warmup_s.unwrap_or(duration / 5);
    let warmup_ns = warmup_s * 1_000_000_000;
    let method = format!(
        "least-squares slope of the 1 s samples taken after the first {warmup_s} s of the run, up to the last measured frame (MiB per minute)"
    );
    let mut summary = Vec::new();
    for (key, samples) in [("rss_mib", &sk.rss_mib), ("vram_mib", &sk.vram_mib)] {
        let Some(d) = soak::drift_between(samples, warmup_ns, sk.end_ns) else {
            continue;
        };
        if let Some((_, Value::Object(m))) = rec.iter_mut().find(|(k, _)| k == key) {
            m.insert(
                "drift_mib_per_min".into(),
                Value::from(stats::round(d.per_min, 3)),
            );
            m.insert("drift_method".into(), Value::from(method.clone()));
            m.insert("drift_samples".into(), Value::from(d.samples as u64));
            m.remove("samples_second_half");
        }
        let (t, v) = soak::series(samples, 10_000_000_000);
        summary.push((
            key,
            json::obj(vec![
                ("drift_mib_per_min", Value::from(stats::round(d.per_min, 3))),
                ("after_warmup_first", Value::from(stats::round(d.first, 1))),
                ("after_warmup_last", Value::from(stats::round(d.last, 1))),
                ("after_warmup_min", Value::from(stats::round(d.min, 1))),
                ("after_warmup_max", Value::from(stats::round(d.max, 1))),
                ("after_warmup_median", Value::from(stats::round(d.median, 1))),
                ("samples", Value::from(samples.len() as u64)),
                (
                    "series_every_10s_t_s",
                    Value::Array(t.into_iter().map(Value::from).collect()),
                ),
                (
                    "series_every_10s_mib",
                    Value::Array(v.into_iter().map(Value::from).collect()),
                ),
            ]),
        ));
    }
    let mut pairs = vec![
        ("duration_s", Value::from(duration)),
        ("drift_warmup_s", Value::from(warmup_s)),
        ("sample_interval_s", Value::from(1u64)),
    ];
    if matches!(o.source, SourceKind::Files(_)) {
        pairs.push((
            "file_loops_per_camera",
            Value::Array(sk.file_passes.iter().map(|&n| Value::from(n)).collect()),
        ));
    }
    pairs.extend(summary);
    rec.push(("soak".into(), json::obj(pairs)));
}

/// Per-stage ms per batch (median, mean) from the src-pad probe times.
pub(crate) fn stage_breakdown(st: &StageTimes, warmup_batches: u64) -> Vec<(String, Value)> {
    let maps: Vec<HashMap<u64, (u64, usize)>> = st
        .points
        .iter()
        .map(|m| m.lock().unwrap().iter().map(|&(b, t, n)| (b, (t, n))).collect())
        .collect();
    let mut out = Vec::new();
    if let Some(m0) = maps.first() {
        let batches = m0.len();
        let slots: usize = m0.values().map(|v| v.1).sum();
        out.push(("batches".to_string(), Value::from(batches as u64)));
        out.push((
            "mean_batch_fill".to_string(),
            Value::from(if batches > 0 {
                slots as f64 / batches as f64
            } else {
                0.0
            }),
        ));
    }
    let mut per = Vec::new();
    for k in 1..maps.len() {
        let mut d: Vec<f64> = maps[k]
            .iter()
            .filter(|(b, _)| **b >= warmup_batches)
            .filter_map(|(b, (t, _))| maps[k - 1].get(b).map(|(t0, _)| (*t as f64 - *t0 as f64) / 1e6))
            .collect();
        if d.is_empty() {
            continue;
        }
        let mean = d.iter().sum::<f64>() / d.len() as f64;
        let name = st.names[k].trim_start_matches("st_").to_string();
        per.push((
            name,
            json::obj(vec![
                (
                    "p50",
                    Value::from(stats::round(stats::percentile(&mut d, 50.0), 3)),
                ),
                ("mean", Value::from(stats::round(mean, 3))),
                (
                    "p95",
                    Value::from(stats::round(stats::percentile(&mut d, 95.0), 3)),
                ),
            ]),
        ));
    }
    out.push(("stage_ms_per_batch".to_string(), json::obj_owned(per)));
    out
}
