//! Shared test set-up: registers the plugin statically and locates the generated models.
#![allow(dead_code)]

#[cfg(feature = "cuda")]
pub mod cuda;
pub mod groundtruth;
pub mod mqtt;
pub mod serve;

use gst::glib;
use gst::prelude::*;
use std::path::PathBuf;
use std::sync::Once;

pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().expect("GStreamer initialises");
        gsttrtvision::plugin_register_static().expect("plugin registers");
    });
}

/// A `gst_check::Harness` around a new `factory` element configured first: `props`, then
/// `context` (e.g. a `gst.cuda.context`). The harness sets a non-source element to PLAYING
/// as soon as it wraps it, so properties read on start and contexts taken on NULL→READY
/// must be on the element before (setting them on `Harness::new`'s element is too late).
pub fn harness(
    factory: &str,
    props: &[(&str, &dyn glib::value::ToValue)],
    context: Option<&gst::Context>,
) -> gst_check::Harness {
    init();
    let element = gst::ElementFactory::make(factory)
        .build()
        .unwrap_or_else(|e| panic!("{factory}: {e}"));
    for (name, value) in props {
        set_property_value(&element, name, &value.to_value());
    }
    if let Some(c) = context {
        element.set_context(c);
    }
    gst_check::Harness::with_element(&element, Some("sink"), Some("src"))
}

/// Sets `name` from `value`; a string given for an enumerated property is its nick, as in
/// gst-launch descriptions.
pub fn set_property_value(element: &gst::Element, name: &str, value: &glib::Value) {
    let is_enum = element
        .find_property(name)
        .is_some_and(|p| p.value_type().is_a(glib::Type::ENUM));
    match value.get::<&str>() {
        Ok(nick) if is_enum => element.set_property_from_str(name, nick),
        _ => element.set_property_from_value(name, value),
    }
}

/// The nick of the value of the enumerated property `name` (e.g. "auto").
pub fn enum_nick(element: &impl IsA<glib::Object>, name: &str) -> String {
    let value = element.property_value(name);
    let (_, v) = glib::EnumValue::from_value(&value).unwrap_or_else(|| panic!("{name} is not an enum"));
    v.nick().to_string()
}

/// Directory with the committed model configs (engines/).
pub fn engines_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("engines")
}

/// Path of a committed model config in engines/, as a pipeline property value.
pub fn cfg(name: &str) -> String {
    engines_dir().join(name).display().to_string()
}

/// A path named `name` in a scratch directory of this test process (`tag` tells test files
/// apart).
pub fn temp_path(tag: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("trtvision-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join(name)
}

/// Path of a generated model; panics with the command to generate it when missing.
pub fn model(name: &str) -> PathBuf {
    let p = engines_dir().join("models").join(name);
    assert!(
        p.exists(),
        "{} is missing: run `scripts/setup.sh` or \
         `python3 engines/generate_models.py --out engines/models --yolo11` first",
        p.display()
    );
    p
}

/// Runs `pipeline` to EOS or error, with a timeout; returns the error message if any.
pub fn run_to_end(pipeline: &gst::Pipeline, timeout: gst::ClockTime) -> Result<(), String> {
    let bus = pipeline.bus().expect("pipeline has a bus");
    if pipeline.set_state(gst::State::Playing).is_err() {
        // The element that failed posted the reason on the bus.
        let msg = bus.timed_pop_filtered(gst::ClockTime::from_seconds(5), &[gst::MessageType::Error]);
        pipeline.set_state(gst::State::Null).expect("pipeline stops");
        return Err(match msg.as_ref().map(|m| m.view()) {
            Some(gst::MessageView::Error(e)) => {
                format!(
                    "{} ({})",
                    e.error(),
                    e.debug().map(|d| d.to_string()).unwrap_or_default()
                )
            }
            _ => "state change failed without an error message".to_string(),
        });
    }
    let msg = bus.timed_pop_filtered(timeout, &[gst::MessageType::Eos, gst::MessageType::Error]);
    let res = match msg.as_ref().map(|m| m.view()) {
        None => Err("timed out".to_string()),
        Some(gst::MessageView::Error(e)) => Err(format!(
            "{} ({})",
            e.error(),
            e.debug().map(|d| d.to_string()).unwrap_or_default()
        )),
        Some(_) => Ok(()),
    };
    pipeline.set_state(gst::State::Null).expect("pipeline stops");
    res
}

/// Collects every buffer reaching the appsink named `name` in `pipeline`.
pub fn collect(pipeline: &gst::Pipeline, name: &str) -> std::sync::Arc<std::sync::Mutex<Vec<gst::Buffer>>> {
    let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = pipeline
        .by_name(name)
        .expect("appsink exists")
        .downcast::<gst_app::AppSink>()
        .expect("is an appsink");
    let o = out.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                if let Some(b) = sample.buffer_owned() {
                    o.lock().unwrap().push(b);
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    out
}

/// Runs `f` on its own thread and fails if it has not returned after `secs` seconds (the
/// stuck thread is left behind; the test binary exits at the end anyway).
pub fn within<T: Send + 'static>(secs: u64, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(std::time::Duration::from_secs(secs)) {
        Ok(Ok(v)) => v,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("{what}: did not finish within {secs} s (hang)"),
    }
}

