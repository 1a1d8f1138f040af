//! `--pcie-probe`: PCIe bytes of the driver's own command traffic (cargo feature `cuda`).

use super::*;

/// `--pcie-probe`: NVML's PCIe counters with nothing running, then with kernel launches
/// only (no copy): how many bytes the driver's own command traffic puts on the bus per
/// launch, to tell it apart from data in the pipeline measurements.
#[cfg(feature = "cuda")]
pub(crate) fn pcie_probe(o: &Opts) -> Result<Value, String> {
    use gsttrtvision::config::PreprocessConfig;
    use gsttrtvision::cuda::{CudaFrame, DeviceBuffer, DeviceContext, Event};
    use gsttrtvision::ops::preprocess::cuda::CudaPreprocessor;
    use gsttrtvision::tensor::DType;
    let nvml = gpumon::Nvml::open(o.device_id.max(0) as u32)?;
    let ctx = DeviceContext::primary(o.device_id).map_err(|e| e.to_string())?;
    let (w, h) = (64u32, 64u32);
    let frame_mem = DeviceBuffer::new(&ctx, (w * h * 3 / 2) as usize).map_err(|e| e.to_string())?;
    frame_mem
        .copy_from_host(&vec![128u8; (w * h * 3 / 2) as usize])
        .map_err(|e| e.to_string())?;
    // SAFETY: both planes lie in the live allocation above (Y 64x64, UV 64x32).
    let frame = unsafe {
        CudaFrame::from_raw(
            gst_video::VideoFormat::Nv12,
            w,
            h,
            &[frame_mem.ptr(), frame_mem.ptr() + (w * h) as u64],
            &[w as usize, w as usize],
        )
    }
    .map_err(|e| e.to_string())?;
    let cfg = PreprocessConfig {
        width: 64,
        height: 64,
        dtype: DType::F16,
        ..Default::default()
    };
    let mut pre = CudaPreprocessor::new(&ctx, &cfg, 1).map_err(|e| e.to_string())?;
    // A second stream for the cross-stream phase: each launch waits on the other stream's
    // last launch (cuStreamWaitEvent), as the pipeline's elements wait on each other.
    let mut other = CudaPreprocessor::new(&ctx, &cfg, 1).map_err(|e| e.to_string())?;
    let (ev_a, ev_b) = (
        Event::new(&ctx, false).map_err(|e| e.to_string())?,
        Event::new(&ctx, false).map_err(|e| e.to_string())?,
    );
    let transform = [cfg.transform(w, h)];
    let frames = [frame];
    let secs = o.pcie_probe_s as f64;
    let t0 = Instant::now();
    #[derive(PartialEq)]
    enum Phase {
        Idle,
        Launches,
        CrossStream,
        Copies,
        BlockedWaits,
        HostFuncs,
    }
    // A host function that takes 300 us (a busy callback thread): the stream behind it
    // waits for the host, as ONNX Runtime's stream does once per run (cuLaunchHostFunc).
    extern "C" fn slow_host_fn(_: *mut std::ffi::c_void) {
        std::thread::sleep(std::time::Duration::from_micros(300));
    }
    // Long GPU work for the blocked-wait phases: 512 MiB device-to-device copies (~0.35 ms
    // each on an H100) on the second stream.
    let big = 512usize << 20;
    let (big_a, big_b) = (
        DeviceBuffer::new(&ctx, big).map_err(|e| e.to_string())?,
        DeviceBuffer::new(&ctx, big).map_err(|e| e.to_string())?,
    );
    let copy_on = |stream: cudarc::driver::sys::CUstream| -> Result<(), String> {
        let _g = ctx.push().map_err(|e| e.to_string())?;
        // SAFETY: two live allocations of `big` bytes of this context; a live stream of it.
        let r = unsafe { cudarc::driver::sys::cuMemcpyDtoDAsync_v2(big_b.ptr(), big_a.ptr(), big, stream) };
        if r == cudarc::driver::sys::CUresult::CUDA_SUCCESS {
            Ok(())
        } else {
            Err(format!("cuMemcpyDtoDAsync: {r:?}"))
        }
    };
    let mut phase = |what: Phase, pre: &mut CudaPreprocessor| -> Result<(f64, f64, u64, usize), String> {
        let sampler = gpumon::GpuSampler::start(Some(nvml.clone()), t0, true, 0)
            .ok_or("NVML sampling did not start")?;
        let a = t0.elapsed().as_nanos() as u64;
        let start = Instant::now();
        let mut launches = 0u64;
        let err = |e: gsttrtvision::cuda::CudaError| e.to_string();
        while start.elapsed().as_secs_f64() < secs {
            match what {
                Phase::Idle => std::thread::sleep(std::time::Duration::from_millis(20)),
                Phase::Launches => {
                    for _ in 0..64 {
                        drop(pre.run(&frames, &transform).map_err(err)?);
                        launches += 1;
                    }
                    pre.synchronize().map_err(err)?;
                }
                Phase::CrossStream => {
                    for _ in 0..32 {
                        // SAFETY: live streams of `ctx`, events of `ctx`.
                        unsafe {
                            ev_b.wait_on(pre.stream()).map_err(err)?;
                            drop(pre.run(&frames, &transform).map_err(err)?);
                            ev_a.record(pre.stream()).map_err(err)?;
                            ev_a.wait_on(other.stream()).map_err(err)?;
                            drop(other.run(&frames, &transform).map_err(err)?);
                            ev_b.record(other.stream()).map_err(err)?;
                        }
                        launches += 2;
                    }
                    other.synchronize().map_err(err)?;
                }
                Phase::HostFuncs => {
                    for _ in 0..8 {
                        {
                            let _g = ctx.push().map_err(err)?;
                            // SAFETY: a live stream of `ctx`; the function takes no data.
                            let r = unsafe {
                                cudarc::driver::sys::cuLaunchHostFunc(
                                    pre.stream(),
                                    Some(slow_host_fn),
                                    std::ptr::null_mut(),
                                )
                            };
                            if r != cudarc::driver::sys::CUresult::CUDA_SUCCESS {
                                return Err(format!("cuLaunchHostFunc: {r:?}"));
                            }
                        }
                        drop(pre.run(&frames, &transform).map_err(err)?);
                        launches += 1;
                    }
                    pre.synchronize().map_err(err)?;
                }
                Phase::Copies | Phase::BlockedWaits => {
                    // The copy on the other stream, then (blocked waits only) this stream
                    // waits for it on the GPU before its launch: the wait is queued long
                    // before the copy ends.
                    for _ in 0..8 {
                        copy_on(other.stream())?;
                        if what == Phase::BlockedWaits {
                            // SAFETY: live streams of `ctx`, an event of `ctx`.
                            unsafe {
                                ev_a.record(other.stream()).map_err(err)?;
                                ev_a.wait_on(pre.stream()).map_err(err)?;
                            }
                        }
                        drop(pre.run(&frames, &transform).map_err(err)?);
                        launches += 1;
                    }
                    other.synchronize().map_err(err)?;
                    pre.synchronize().map_err(err)?;
                }
            }
        }
        let z = t0.elapsed().as_nanos() as u64;
        let samples = sampler.finish();
        let p = gpumon::pcie_bytes(&samples, a, z);
        let rx = p.map(|p| p.h2d).unwrap_or(f64::NAN);
        let tx = p.map(|p| p.d2h).unwrap_or(f64::NAN);
        Ok((rx, tx, launches, p.map(|p| p.readings).unwrap_or(0)))
    };
    let (idle_rx, idle_tx, _, idle_n) = phase(Phase::Idle, &mut pre)?;
    let (rx, tx, launches, n) = phase(Phase::Launches, &mut pre)?;
    let (xrx, xtx, xlaunches, xn) = phase(Phase::CrossStream, &mut pre)?;
    let (crx, ctx_bytes, copies, cn) = phase(Phase::Copies, &mut pre)?;
    let (brx, btx, blocked, bn) = phase(Phase::BlockedWaits, &mut pre)?;
    let (hrx, htx, hostfns, hn) = phase(Phase::HostFuncs, &mut pre)?;
    let per = |total: f64, idle: f64, count: u64| (total - idle) / count.max(1) as f64;
    // A phase's bytes per second, and per `unit` (launch, host function) above the idle rate.
    let rates = |rx: f64, tx: f64, count: u64, unit: &str, extra: Value| -> Value {
        let mut m = match extra {
            Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        m.insert("h2d_bytes_per_s".into(), json!(round(rx / secs, 0)));
        m.insert("d2h_bytes_per_s".into(), json!(round(tx / secs, 0)));
        m.insert(
            format!("h2d_bytes_per_{unit}_above_idle"),
            json!(round(per(rx, idle_rx, count), 1)),
        );
        m.insert(
            format!("d2h_bytes_per_{unit}_above_idle"),
            json!(round(per(tx, idle_tx, count), 1)),
        );
        Value::Object(m)
    };
    Ok(json!({
        "probe": "pcie",
        "device": gpumon::gpu_name(Some(&nvml)),
        "seconds_per_phase": secs,
        "idle": {"h2d_bytes_per_s": round(idle_rx / secs, 0), "d2h_bytes_per_s": round(idle_tx / secs, 0), "samples": idle_n},
        "launches": rates(rx, tx, launches, "launch", json!({
            "count": launches,
            "per_s": round(launches as f64 / secs, 0),
            "samples": n,
        })),
        "cross_stream": rates(xrx, xtx, xlaunches, "launch", json!({
            "launches": xlaunches,
            "per_s": round(xlaunches as f64 / secs, 0),
            "samples": xn,
            "what": "the same launches alternating between two streams, each waiting on the other's last launch (cuStreamWaitEvent)",
        })),
        "copies": {
            "count": copies,
            "h2d_bytes_per_s": round(crx / secs, 0),
            "d2h_bytes_per_s": round(ctx_bytes / secs, 0),
            "samples": cn,
            "what": "512 MiB device-to-device copies on one stream, each followed by a launch on the other stream without waiting (the control of blocked_waits)",
        },
        "blocked_waits": {
            "count": blocked,
            "h2d_bytes_per_s": round(brx / secs, 0),
            "d2h_bytes_per_s": round(btx / secs, 0),
            "h2d_bytes_per_wait_above_copies": round(per(brx * copies as f64 / blocked.max(1) as f64, crx, copies), 1),
            "h2d_bytes_per_s_above_copies": round((brx - crx) / secs, 0),
            "samples": bn,
            "what": "the same copies and launches, each launch first waiting on the GPU (cuStreamWaitEvent) for the copy before it: the wait is queued ~0.35 ms before it is satisfied",
        },
        "host_funcs": rates(hrx, htx, hostfns, "host_func", json!({
            "count": hostfns,
            "samples": hn,
            "what": "cuLaunchHostFunc of a 300 us host function, then a launch behind it on the same stream (the stream waits ~0.3 ms for the host each time), 8 then a synchronize",
        })),
        "what": "each launch: trtpreprocess's kernel on one 64x64 NV12 frame (its NV12 entry point for batches of up to 8: 768 bytes of parameters inside the launch, no copy; 3 KiB before commit 460adc1), an event record; 64 launches then one stream synchronize",
    }))
}

#[cfg(not(feature = "cuda"))]
pub(crate) fn pcie_probe(_o: &Opts) -> Result<Value, String> {
    Err("this binary was built without the cargo feature `cuda`".into())
}
