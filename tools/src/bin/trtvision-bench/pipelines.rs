//! Pipeline descriptions (sources, stages, references) and running a pipeline to EOS.

use super::*;

pub(crate) fn source_desc(o: &Opts, i: u32, frames: u64) -> String {
    match &o.source {
        SourceKind::Scene => format!(
            "trtscenesrc name=src{i} camera={i} num-buffers={frames} is-live={live} \
             ! video/x-raw,format={fmt},width={w},height={h},framerate={fps}/1",
            live = o.live,
            fps = o.fps,
            fmt = o.format,
            w = o.width,
            h = o.height
        ),
        SourceKind::Files(dir) => {
            let dec = if o.nvdec { "nvh264dec" } else { o.decoder.as_str() };
            // The source's output (probed as the frame leaving the camera): the decoder, or
            // its CUDA caps filter, or the real-time pacing identity.
            let caps = if o.frames_cuda() {
                " ! capsfilter caps=\"video/x-raw(memory:CUDAMemory)\""
            } else {
                ""
            };
            let file = dir.join(format!("cam{i}.mp4"));
            // parsebin rather than `qtdemux ! h264parse`: under parse::launch a bare demuxer
            // can start pushing before the parser after it has started (it sorts as a sink
            // when its pads do not exist yet), and its task then stops on FLUSHING.
            let head = format!("filesrc location=\"{}\" ! parsebin ! {dec}", file.display());
            // The decoder is `dec{i}` unless it is the probed `src{i}` itself (soak loops
            // the file at the decoder's src pad).
            let head_named = format!("{head} name=dec{i}");
            let head = if o.pace || o.frames_cuda() {
                &head_named
            } else {
                &head
            };
            if o.pace {
                format!("{head}{caps} ! identity name=src{i} sync=true")
            } else if o.frames_cuda() {
                format!("{head}{caps} name=src{i}")
            } else {
                format!("{head} name=src{i}")
            }
        }
    }
}

/// `--pace Nx`: divides the timestamps of the buffers entering the pacing `identity` (pad
/// `sink`) and of their segment by `rate`, so that it releases them at `rate` times the
/// files' frame rate (running times stay consistent with the segment).
pub(crate) fn pace_at_rate(sink: &gst::Pad, rate: f64) {
    let scale = move |t: gst::ClockTime| gst::ClockTime::from_nseconds((t.nseconds() as f64 / rate) as u64);
    sink.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
        move |_, info| {
            match &mut info.data {
                Some(gst::PadProbeData::Buffer(buf)) => {
                    let b = buf.make_mut();
                    b.set_pts(b.pts().map(scale));
                    b.set_dts(b.dts().map(scale));
                    b.set_duration(b.duration().map(scale));
                }
                Some(gst::PadProbeData::Event(ev)) => {
                    if let gst::EventView::Segment(e) = ev.view() {
                        if let Ok(seg) = e.segment().clone().downcast::<gst::ClockTime>() {
                            let mut s = seg.clone();
                            s.set_start(seg.start().map(scale));
                            s.set_stop(seg.stop().map(scale));
                            s.set_time(seg.time().map(scale));
                            s.set_position(seg.position().map(scale));
                            s.set_base(seg.base().map(scale));
                            s.set_duration(seg.duration().map(scale));
                            let mut new = gst::event::Segment::builder(&s).seqnum(ev.seqnum()).build();
                            std::mem::swap(ev, &mut new);
                        }
                    }
                }
                _ => {}
            }
            gst::PadProbeReturn::Ok
        },
    );
}

pub(crate) fn stage_desc(o: &Opts, stage: &str) -> String {
    let cfg = o
        .model
        .as_ref()
        .map(|m| m.display().to_string())
        .unwrap_or_default();
    match stage {
        "preprocess" => format!("trtpreprocess name=st_preprocess config-file=\"{cfg}\""),
        "infer" => format!(
            "trtinfer name=st_infer model=\"{cfg}\" backend={} {}",
            o.backend, o.infer_props
        ),
        "depth-preprocess" => format!(
            "trtpreprocess name=st_depth-preprocess config-file=\"{}\" sources={}",
            o.depth_model.display(),
            o.depth_sources
        ),
        "depth-infer" => format!(
            "trtinfer name=st_depth-infer model=\"{}\" backend={}",
            o.depth_model.display(),
            o.backend
        ),
        "landmarks" => format!(
            "trtinfer name=st_landmarks model=\"{}\" backend={} operate-on=objects operate-on-model=\"{}\"",
            o.landmarks_model.display(),
            o.backend,
            model_name_of(&cfg)
        ),
        "maskselect" if o.device_masks => "trtmaskselect name=st_maskselect download-masks=false".into(),
        "maskselect" => "trtmaskselect name=st_maskselect".into(),
        "overlay" if o.stages().iter().any(|s| s == "depth-infer") => {
            "trtoverlay name=st_overlay dense-colormap=turbo".into()
        }
        "overlay" => "trtoverlay name=st_overlay".into(),
        "jsonexport" => "trtjsonexport name=st_jsonexport location=/dev/null".into(),
        _ => unreachable!(),
    }
}