/// Calls `f` with every sample reaching the appsink named `name` in `pipeline`.
pub fn on_sample(pipeline: &gst::Pipeline, name: &str, mut f: impl FnMut(&gst::Sample) + Send + 'static) {
    let sink = pipeline
        .by_name(name)
        .unwrap_or_else(|| panic!("appsink {name} exists"))
        .downcast::<gst_app::AppSink>()
        .expect("is an appsink");
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                f(&sample);
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
}

pub fn parse(desc: &str) -> gst::Pipeline {
    gst::parse::launch(desc)
        .unwrap_or_else(|e| panic!("pipeline '{desc}' does not parse: {e}"))
        .downcast::<gst::Pipeline>()
        .expect("is a pipeline")
}

/// A batch buffer (payload-less, with its `TrtVisionBatchMeta`) of `slots`.
pub fn batch_buffer(batch_size: usize, slots: Vec<gsttrtvision::batch::FrameSlot>) -> gst::Buffer {
    let mut buf = gst::Buffer::new();
    gsttrtvision::batch::BatchMeta::add(
        buf.get_mut().expect("new buffers are writable"),
        gsttrtvision::batch::Batch {
            slots,
            batch_size,
            ..Default::default()
        },
    );
    buf
}

/// A batch slot of source `pad_index` holding `buffer` (frame number 0, no timestamps).
pub fn frame_slot(
    pad_index: u32,
    info: gst_video::VideoInfo,
    buffer: gst::Buffer,
    duration: Option<gst::ClockTime>,
) -> gsttrtvision::batch::FrameSlot {
    gsttrtvision::batch::FrameSlot {
        source: std::sync::Arc::new(gsttrtvision::batch::SourceStream {
            pad_index,
            stream_id: None,
            caps: gst::Caps::new_empty_simple("video/x-raw"),
            segment: gst::FormattedSegment::new(),
        }),
        frame_number: 0,
        pts: None,
        dts: None,
        duration,
        info,
        buffer,
        results: Default::default(),
    }
}

/// One frame out of trtdemux: camera index, its caps' video info, the buffer.
pub struct Demuxed {
    pub camera: u32,
    pub info: gst_video::VideoInfo,
    pub buffer: gst::Buffer,
}

/// `cameras` = (format, width, height) of trtscenesrc cameras → trtmux → `chain` → trtdemux
/// with `demux` properties → per camera `tail` (elements ending in `!`, or empty) → appsink,
/// `frames` frames each. Every frame that came out, or the pipeline's error message.
pub fn run_demuxed(
    chain: &str,
    demux: &str,
    tail: &str,
    cameras: &[(&str, u32, u32)],
    frames: u32,
) -> Result<Vec<Demuxed>, String> {
    init();
    let mut desc = format!(
        "trtmux name=m batch-size={} ! {chain} ! trtdemux name=d {demux}",
        cameras.len()
    );
    for (i, (fmt, w, h)) in cameras.iter().enumerate() {
        desc += &format!(
            " trtscenesrc camera={i} num-buffers={frames} ! video/x-raw,format={fmt},width={w},height={h},framerate=30/1 ! m.sink_{i} \
              d.src_{i} ! queue ! {tail} appsink name=out{i} sync=false"
        );
    }
    let p = parse(&desc);
    let outs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    for i in 0..cameras.len() {
        let sink = p
            .by_name(&format!("out{i}"))
            .unwrap()
            .downcast::<gst_app::AppSink>()
            .unwrap();
        let outs = outs.clone();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let info = gst_video::VideoInfo::from_caps(sample.caps().unwrap()).unwrap();
                    outs.lock().unwrap().push(Demuxed {
                        camera: i as u32,
                        info,
                        buffer: sample.buffer_owned().unwrap(),
                    });
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
    }
    run_to_end(&p, gst::ClockTime::from_seconds(180))?;
    let v = std::mem::take(&mut *outs.lock().unwrap());
    Ok(v)
}

/// The config `engines/<name>` (a .toml), with its ONNX model generated when missing.
pub fn cfg_with_model(name: &str) -> String {
    model(&format!("{}.onnx", name.trim_end_matches(".toml")));
    cfg(name)
}

/// Detector with masks, tracker and a secondary attribute model: every kind of result
/// (boxes, masks, track ids, classifications, keypoints).
pub fn full_chain() -> String {
    let det = cfg_with_model("shapes-yolo-seg.toml");
    format!(
        "trtpreprocess config-file={det} ! trtinfer model={det} ! trtmaskselect ! trttracker \
         ! trtinfer model={} operate-on=objects operate-on-model=shapes-yolo-seg",
        cfg_with_model("shapes-landmarks.toml")
    )
}

/// RSS (kB), threads and open file descriptors of process `pid` ("self": this one), from
/// /proc.
pub fn process_resources(pid: &str) -> (u64, u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or_else(|e| panic!("/proc/{pid}/fd: {e}"));
    (field("VmRSS:"), field("Threads:"), fds)
}
