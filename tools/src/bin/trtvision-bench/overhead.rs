//! trtmux overhead: CPU and wall time of N cameras with and without trtmux, alternated.

use super::*;

pub(crate) struct Overhead {
    pub(crate) keys: Vec<(String, Value)>,
    pub(crate) summary: String,
}

pub(crate) fn trtmux_overhead(o: &Opts) -> Overhead {
    let n = o.cameras;
    let frames = o.overhead_frames.unwrap_or(o.frames.max(600));
    let reps = o.overhead_reps.max(1);
    let own_stats: std::cell::RefCell<Vec<(u64, u64)>> = std::cell::RefCell::new(Vec::new());
    // (process CPU s, wall s, on-CPU ns of the trtmux src thread, of the queue src threads)
    let run = |desc: &str| -> (f64, f64, u64, u64) {
        let p = parse(desc);
        let before = thread_cpu_ns();
        let c0 = cpu_time_s();
        let t0 = Instant::now();
        let mut end = (0.0, 0.0, Vec::new());
        if let Err(e) = run_to_eos_then(&p, o.timeout_s, None, || {
            end = (cpu_time_s(), t0.elapsed().as_secs_f64(), thread_cpu_ns());
            // trtmux's own time per batch (its `stats` property), without the base class.
            if let Some(m) = p.by_name("m") {
                let s = m.property::<gst::Structure>("stats");
                if let (Ok(b), Ok(ns)) = (s.get::<u64>("batches"), s.get::<u64>("total-ns")) {
                    own_stats.borrow_mut().push((b, ns));
                }
            }
        }) {
            eprintln!("trtvision-bench: overhead pipeline failed: {e}");
            std::process::exit(1);
        }
        // Pooled threads are reused (and renamed) across runs: per thread id, subtract
        // what it had used before this run.
        let mux = thread_cpu_delta(&before, &end.2, &|k: &str| k == "m:src");
        let queues = thread_cpu_delta(&before, &end.2, &|k: &str| {
            k.starts_with("queue") && k.ends_with(":src")
        });
        (end.0 - c0, end.1, mux, queues)
    };
    let small = (frames / 5).max(1);
    let desc_n = |f: u64| -> (String, String) {
        let srcs = |sink: &dyn Fn(u32) -> String| -> String {
            (0..n)
                .map(|i| format!("{} ! queue ! {}", source_desc(o, i, f), sink(i)))
                .collect::<Vec<_>>()
                .join(" ")
        };
        (
            format!(
                "trtmux name=m batch-size={n} ! fakesink name=out0 sync=false async=false {}",
                srcs(&|i| format!("m.sink_{i}"))
            ),
            srcs(&|i| format!("fakesink name=out{i} sync=false async=false")),
        )
    };
    let (with_mux, without) = desc_n(frames);
    let (a_big, b_big) = (with_mux.clone(), without.clone());
    let (a_small, b_small) = desc_n(small);
    // One unmeasured run of each to warm caches and the registry.
    run(&a_small);
    run(&b_small);
    // Per repetition: with and without trtmux at `frames` and at `small` batches, in an
    // order that alternates, so slow drifts of the machine's load cancel out.
    let (mut dcpu, mut dwall) = (Vec::new(), Vec::new());
    let (mut ncpu, mut nwall) = (Vec::new(), Vec::new());
    let (mut mux_thread, mut queue_diff) = (Vec::new(), Vec::new());
    let (mut cpu_a, mut cpu_b, mut wall_a, mut wall_b) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for r in 0..reps {
        let order: [&str; 4] = if r % 2 == 0 {
            [&a_big, &b_big, &a_small, &b_small]
        } else {
            [&b_small, &a_small, &b_big, &a_big]
        };
        let mut got: HashMap<&str, (f64, f64, u64, u64)> = HashMap::new();
        for d in order {
            got.insert(d, run(d));
        }
        let (ab, bb, as_, bs) = (
            got[a_big.as_str()],
            got[b_big.as_str()],
            got[a_small.as_str()],
            got[b_small.as_str()],
        );
        // Naive: (with − without) / batches at `frames` (includes per-run fixed costs).
        ncpu.push((ab.0 - bb.0) / frames as f64 * 1e6);
        nwall.push((ab.1 - bb.1) / frames as f64 * 1e6);
        // Marginal: difference of the differences between `frames` and `small` batches,
        // which removes the per-run fixed costs (pads, threads, start/stop).
        let db = (frames - small) as f64;
        dcpu.push(((ab.0 - bb.0) - (as_.0 - bs.0)) / db * 1e6);
        dwall.push(((ab.1 - bb.1) - (as_.1 - bs.1)) / db * 1e6);
        mux_thread.push(ab.2 as f64 / frames as f64 / 1e3);
        queue_diff.push((ab.3 as f64 - bb.3 as f64) / frames as f64 / 1e3);
        cpu_a.push(ab.0);
        cpu_b.push(bb.0);
        wall_a.push(ab.1);
        wall_b.push(bb.1);
    }
    // Batching delay: last frame of a batch arriving at a trtmux sink pad → batch pushed.
    let (c2p, batches_seen, fill) = complete_to_push(o, frames, &with_mux);
    let cpu_med = stats::median(&mut dcpu.clone());
    let wall_med = stats::median(&mut dwall.clone());
    let ncpu_med = stats::median(&mut ncpu.clone());
    let mux_thread_med = stats::median(&mut mux_thread.clone());
    let queue_diff_med = stats::median(&mut queue_diff.clone());
    let nwall_med = stats::median(&mut nwall.clone());
    let mut c2p_v = c2p;
    let c2p_obj = if c2p_v.is_empty() {
        Value::Null
    } else {
        json::obj(vec![
            (
                "p50",
                Value::from(stats::round(stats::percentile(&mut c2p_v, 50.0), 1)),
            ),
            (
                "p95",
                Value::from(stats::round(stats::percentile(&mut c2p_v, 95.0), 1)),
            ),
            (
                "p99",
                Value::from(stats::round(stats::percentile(&mut c2p_v, 99.0), 1)),
            ),
        ])
    };
    let rnd = |v: &[f64], d: u32| Value::Array(v.iter().map(|x| Value::from(stats::round(*x, d))).collect());
    let method = format!(
        "{n} x (trtscenesrc {w}x{h} {fmt} num-buffers={frames} ! queue) -> trtmux batch-size={n} -> fakesink \
         vs the same {n} sources each ! queue ! fakesink; identical frame counts; process CPU time (getrusage user+sys, all \
         threads) and wall time from set_state(PLAYING) to EOS. Each of {reps} repetitions runs both pipelines at \
         {frames} and at {small} frames per camera (order alternating between repetitions, one unmeasured warm-up \
         run of each first). trtmux_cpu_us_per_batch (= trtmux_us_per_batch) = median over repetitions of \
         ((with-without)@{frames} - (with-without)@{small}) / ({frames}-{small}) batches, i.e. the marginal cost \
         per batch with per-run fixed costs (pad/thread set-up, start/stop) removed; *_naive = (with-without)@{frames} \
         / {frames}. Note the CPU difference also contains what trtmux causes elsewhere (thread hand-offs, \
         context switches, the batch buffer reaching fakesink), which is part of its real cost. \
         Per-thread view (/proc/self/task/*/schedstat on-CPU ns, read at EOS before stopping): \
         trtmux_src_thread_cpu_us_per_batch = on-CPU time of the trtmux src task thread 'm:src' (aggregate(), \
         batch meta, push into fakesink, its futex waits/wake-ups) / {frames} batches; \
         trtmux_sink_side_cpu_us_per_batch = (queue src threads with trtmux - without) / {frames}: what pushing \
         the frames into trtmux sink pads costs the upstream threads compared with pushing them into fakesinks. \
         Their sum is the most direct estimate; the process-CPU difference is the noisiest one. trtmux_complete_to_push_us: separate probed run of the trtmux pipeline, time \
         from the last frame of a batch entering a trtmux sink pad (pad probe) to the batch leaving the trtmux \
         src pad (pad probe): aggregator wake-up + aggregate() per batch.",
        w = o.width,
        h = o.height,
        fmt = o.format
    );
    let keys = vec![
        (
            "trtmux_us_per_batch".to_string(),
            Value::from(stats::round(cpu_med, 2)),
        ),
        (
            "trtmux_cpu_us_per_batch".to_string(),
            Value::from(stats::round(cpu_med, 2)),
        ),
        (
            "trtmux_wall_us_per_batch".to_string(),
            Value::from(stats::round(wall_med, 2)),
        ),
        (
            "trtmux_cpu_us_per_batch_naive".to_string(),
            Value::from(stats::round(ncpu_med, 2)),
        ),
        (
            "trtmux_wall_us_per_batch_naive".to_string(),
            Value::from(stats::round(nwall_med, 2)),
        ),
        (
            "trtmux_own_us_per_batch".to_string(),
            {
                let v = own_stats.borrow();
                let (b, ns) = v.iter().fold((0u64, 0u64), |a, x| (a.0 + x.0, a.1 + x.1));
                if b > 0 {
                    Value::from(stats::round(ns as f64 / b as f64 / 1e3, 2))
                } else {
                    Value::Null
                }
            },
        ),
        (
            "trtmux_own_method".to_string(),
            Value::from("trtmux `stats` property: wall time inside aggregate() from entry to just before the batch is pushed (popping the frames, building the batch meta), summed over every run with trtmux and divided by its batches; excludes the aggregator base class's waiting/wake-ups and everything downstream"),
        ),
        (
            "trtmux_src_thread_cpu_us_per_batch".to_string(),
            Value::from(stats::round(mux_thread_med, 2)),
        ),
        (
            "trtmux_src_thread_cpu_us_per_batch_reps".to_string(),
            rnd(&mux_thread, 2),
        ),
        (
            "trtmux_sink_side_cpu_us_per_batch".to_string(),
            Value::from(stats::round(queue_diff_med, 2)),
        ),
        (
            "trtmux_sink_side_cpu_us_per_batch_reps".to_string(),
            rnd(&queue_diff, 2),
        ),
        ("trtmux_cpu_us_per_batch_reps".to_string(), rnd(&dcpu, 2)),
        ("trtmux_wall_us_per_batch_reps".to_string(), rnd(&dwall, 2)),
        ("trtmux_cpu_s_with_mux_reps".to_string(), rnd(&cpu_a, 4)),
        ("trtmux_cpu_s_without_mux_reps".to_string(), rnd(&cpu_b, 4)),
        ("trtmux_wall_s_with_mux_reps".to_string(), rnd(&wall_a, 4)),
        ("trtmux_wall_s_without_mux_reps".to_string(), rnd(&wall_b, 4)),
        ("trtmux_complete_to_push_us".to_string(), c2p_obj.clone()),
        ("trtmux_overhead_batches".to_string(), Value::from(frames)),
        ("trtmux_overhead_batches_small".to_string(), Value::from(small)),
        (
            "trtmux_overhead_batches_seen_probed".to_string(),
            Value::from(batches_seen),
        ),
        (
            "trtmux_overhead_mean_batch_fill".to_string(),
            Value::from(stats::round(fill, 3)),
        ),
        ("trtmux_overhead_target_us".to_string(), Value::from(50u64)),
        ("trtmux_method".to_string(), Value::from(method)),
    ];
    let summary = format!(
        "trtmux overhead: src thread {mux_thread_med:.1} µs CPU/batch + sink side {queue_diff_med:.1} µs; process-CPU \
         difference {cpu_med:.1} µs/batch marginal ({ncpu_med:.1} naive), {wall_med:.1} µs wall/batch \
         ({nwall_med:.1} naive) (median of {reps}; per rep CPU {:?}), complete→push {}",
        dcpu.iter().map(|x| stats::round(*x, 1)).collect::<Vec<_>>(),
        json::to_string_compact(&c2p_obj)
    );
    Overhead { keys, summary }
}

