//! trtvision-bench: runs an N-camera trtvision pipeline for a fixed number of frames per
//! camera and writes one JSON record in the format of `bench/results/` (see
//! benches/README.md and the bench schema).
//!
//! Everything reported is measured in this process:
//! - throughput: frames reaching the sinks / (last frame at a sink − first measured frame
//!   leaving a source), monotonic clock;
//! - latency: per frame, source src-pad probe → end probe (trtdemux output fakesinks, or the
//!   batch-level sink pad where every slot of the batch is one frame), keyed by
//!   (camera, buffer offset);
//! - CPU: getrusage(RUSAGE_SELF) user+system time over the same window / wall time;
//! - RSS: /proc/self/status VmRSS sampled every 100 ms;
//! - per-stage time per batch: src-pad probes on trtmux and every analytics element, which
//!   run in one streaming thread (no queues), so consecutive probe times bracket each
//!   element's work on a batch;
//! - trtmux overhead: CPU-time and wall-time difference between N `source ! queue ! trtmux
//!   ! fakesink` and N `source ! queue ! fakesink`, alternated over several repetitions.

use trtvision_tools::procstats::{cpu_model_and_cores, cpu_time_s};
use trtvision_tools::{cli, gpumon, json, soak, stats};

use gst::prelude::*;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod opts;
mod overhead;
mod pipelines;
mod process;
mod recorder;
mod run;
use opts::*;
use overhead::*;
use pipelines::*;
use process::*;
use recorder::*;
use run::*;

use json::Value;

/// NVML for GPU 0, opened once (None without a driver).
fn nvml() -> Option<Arc<gpumon::Nvml>> {
    static NVML: std::sync::OnceLock<Option<Arc<gpumon::Nvml>>> = std::sync::OnceLock::new();
    NVML.get_or_init(|| match gpumon::Nvml::open(0) {
        Ok(n) => Some(n),
        Err(e) => {
            eprintln!("trtvision-bench: NVML: {e}; falling back to nvidia-smi where present");
            None
        }
    })
    .clone()
}

// ---------------------------------------------------------------------------------------