/// The `[model] name` of a model config (what its trtinfer tags detections with).
pub(crate) fn model_name_of(cfg: &str) -> String {
    match gsttrtvision::config::ModelConfig::from_file(cfg) {
        Ok(c) => c.name,
        Err(e) => die(&format!("--model: {e}")),
    }
}

pub(crate) fn main_desc(o: &Opts) -> String {
    let mut d = format!("trtmux name=m batch-size={}", o.batch_size());
    if let Some(t) = o.push_timeout {
        d += &format!(" batched-push-timeout={t}");
    }
    for s in o.stages() {
        d += " ! ";
        d += &stage_desc(o, &s);
    }
    let sync = o.live;
    match o.sink {
        SinkKind::Demux => {
            d += " ! trtdemux name=d";
            for i in 0..o.cameras {
                match o.encode.as_deref() {
                    Some("x264") => {
                        let down = if o.frames_cuda() { "cudadownload ! " } else { "" };
                        d += &format!(
                            " d.src_{i} ! queue ! {down}videoconvert ! x264enc speed-preset=ultrafast \
                             ! fakesink name=out{i} sync={sync} async=false"
                        );
                    }
                    _ => d += &format!(" d.src_{i} ! fakesink name=out{i} sync={sync} async=false"),
                }
            }
        }
        SinkKind::Tiler => {
            d += &format!(" ! trttiler name=t ! fakesink name=out0 sync={sync} async=false");
        }
        SinkKind::Fakesink => {
            d += &format!(" ! fakesink name=out0 sync={sync} async=false");
        }
    }
    for i in 0..o.cameras {
        d += &format!(" {} ! m.sink_{i}", source_desc(o, i, o.frames));
    }
    d
}

pub(crate) fn reference_desc(o: &Opts) -> String {
    (0..o.cameras)
        .map(|i| {
            format!(
                "{} ! fakesink name=out{i} sync={} async=false",
                source_desc(o, i, o.frames),
                o.live
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub(crate) fn parse(desc: &str) -> gst::Pipeline {
    gst::parse::launch(desc)
        .unwrap_or_else(|e| die(&format!("pipeline does not parse: {e}\n{desc}")))
        .downcast::<gst::Pipeline>()
        .expect("is a pipeline")
}

/// Runs to EOS; returns an error message on error or timeout.
/// Warnings elements posted during runs, taken into the next record written.
pub(crate) static ELEMENT_WARNINGS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

pub(crate) fn run_to_eos(p: &gst::Pipeline, timeout_s: u64) -> Result<(), String> {
    run_to_eos_then(p, timeout_s, None, || ())
}

/// Like [`run_to_eos`]; `at_eos` runs after EOS, before the pipeline stops (its streaming
/// threads still exist then). With `stop_after`, the sources are sent EOS once that long has
/// passed since PLAYING (what `gst-launch-1.0 -e` does on Ctrl-C), and the pipeline drains.
pub(crate) fn run_to_eos_then(
    p: &gst::Pipeline,
    timeout_s: u64,
    stop_after: Option<Duration>,
    at_eos: impl FnOnce(),
) -> Result<(), String> {
    let bus = p.bus().unwrap();
    let started = gsttrtvision::launch::play_sources_last(p).is_ok();
    if !started {
        let msg = bus.timed_pop_filtered(gst::ClockTime::from_seconds(5), &[gst::MessageType::Error]);
        let _ = p.set_state(gst::State::Null);
        return Err(match msg.as_ref().map(|m| m.view()) {
            Some(gst::MessageView::Error(e)) => format!("{} ({:?})", e.error(), e.debug()),
            _ => "state change failed".into(),
        });
    }
    let types = [
        gst::MessageType::Eos,
        gst::MessageType::Error,
        gst::MessageType::Warning,
    ];
    // The next EOS or error before `deadline`; warnings on the way are kept for the record.
    let next = |deadline: Instant| loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = bus.timed_pop_filtered(gst::ClockTime::from_nseconds(left.as_nanos() as u64), &types)?;
        if let gst::MessageView::Warning(w) = m.view() {
            let text = format!(
                "{}: {}",
                w.src().map(|s| s.path_string().to_string()).unwrap_or_default(),
                w.error()
            );
            eprintln!("warning: {text}");
            if let Ok(mut all) = ELEMENT_WARNINGS.lock() {
                all.push(text);
            }
            continue;
        }
        return Some(m);
    };
    let mut msg = None;
    if let Some(d) = stop_after {
        msg = next(Instant::now() + d);
        if msg.is_none() {
            p.send_event(gst::event::Eos::new());
        }
    }
    let msg = msg.or_else(|| next(Instant::now() + Duration::from_secs(timeout_s)));
    let res = match msg {
        None => Err(format!("timed out after {timeout_s} s")),
        Some(m) => match m.view() {
            gst::MessageView::Eos(_) => {
                at_eos();
                Ok(())
            }
            gst::MessageView::Error(e) => Err(format!(
                "{}: {} ({:?})",
                e.src().map(|s| s.path_string().to_string()).unwrap_or_default(),
                e.error(),
                e.debug()
            )),
            _ => unreachable!(),
        },
    };
    let _ = p.set_state(gst::State::Null);
    res
}
