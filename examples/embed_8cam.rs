//! Embedding gst-trtvision in a Rust application: an 8-camera pipeline built in code whose
//! per-camera results are read from appsinks and acted on.
//!
//!   cargo run --release --example embed_8cam -- [frames per camera] [model config]
//!
//! (after `. scripts/env.sh`, which points ONNX Runtime at the library of `.venv`). The
//! cameras are `trtscenesrc` synthetic cameras; replace them with decoders of real streams
//! (`uridecodebin`, `rtspsrc ! ... ! decodebin`) and the rest stays the same:
//!
//!   8 x trtscenesrc -> trtmux -> trtpreprocess -> trtinfer -> trtmaskselect -> trttracker
//!     -> trtdemux -> per camera: queue -> appsink
//!
//! For every frame it reads the detections (label, confidence, box), the masks and the
//! tracker's object ids from the frame's `GstVideoRegionOfInterestMeta`, prints a line when
//! a new tracked object enters a camera's view, and at the end a count per camera. It exits
//! with status 1 when a camera delivered no frame or nothing at all was detected.

use gst::prelude::*;
use gst_video::VideoRegionOfInterestMeta;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

const CAMERAS: u32 = 8;

/// What the application keeps per camera.
#[derive(Default)]
struct CameraStats {
    frames: u64,
    detections: u64,
    masks: u64,
    /// Object ids the tracker gave so far (an id seen for the first time = an object entered).
    tracks: HashSet<i64>,
    /// Detections per label.
    per_label: BTreeMap<String, u64>,
}

type Stats = Arc<Mutex<Vec<CameraStats>>>;

/// One detection as the application uses it.
struct Seen {
    label: String,
    confidence: f64,
    object_id: i64,
    rect: (u32, u32, u32, u32),
    mask_pixels: Option<usize>,
}

/// Reads every detection trtdemux attached to a frame.
fn detections(buffer: &gst::BufferRef) -> Vec<Seen> {
    buffer
        .iter_meta::<VideoRegionOfInterestMeta>()
        .filter_map(|roi| {
            let det = roi.param("detection")?;
            let mask = gsttrtvision::trtdemux::roi::read_mask(&roi);
            Some(Seen {
                label: det
                    .get::<String>("label")
                    .unwrap_or_else(|_| roi.roi_type().to_string()),
                confidence: det.get("confidence").unwrap_or(0.0),
                object_id: det.get("object-id").unwrap_or(-1),
                rect: roi.rect(),
                // Mask bytes: 0 = background, 255 = object, width*height, row-major.
                mask_pixels: mask.map(|m| m.data.iter().filter(|&&v| v >= 128).count()),
            })
        })
        .collect()
}

/// The application's reaction to one frame of one camera.
fn on_frame(camera: u32, frame: u64, seen: &[Seen], stats: &Stats) {
    let mut all = stats.lock().unwrap_or_else(|e| e.into_inner());
    let st = &mut all[camera as usize];
    st.frames += 1;
    for s in seen {
        st.detections += 1;
        *st.per_label.entry(s.label.clone()).or_default() += 1;
        if s.mask_pixels.is_some() {
            st.masks += 1;
        }
        // object-id is -1 until the tracker confirms the object (trttracker min-hits).
        if s.object_id >= 0 && st.tracks.insert(s.object_id) {
            let (x, y, w, h) = s.rect;
            println!(
                "camera {camera} frame {frame}: {} #{} entered at {x},{y} {w}x{h} (confidence {:.2}, mask pixels {})",
                s.label,
                s.object_id,
                s.confidence,
                s.mask_pixels.map_or("none".to_string(), |n| n.to_string()),
            );
        }
    }
}

fn make(factory: &str, name: Option<&str>) -> Result<gst::Element, String> {
    let mut b = gst::ElementFactory::make(factory);
    if let Some(n) = name {
        b = b.name(n);
    }
    b.build().map_err(|e| format!("cannot create {factory}: {e}"))
}