/// Probed run of `desc` (which has trtmux `m`): per batch, µs from the arrival of its
/// last frame at a sink pad to the batch at the src pad.
pub(crate) fn complete_to_push(o: &Opts, _frames: u64, desc: &str) -> (Vec<f64>, u64, f64) {
    let p = parse(desc);
    let t0 = Instant::now();
    let arrivals: Arc<Mutex<HashMap<(u32, u64), u64>>> = Arc::new(Mutex::new(HashMap::new()));
    let m = p.by_name("m").unwrap();
    let mut pads = Vec::new();
    for i in 0..o.cameras {
        // Request pads were created by parse::launch for the links.
        let pad = m.static_pad(&format!("sink_{i}")).expect("trtmux sink pad");
        pads.push(pad);
    }
    for (i, pad) in pads.iter().enumerate() {
        let arrivals = arrivals.clone();
        let i = i as u32;
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(buf) = info.buffer() {
                let now = t0.elapsed().as_nanos() as u64;
                arrivals.lock().unwrap().insert((i, buf.offset()), now);
            }
            gst::PadProbeReturn::Ok
        });
    }
    let out: Arc<Mutex<(Vec<f64>, u64, u64)>> = Arc::new(Mutex::new((Vec::new(), 0, 0)));
    {
        let out = out.clone();
        let arrivals = arrivals.clone();
        m.static_pad("src")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                let now = t0.elapsed().as_nanos() as u64;
                if let Some(buf) = info.buffer() {
                    if let Some(meta) = buf.meta::<gsttrtvision::batch::BatchMeta>() {
                        let mut a = arrivals.lock().unwrap();
                        let last = meta
                            .batch()
                            .slots
                            .iter()
                            .filter_map(|s| a.remove(&(s.pad_index(), s.buffer.offset())))
                            .max();
                        drop(a);
                        let mut o = out.lock().unwrap();
                        o.1 += 1;
                        o.2 += meta.batch().slots.len() as u64;
                        if let Some(l) = last {
                            o.0.push(now.saturating_sub(l) as f64 / 1e3);
                        }
                    }
                }
                gst::PadProbeReturn::Ok
            });
    }
    if let Err(e) = run_to_eos(&p, o.timeout_s) {
        eprintln!("trtvision-bench: probed trtmux pipeline failed: {e}");
        std::process::exit(1);
    }
    drop(p);
    let o = std::mem::take(&mut *out.lock().unwrap());
    let fill = if o.1 > 0 { o.2 as f64 / o.1 as f64 } else { 0.0 };
    (o.0, o.1, fill)
}