fn main() {
    let o = parse_args();
    let argv: Vec<String> = std::env::args().collect();
    let cmdline = argv
        .iter()
        .map(|a| {
            if a.contains(' ') || a.is_empty() {
                format!("'{a}'")
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    gst::init().expect("GStreamer initialises");
    gsttrtvision::plugin_register_static().expect("plugin registers");

    let (cpu_model, cores) = cpu_model_and_cores();
    let on_gpu = o.on_gpu();
    let device = o.device_name.clone().unwrap_or_else(|| {
        let gpu = if on_gpu {
            gpumon::gpu_name(nvml().as_deref())
        } else {
            None
        };
        gpu.unwrap_or_else(|| format!("cpu: {cpu_model} x{cores}"))
    });
    let (commit, dirty) = gpumon::commit();
    let dirty = dirty.unwrap_or(false);
    let (date, _) = gpumon::today();
    let load_start = loadavg();
    let overhead_only = o.what.as_deref() == Some("trtmux-overhead");
    let what = o.what.clone().unwrap_or_else(|| format!("{}cam", o.cameras));
    let model_name = o
        .model
        .as_ref()
        .map(|m| m.display().to_string())
        .unwrap_or_else(|| "none".into());
    let stages = o.stages();
    let backend = if stages.iter().any(|s| s == "infer") {
        o.backend.clone()
    } else {
        "none".into()
    };

    let mut rec: Vec<(String, Value)> = vec![
        ("device".into(), Value::from(device.clone())),
        ("date".into(), Value::from(date)),
        ("commit".into(), Value::from(commit)),
        ("commit_dirty".into(), Value::from(dirty)),
        ("what".into(), Value::from(what.clone())),
    ];
    let mut summary: String;

    if overhead_only {
        let oh = trtmux_overhead(&o);
        let frames = o.overhead_frames.unwrap_or(o.frames.max(600));
        rec.extend([
            ("pipeline".into(), Value::from(cmdline.to_string())),
            ("cameras".into(), Value::from(o.cameras)),
            ("width".into(), Value::from(o.width)),
            ("height".into(), Value::from(o.height)),
            ("format".into(), Value::from(o.format.clone())),
            ("batch_size".into(), Value::from(o.cameras)),
            ("model".into(), Value::from("none")),
            ("backend".into(), Value::from("none")),
            ("frames".into(), Value::from(frames * o.cameras as u64)),
            ("fps_total".into(), Value::Null),
            ("fps_per_camera".into(), Value::Null),
            ("latency_ms".into(), Value::Null),
            ("cpu_cores".into(), Value::Null),
            ("rss_mib".into(), Value::Null),
            ("vram_mib".into(), Value::Null),
            ("h2d_bytes_per_frame".into(), Value::Null),
            ("d2h_bytes_per_frame".into(), Value::Null),
            (
                "reference".into(),
                json::obj(vec![
                    ("name", Value::from("sources-queue-fakesink")),
                    ("fps_total", Value::Null),
                ]),
            ),
            ("ratio".into(), Value::Null),
        ]);
        rec.extend(oh.keys);
        summary = oh.summary;
    } else {
        let desc = main_desc(&o);
        let mut stage_names = vec!["m".to_string()];
        stage_names.extend(stages.iter().map(|s| format!("st_{s}")));
        let (r, st) = measured_run(&o, &desc, o.sink, &stage_names, true);
        let reference = o.reference.as_ref().map(|name| {
            let name = if o.is_scene() && name == "decode-only" {
                "sources-only".to_string()
            } else {
                name.clone()
            };
            let (rr, _) = measured_run(&o, &reference_desc(&o), SinkKind::Demux, &[], false);
            (name, rr)
        });
        let fps_cam = r.fps_total / o.cameras as f64;
        let lat = r
            .lat_ms
            .map(|(a, b, c)| {
                json::obj(vec![
                    ("p50", Value::from(stats::round(a, 2))),
                    ("p95", Value::from(stats::round(b, 2))),
                    ("p99", Value::from(stats::round(c, 2))),
                    ("mean", Value::from(stats::round(r.lat_mean_ms.unwrap_or(0.0), 2))),
                ])
            })
            .unwrap_or(Value::Null);
        let rss = r
            .rss
            .as_ref()
            .map(|s| {
                json::obj(vec![
                    ("steady", Value::from(stats::round(s.steady, 1))),
                    ("peak", Value::from(stats::round(s.peak, 1))),
                    (
                        "drift_mib_per_min",
                        Value::from(stats::round(s.drift_mib_per_min, 2)),
                    ),
                    ("samples_second_half", Value::from(s.samples_second_half as u64)),
                    (
                        "vmhwm",
                        s.vmhwm
                            .map(|v| Value::from(stats::round(v, 1)))
                            .unwrap_or(Value::Null),
                    ),
                ])
            })
            .unwrap_or(Value::Null);
        rec.extend([
            (
                "pipeline".into(),
                Value::from(format!("{cmdline} :: gst-launch-1.0 {desc}")),
            ),
            ("cameras".into(), Value::from(o.cameras)),
            ("width".into(), Value::from(o.width)),
            ("height".into(), Value::from(o.height)),
            ("format".into(), Value::from(o.format.clone())),
            ("batch_size".into(), Value::from(o.batch_size())),
            ("model".into(), Value::from(model_name.clone())),
            ("backend".into(), Value::from(backend.clone())),
            (
                "secondary_models".into(),
                Value::Array(
                    stages
                        .iter()
                        .filter_map(|s| match s.as_str() {
                            "depth-infer" => Some(format!(
                                "{} (sources {})",
                                o.depth_model.display(),
                                o.depth_sources
                            )),
                            "landmarks" => Some(format!("{} (on objects)", o.landmarks_model.display())),
                            _ => None,
                        })
                        .map(Value::from)
                        .collect(),
                ),
            ),
            (
                "stages".into(),
                Value::Array(stages.iter().map(|s| Value::from(s.clone())).collect()),
            ),
            ("sink".into(), Value::from(format!("{:?}", o.sink).to_lowercase())),
            ("masks_downloaded".into(), Value::from(!o.device_masks)),
            ("live".into(), Value::from(o.live)),
            ("frames".into(), Value::from(r.frames)),
            ("fps_total".into(), Value::from(stats::round(r.fps_total, 2))),
            ("fps_per_camera".into(), Value::from(stats::round(fps_cam, 2))),
            ("latency_ms".into(), lat),
            ("latency_method".into(), Value::from(r.lat_method)),
            (
                "cpu_cores".into(),
                r.cpu_cores
                    .map(|c| Value::from(stats::round(c, 3)))
                    .unwrap_or(Value::Null),
            ),
            ("rss_mib".into(), rss),
            (
                "vram_mib".into(),
                r.gpu
                    .as_ref()
                    .and_then(|g| g.vram.as_ref().map(|v| (g, v)))
                    .map(|(g, v)| {
                        json::obj(vec![
                            ("steady", Value::from(stats::round(v.steady, 1))),
                            ("peak", Value::from(stats::round(v.peak, 1))),
                            (
                                "drift_mib_per_min",
                                Value::from(stats::round(v.drift_mib_per_min, 2)),
                            ),
                            ("baseline_before_start", Value::from(stats::round(v.baseline, 1))),
                            (
                                "above_baseline_steady",
                                Value::from(stats::round(v.steady - v.baseline, 1)),
                            ),
                            ("samples", Value::from(g.vram_samples as u64)),
                            ("samples_second_half", Value::from(v.samples_second_half as u64)),
                            ("scope", Value::from("device-wide used memory (all processes)")),
                        ])
                    })
                    .unwrap_or(Value::Null),
            ),
            (
                "h2d_bytes_per_frame".into(),
                r.gpu
                    .as_ref()
                    .and_then(|g| g.h2d_per_frame)
                    .map(|v| Value::from(v.round()))
                    .unwrap_or(Value::Null),
            ),
            (
                "d2h_bytes_per_frame".into(),
                r.gpu
                    .as_ref()
                    .and_then(|g| g.d2h_per_frame)
                    .map(|v| Value::from(v.round()))
                    .unwrap_or(Value::Null),
            ),
        ]);
        match &r.per_camera {
            Some(pc) => rec.extend(pc.record_keys()),
            None => rec.extend([
                ("fps_per_camera_min".to_string(), Value::Null),
                ("fps_per_camera_p5".to_string(), Value::Null),
            ]),
        }
        if o.pcie {
            let g = r.gpu.as_ref();
            rec.push((
                "pcie_method".into(),
                match g {
                    Some(g) if g.h2d_per_frame.is_some() => Value::from(g.method),
                    _ => Value::from("requested (--pcie) but not measured: no NVML library and no nvidia-smi (or no sample)"),
                },
            ));
            rec.push((
                "pcie_total_mib".into(),
                json::obj(vec![
                    (
                        "h2d",
                        g.and_then(|g| g.h2d_total_mib)
                            .map(|v| Value::from(stats::round(v, 1)))
                            .unwrap_or(Value::Null),
                    ),
                    (
                        "d2h",
                        g.and_then(|g| g.d2h_total_mib)
                            .map(|v| Value::from(stats::round(v, 1)))
                            .unwrap_or(Value::Null),
                    ),
                    (
                        "samples_in_window",
                        Value::from(g.map(|g| g.pcie_samples_in_window as u64).unwrap_or(0)),
                    ),
                    ("source", Value::from(g.map(|g| g.pcie_source).unwrap_or("none"))),
                ]),
            ));
            rec.push((
                "pcie_sampled_per_frame".into(),
                match g.and_then(|g| g.sampled_per_frame) {
                    Some((h, d)) => json::obj(vec![
                        ("h2d", Value::from(h.round())),
                        ("d2h", Value::from(d.round())),
                        (
                            "method",
                            Value::from(
                                "nvmlDeviceGetPcieThroughput 20 ms windows integrated over the same window",
                            ),
                        ),
                    ]),
                    None => Value::Null,
                },
            ));
        }
        if let Some(g) = &r.gpu {
            if !o.pcie {
                rec.push(("gpu_sampling".into(), Value::from(g.method)));
            }
        }
        if let Some(sk) = &r.soak {
            soak_keys(&o, sk, &mut rec);
        }
        rec.push(("frames_in_cuda_memory".into(), Value::from(o.frames_cuda())));
        rec.push(("paced_realtime".into(), Value::from(o.pace && o.pace_rate == 1.0)));
        rec.push(("infer_props".into(), Value::from(o.infer_props.as_str())));
        rec.push((
            "element_warnings".into(),
            Value::from(
                ELEMENT_WARNINGS
                    .lock()
                    .map(|mut w| std::mem::take(&mut *w))
                    .unwrap_or_default(),
            ),
        ));
        rec.push((
            "pace_rate".into(),
            if o.pace {
                Value::from(o.pace_rate)
            } else {
                Value::Null
            },
        ));
        rec.push((
            "encode".into(),
            o.encode
                .as_ref()
                .map(|e| Value::from(format!("{e}enc speed-preset=ultrafast (no NVENC on the H100)")))
                .unwrap_or(Value::Null),
        ));
        match &reference {
            Some((name, rr)) => {
                rec.push((
                    "reference".into(),
                    json::obj(vec![
                        ("name", Value::from(name.clone())),
                        ("fps_total", Value::from(stats::round(rr.fps_total, 2))),
                        (
                            "cpu_cores",
                            rr.cpu_cores
                                .map(|c| Value::from(stats::round(c, 3)))
                                .unwrap_or(Value::Null),
                        ),
                        ("frames", Value::from(rr.frames)),
                        (
                            "h2d_bytes_per_frame",
                            rr.gpu
                                .as_ref()
                                .and_then(|g| g.h2d_per_frame)
                                .map(|v| Value::from(v.round()))
                                .unwrap_or(Value::Null),
                        ),
                        (
                            "d2h_bytes_per_frame",
                            rr.gpu
                                .as_ref()
                                .and_then(|g| g.d2h_per_frame)
                                .map(|v| Value::from(v.round()))
                                .unwrap_or(Value::Null),
                        ),
                        (
                            "latency_ms_p50",
                            rr.lat_ms
                                .map(|l| Value::from(stats::round(l.0, 3)))
                                .unwrap_or(Value::Null),
                        ),
                    ]),
                ));
                rec.push((
                    "ratio".into(),
                    if rr.fps_total > 0.0 {
                        Value::from(stats::round(r.fps_total / rr.fps_total, 4))
                    } else {
                        Value::Null
                    },
                ));
            }
            None => {
                rec.push(("reference".into(), Value::Null));
                rec.push(("ratio".into(), Value::Null));
            }
        }
        rec.push(("warmup_frames_per_camera".into(), Value::from(o.warmup)));
        rec.push(("frames_including_warmup".into(), Value::from(r.frames_all)));
        if !r.counters.is_empty() {
            // trtoverlay: frames drawn on the GPU; trtinfer: result bytes copied from the GPU.
            rec.push((
                "element_counters_including_warmup".into(),
                json::obj_owned(r.counters.clone()),
            ));
        }
        rec.push(("frames_left_sources".into(), Value::from(r.frames_sourced)));
        rec.push(("frames_unmatched".into(), Value::from(r.unmatched)));
        rec.push(("measured_wall_s".into(), Value::from(stats::round(r.wall_s, 3))));
        rec.push(("run_wall_s".into(), Value::from(stats::round(r.run_wall_s, 3))));
        rec.push(("cpu_window".into(), Value::from(r.cpu_window)));
        if let Some(st) = &st {
            // Stage timings skip the warm-up batches (≈ warmup frames per camera).
            rec.extend(stage_breakdown(
                st,
                o.warmup * o.cameras as u64 / o.batch_size().max(1) as u64,
            ));
        }
        summary = format!(
            "{what}: {} cams {}x{} {} model={} -> {:.1} fps total ({:.2}/cam), latency p50/p95/p99 {} ms, \
             {:.2} cores, rss steady {} MiB{}",
            o.cameras,
            o.width,
            o.height,
            o.format,
            model_name,
            r.fps_total,
            fps_cam,
            r.lat_ms
                .map(|l| format!("{:.1}/{:.1}/{:.1}", l.0, l.1, l.2))
                .unwrap_or("-".into()),
            r.cpu_cores.unwrap_or(f64::NAN),
            r.rss
                .as_ref()
                .map(|s| format!("{:.0}", s.steady))
                .unwrap_or("-".into()),
            reference
                .as_ref()
                .map(|(n, rr)| format!(
                    ", {n} {:.1} fps (ratio {:.3})",
                    rr.fps_total,
                    r.fps_total / rr.fps_total
                ))
                .unwrap_or_default()
        );
        if let Some(g) = &r.gpu {
            summary += &format!(
                "\nGPU: vram steady/peak {} MiB (device-wide), PCIe h2d {} / d2h {} bytes/frame",
                g.vram
                    .as_ref()
                    .map(|v| format!("{:.0}/{:.0}", v.steady, v.peak))
                    .unwrap_or("-".into()),
                g.h2d_per_frame.map(|v| format!("{v:.0}")).unwrap_or("-".into()),
                g.d2h_per_frame.map(|v| format!("{v:.0}")).unwrap_or("-".into()),
            );
        }
        if o.trtmux_overhead {
            let oh = trtmux_overhead(&o);
            rec.extend(oh.keys);
            summary += &format!("\n{}", oh.summary);
        }
    }
    let load_end = loadavg();
    rec.push((
        "loadavg".into(),
        json::obj(vec![
            (
                "start",
                Value::Array(load_start.into_iter().map(Value::from).collect()),
            ),
            (
                "end",
                Value::Array(load_end.into_iter().map(Value::from).collect()),
            ),
        ]),
    ));
    rec.push(("cpu_model".into(), Value::from(cpu_model)));
    rec.push(("cpu_logical_cores".into(), Value::from(cores as u64)));
    rec.push((
        "build".into(),
        Value::from(if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }),
    ));
    rec.push(("gstreamer".into(), Value::from(gst::version_string().to_string())));
    if on_gpu && !o.gpu_sampling() {
        rec.push((
            "note".into(),
            Value::from("GPU sampling off (--no-gpu-sample): vram_mib / h2d / d2h null"),
        ));
    }
    let text = json::to_string_pretty_ordered(&rec);
    match &o.out {
        Some(path) => {
            if let Some(dir) = path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            std::fs::write(path, format!("{text}\n"))
                .unwrap_or_else(|e| die(&format!("{}: {e}", path.display())));
            eprintln!("wrote {}", path.display());
        }
        None => println!("{text}"),
    }
    eprintln!("{summary}");
    if dirty {
        eprintln!("note: the working tree differs from HEAD; the record has commit_dirty=true");
    }
}