fn build(frames: u32, model: &str, stats: &Stats) -> Result<gst::Pipeline, String> {
    let pipeline = gst::Pipeline::new();
    let mux = gst::ElementFactory::make("trtmux")
        .property("batch-size", CAMERAS as i32)
        .build()
        .map_err(|e| format!("cannot create trtmux: {e}"))?;
    let pre = gst::ElementFactory::make("trtpreprocess")
        .property("config-file", model)
        .build()
        .map_err(|e| format!("cannot create trtpreprocess: {e}"))?;
    let infer = gst::ElementFactory::make("trtinfer")
        .property("model", model)
        .build()
        .map_err(|e| format!("cannot create trtinfer: {e}"))?;
    let select = make("trtmaskselect", None)?;
    let tracker = make("trttracker", None)?;
    let demux = make("trtdemux", Some("demux"))?;
    pipeline
        .add_many([&mux, &pre, &infer, &select, &tracker, &demux])
        .map_err(|e| e.to_string())?;
    gst::Element::link_many([&mux, &pre, &infer, &select, &tracker, &demux]).map_err(|e| e.to_string())?;

    for i in 0..CAMERAS {
        let src = gst::ElementFactory::make("trtscenesrc")
            .property("camera", i)
            .property("num-buffers", frames as i32)
            .build()
            .map_err(|e| format!("cannot create trtscenesrc: {e}"))?;
        let caps = gst::Caps::builder("video/x-raw")
            .field("format", "NV12")
            .field("width", 640i32)
            .field("height", 480i32)
            .field("framerate", gst::Fraction::new(30, 1))
            .build();
        let filter = gst::ElementFactory::make("capsfilter")
            .property("caps", &caps)
            .build()
            .map_err(|e| format!("cannot create capsfilter: {e}"))?;
        pipeline.add_many([&src, &filter]).map_err(|e| e.to_string())?;
        src.link(&filter).map_err(|e| e.to_string())?;
        let sink = mux
            .request_pad_simple(&format!("sink_{i}"))
            .ok_or("trtmux gave no sink pad")?;
        filter
            .static_pad("src")
            .ok_or("capsfilter has no src pad")?
            .link(&sink)
            .map_err(|e| format!("camera {i}: {e}"))?;
    }

    // trtdemux adds one src_N pad per camera once that camera's first frame arrives.
    // Each pad gets its own branch starting with a `queue`: a demuxer's branches must each
    // have one, or the first sink to preroll blocks the streaming thread that all cameras
    // share and the pipeline never reaches PLAYING.
    let weak = pipeline.downgrade();
    let stats = stats.clone();
    demux.connect_pad_added(move |_demux, pad| {
        let Some(pipeline) = weak.upgrade() else { return };
        let Some(camera) = pad
            .name()
            .strip_prefix("src_")
            .and_then(|n| n.parse::<u32>().ok())
        else {
            return;
        };
        if camera >= CAMERAS {
            return;
        }
        let queue = gst::ElementFactory::make("queue").build();
        let appsink = gst_app::AppSink::builder().sync(false).build();
        let Ok(queue) = queue else {
            eprintln!("camera {camera}: cannot create a queue");
            return;
        };
        let stats = stats.clone();
        appsink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    if let Some(buffer) = sample.buffer() {
                        on_frame(camera, buffer.offset(), &detections(buffer), &stats);
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        let appsink: gst::Element = appsink.upcast();
        if pipeline.add_many([&queue, &appsink]).is_err() || queue.link(&appsink).is_err() {
            eprintln!("camera {camera}: cannot add its branch");
            return;
        }
        let _ = queue.sync_state_with_parent();
        let _ = appsink.sync_state_with_parent();
        if let Some(qsink) = queue.static_pad("sink") {
            if let Err(e) = pad.link(&qsink) {
                eprintln!("camera {camera}: cannot link its branch: {e}");
            }
        }
    });
    Ok(pipeline)
}

fn run() -> Result<bool, String> {
    let mut args = std::env::args().skip(1);
    let frames: u32 = match args.next() {
        Some(f) => f
            .parse()
            .map_err(|_| format!("frames per camera: '{f}' is not a number"))?,
        None => 30,
    };
    let model = args
        .next()
        .unwrap_or_else(|| "engines/shapes-yolo-seg.toml".to_string());

    gst::init().map_err(|e| e.to_string())?;
    // Link the plugin into the application (it may also be found on GST_PLUGIN_PATH).
    if gsttrtvision::plugin_register_static().is_err() && gst::ElementFactory::find("trtmux").is_none() {
        return Err("the trtvision plugin cannot be registered".into());
    }

    let stats: Stats = Arc::new(Mutex::new((0..CAMERAS).map(|_| CameraStats::default()).collect()));
    let pipeline = build(frames, &model, &stats)?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| format!("the pipeline does not start: {e}"))?;
    let bus = pipeline.bus().ok_or("the pipeline has no bus")?;
    let mut result = Ok(());
    for msg in bus.iter_timed(gst::ClockTime::NONE) {
        match msg.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => {
                result = Err(format!(
                    "{}: {} ({})",
                    e.src().map(|s| s.path_string().to_string()).unwrap_or_default(),
                    e.error(),
                    e.debug().map(|d| d.to_string()).unwrap_or_default()
                ));
                break;
            }
            _ => {}
        }
    }
    let _ = pipeline.set_state(gst::State::Null);
    result?;

    let all = stats.lock().unwrap_or_else(|e| e.into_inner());
    let mut ok = true;
    let mut total = 0;
    for (i, st) in all.iter().enumerate() {
        let labels: Vec<String> = st.per_label.iter().map(|(l, n)| format!("{l}={n}")).collect();
        println!(
            "camera {i}: {} frames, {} detections ({} with a mask), {} tracked objects [{}]",
            st.frames,
            st.detections,
            st.masks,
            st.tracks.len(),
            labels.join(" ")
        );
        if st.frames == 0 {
            eprintln!("camera {i} delivered no frame");
            ok = false;
        }
        total += st.detections;
    }
    if total == 0 {
        eprintln!("nothing was detected on any camera");
        ok = false;
    }
    Ok(ok)
}

fn main() {
    match run() {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("embed_8cam: {e}");
            std::process::exit(2);
        }
    }
}
