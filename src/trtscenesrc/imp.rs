//! Behaviour of `trtscenesrc`: caps negotiation, allocation, timestamps and rendering.

use crate::scene;
use crate::video;
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;
use std::sync::{LazyLock, Mutex, MutexGuard};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "trtscenesrc",
        gst::DebugColorFlags::empty(),
        Some("Synthetic multi-camera scene source"),
    )
});

/// Defaults applied by `fixate` to whatever downstream leaves open.
const DEFAULT_WIDTH: i32 = 640;
const DEFAULT_HEIGHT: i32 = 480;
const DEFAULT_FPS: gst::Fraction = gst::Fraction::from_integer(30);
const DEFAULT_FORMAT: gst_video::VideoFormat = gst_video::VideoFormat::Rgba;
const DEFAULT_CAMERA: u32 = 0;
const DEFAULT_IS_LIVE: bool = false;

/// What trtscenesrc draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, glib::Enum)]
#[enum_type(name = "GstTrtSceneSrcPattern")]
pub enum Pattern {
    /// Flat coloured shapes whose boxes and masks are known exactly (tests).
    #[default]
    #[enum_value(name = "Flat coloured shapes with exact ground truth", nick = "shapes")]
    Shapes,
    /// Camera-like content: textured background, textured moving objects, sensor noise.
    #[enum_value(
        name = "Camera-like: textured background, moving textured objects, illumination change, sensor noise",
        nick = "camera"
    )]
    Camera,
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    camera: u32,
    is_live: bool,
    pattern: Pattern,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            camera: DEFAULT_CAMERA,
            is_live: DEFAULT_IS_LIVE,
            pattern: Pattern::Shapes,
        }
    }
}

/// Streaming state, valid between `set_caps` and `stop`.
#[derive(Default)]
struct State {
    info: Option<gst_video::VideoInfo>,
    /// RGBA render target reused for every frame (`width * height * 4` bytes).
    scratch: Vec<u8>,
    /// Index of the next frame to produce.
    next_frame: u64,
    /// Seek received before caps, turned into a frame index once the framerate is known.
    pending_seek: Option<gst::ClockTime>,
    /// Textures of pattern=camera for the current camera and size (made at the first frame).
    camera_scene: Option<scene::camera::CameraScene>,
}

/// Element implementation.
#[derive(Default)]
pub struct SceneSrc {
    settings: Mutex<Settings>,
    state: Mutex<State>,
}

impl SceneSrc {
    fn settings(&self) -> Settings {
        *lock(&self.settings)
    }

    /// An output buffer from the negotiated pool, or a plain allocation without one.
    fn acquire_buffer(&self) -> Result<gst::Buffer, gst::FlowError> {
        if let Some(pool) = self.obj().buffer_pool() {
            return pool.acquire_buffer(None);
        }
        let size = lock(&self.state).info.as_ref().map_or(0, |i| i.size());
        gst::Buffer::with_size(size).map_err(|_| {
            gst::element_imp_error!(
                self,
                gst::ResourceError::NoSpaceLeft,
                ["Failed to allocate a {size} byte buffer"]
            );
            gst::FlowError::Error
        })
    }
}

/// Locks, ignoring poisoning: a panic elsewhere must not turn into a second one here.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Duration of one frame, `None` for a zero or invalid framerate.
fn frame_duration(info: &gst_video::VideoInfo) -> Option<gst::ClockTime> {
    let fps = info.fps();
    if fps.numer() <= 0 || fps.denom() <= 0 {
        return None;
    }
    gst::ClockTime::SECOND.mul_div_floor(fps.denom() as u64, fps.numer() as u64)
}

/// Start time of frame `n`, exact (no accumulated rounding).
fn frame_time(info: &gst_video::VideoInfo, n: u64) -> Option<gst::ClockTime> {
    let fps = info.fps();
    if fps.numer() <= 0 {
        return None;
    }
    gst::ClockTime::SECOND.mul_div_floor(n * fps.denom() as u64, fps.numer() as u64)
}

/// First frame whose start time is at or after `t`.
fn frame_at(info: &gst_video::VideoInfo, t: gst::ClockTime) -> u64 {
    let fps = info.fps();
    if fps.numer() <= 0 || fps.denom() <= 0 {
        return 0;
    }
    t.nseconds()
        .mul_div_ceil(
            fps.numer() as u64,
            fps.denom() as u64 * gst::ClockTime::SECOND.nseconds(),
        )
        .unwrap_or(0)
}

#[glib::object_subclass]
impl ObjectSubclass for SceneSrc {
    const NAME: &'static str = "GstTrtSceneSrc";
    type Type = super::SceneSrc;
    type ParentType = gst_base::PushSrc;
}

impl ObjectImpl for SceneSrc {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecUInt::builder("camera")
                    .nick("Camera")
                    .blurb(
                        "Camera index seeding the scene: object shapes, sizes, lanes and \
                         motion differ per camera (0 to 4294967295, default 0)",
                    )
                    .default_value(DEFAULT_CAMERA)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecEnum::builder::<Pattern>("pattern")
                    .nick("Pattern")
                    .blurb(
                        "shapes: flat coloured shapes with exact ground truth (tests); camera: \
                         camera-like content for decoder and capacity benchmarks (textured \
                         background with slow illumination change, textured moving objects of \
                         different sizes and speeds, sensor noise), deterministic per camera",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("is-live")
                    .nick("Is live")
                    .blurb(
                        "Act as a live source: frames are produced at the pace of the \
                         pipeline clock, like videotestsrc is-live=true (default false)",
                    )
                    .default_value(DEFAULT_IS_LIVE)
                    .mutable_ready()
                    .build(),
            ]
        });
        PROPS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        match pspec.name() {
            "camera" => {
                let camera = value.get().unwrap_or(DEFAULT_CAMERA);
                gst::info!(CAT, imp = self, "camera {camera}");
                lock(&self.settings).camera = camera;
            }
            "pattern" => lock(&self.settings).pattern = value.get().unwrap_or_default(),
            "is-live" => {
                let live = value.get().unwrap_or(DEFAULT_IS_LIVE);
                lock(&self.settings).is_live = live;
                self.obj().set_live(live);
            }
            other => gst::warning!(CAT, imp = self, "unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings();
        match pspec.name() {
            "camera" => s.camera.to_value(),
            "is-live" => s.is_live.to_value(),
            "pattern" => s.pattern.to_value(),
            // GObject only asks for properties we installed.
            _ => glib::Value::from_type(pspec.value_type()),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.set_live(DEFAULT_IS_LIVE);
        obj.set_format(gst::Format::Time);
    }
}

impl GstObjectImpl for SceneSrc {}

impl ElementImpl for SceneSrc {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "TRT synthetic scene source",
                "Source/Video",
                "Renders a deterministic multi-camera test scene of coloured shapes with \
                 exact ground truth",
                "gst-trtvision developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            // A zero framerate has no frame duration: only positive rates. YUV output is
            // BT.601 limited range whatever the size (see `video::color`), so say so in
            // the caps; otherwise videoconvert would assume BT.709 for HD.
            let fps = gst::Fraction::new(1, i32::MAX)..=gst::Fraction::new(i32::MAX, 1);
            let (yuv, rgb): (Vec<_>, Vec<_>) = video::supported_formats()
                .iter()
                .partition(|f| gst_video::VideoFormatInfo::from_format(**f).is_yuv());
            let rgb_caps = gst_video::VideoCapsBuilder::new()
                .format_list(rgb)
                .framerate_range(fps.clone())
                .build();
            let yuv_caps = gst_video::VideoCapsBuilder::new()
                .format_list(yuv)
                .framerate_range(fps)
                .field("colorimetry", "bt601")
                .build();
            // RGB structure (with the RGBA default) first, so fixation prefers it.
            let mut caps = rgb_caps;
            caps.make_mut().append(yuv_caps);
            let src = gst::PadTemplate::new("src", gst::PadDirection::Src, gst::PadPresence::Always, &caps);
            // Fixed caps and names: this cannot fail at run time.
            vec![src.expect("valid trtscenesrc src pad template")]
        });
        TEMPLATES.as_ref()
    }
}

impl BaseSrcImpl for SceneSrc {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        *lock(&self.state) = State::default();
        gst::debug!(CAT, imp = self, "started");
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *lock(&self.state) = State::default();
        gst::debug!(CAT, imp = self, "stopped");
        Ok(())
    }

    fn fixate(&self, mut caps: gst::Caps) -> gst::Caps {
        caps.truncate();
        {
            let caps = caps.make_mut();
            if let Some(s) = caps.structure_mut(0) {
                s.fixate_field_nearest_int("width", DEFAULT_WIDTH);
                s.fixate_field_nearest_int("height", DEFAULT_HEIGHT);
                s.fixate_field_nearest_fraction("framerate", DEFAULT_FPS);
                s.fixate_field_str("format", DEFAULT_FORMAT.to_str());
            }
        }
        self.parent_fixate(caps)
    }

    fn set_caps(&self, caps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let info = gst_video::VideoInfo::from_caps(caps)
            .map_err(|_| gst::loggable_error!(CAT, "invalid caps {caps}"))?;
        if frame_duration(&info).is_none() {
            return Err(gst::loggable_error!(CAT, "framerate must be positive: {caps}"));
        }
        gst::debug!(CAT, imp = self, "configured for {caps}");
        let mut state = lock(&self.state);
        let n = (info.width() as usize) * (info.height() as usize) * 4;
        state.scratch.clear();
        state.scratch.resize(n, 0);
        // Keep counting across renegotiation; only a seek moves the frame index.
        if let Some(t) = state.pending_seek.take() {
            state.next_frame = frame_at(&info, t);
        }
        state.info = Some(info);
        Ok(())
    }

    fn decide_allocation(&self, query: &mut gst::query::Allocation) -> Result<(), gst::LoggableError> {
        let (caps, _) = query.get_owned();
        let caps = caps.ok_or_else(|| gst::loggable_error!(CAT, "allocation query without caps"))?;
        let info = gst_video::VideoInfo::from_caps(&caps)
            .map_err(|_| gst::loggable_error!(CAT, "invalid caps {caps}"))?;
        let frame_size = u32::try_from(info.size())
            .map_err(|_| gst::loggable_error!(CAT, "frame too large: {} bytes", info.size()))?;
        let proposed = query.allocation_pools().next();
        let (pool, size, min, max) = match proposed.clone() {
            Some((Some(pool), size, min, max)) => (pool, size.max(frame_size), min, max),
            _ => (
                gst_video::VideoBufferPool::new().upcast::<gst::BufferPool>(),
                frame_size,
                0,
                0,
            ),
        };
        let mut config = pool.config();
        config.set_params(Some(&caps), size, min, max);
        // Downstream that understands video meta accepts padded strides from its pool.
        if query.find_allocation_meta::<gst_video::VideoMeta>().is_some() {
            config.add_option(gst_video::BUFFER_POOL_OPTION_VIDEO_META);
        }
        if pool.set_config(config).is_err() {
            // A pool may adjust the config; accept its version if it is still valid.
            let config = pool.config();
            config
                .validate_params(Some(&caps), size, min, max)
                .map_err(|_| gst::loggable_error!(CAT, "buffer pool rejected configuration"))?;
        }
        if proposed.is_some() {
            query.set_nth_allocation_pool(0, Some(&pool), size, min, max);
        } else {
            query.add_allocation_pool(Some(&pool), size, min, max);
        }
        self.parent_decide_allocation(query)
    }

    fn is_seekable(&self) -> bool {
        !self.settings().is_live
    }

    fn do_seek(&self, segment: &mut gst::Segment) -> bool {
        let Some(segment) = segment.downcast_ref::<gst::ClockTime>() else {
            return false;
        };
        let time = segment
            .position()
            .or(segment.start())
            .unwrap_or(gst::ClockTime::ZERO);
        let mut state = lock(&self.state);
        match &state.info {
            Some(info) => state.next_frame = frame_at(info, time),
            None => state.pending_seek = Some(time),
        }
        gst::debug!(CAT, imp = self, "seek to {time}, frame {}", state.next_frame);
        true
    }

    fn times(&self, buffer: &gst::BufferRef) -> (Option<gst::ClockTime>, Option<gst::ClockTime>) {
        // Only a live source waits for the clock; basesrc syncs on these times.
        if !self.settings().is_live {
            return (None, None);
        }
        let start = buffer.pts();
        let end = start.zip(buffer.duration()).map(|(s, d)| s + d);
        (start, end)
    }

    fn query(&self, query: &mut gst::QueryRef) -> bool {
        if let gst::QueryViewMut::Latency(q) = query.view_mut() {
            let duration = lock(&self.state).info.as_ref().and_then(frame_duration);
            return match duration {
                // Live: a frame is ready one frame duration after its timestamp.
                Some(d) if self.settings().is_live => {
                    q.set(true, d, Some(d));
                    true
                }
                Some(_) => {
                    q.set(false, gst::ClockTime::ZERO, gst::ClockTime::NONE);
                    true
                }
                None => false,
            };
        }
        BaseSrcImplExt::parent_query(self, query)
    }
}

impl PushSrcImpl for SceneSrc {
    // gstreamer-rs fills GstPushSrc's create/alloc/fill slots and their defaults chain
    // to GstPushSrc's empty ones (NOT_SUPPORTED), so allocate here from basesrc's pool
    // (set up in `decide_allocation`) and fill.
    fn create(
        &self,
        buffer: Option<&mut gst::BufferRef>,
    ) -> Result<gst_base::subclass::base_src::CreateSuccess, gst::FlowError> {
        use gst_base::subclass::base_src::CreateSuccess;
        if let Some(buffer) = buffer {
            PushSrcImpl::fill(self, buffer)?;
            return Ok(CreateSuccess::FilledBuffer);
        }
        let mut buffer = self.acquire_buffer()?;
        let Some(buffer_mut) = buffer.get_mut() else {
            gst::element_imp_error!(self, gst::CoreError::Failed, ["Allocated buffer is shared"]);
            return Err(gst::FlowError::Error);
        };
        PushSrcImpl::fill(self, buffer_mut)?;
        Ok(CreateSuccess::NewBuffer(buffer))
    }

    fn fill(&self, buffer: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        let Settings { camera, pattern, .. } = self.settings();
        let mut state = lock(&self.state);
        let State {
            info,
            scratch,
            next_frame,
            camera_scene,
            ..
        } = &mut *state;
        let Some(info) = info.as_ref() else {
            gst::element_imp_error!(self, gst::CoreError::Negotiation, ["No caps negotiated"]);
            return Err(gst::FlowError::NotNegotiated);
        };
        let frame = *next_frame;
        match pattern {
            Pattern::Shapes => scene::render_rgba(camera, frame, info.width(), info.height(), scratch),
            Pattern::Camera => {
                let size = (info.width(), info.height());
                let textures = match camera_scene.take() {
                    Some(c) if c.size() == size && c.camera() == camera => c,
                    _ => scene::camera::CameraScene::new(camera, size.0, size.1),
                };
                textures.render_rgba(frame, scratch);
                *camera_scene = Some(textures);
            }
        }
        {
            let mut vframe =
                gst_video::VideoFrameRef::from_buffer_ref_writable(buffer, info).map_err(|_| {
                    gst::element_imp_error!(
                        self,
                        gst::ResourceError::Write,
                        ["Failed to map output buffer for writing"]
                    );
                    gst::FlowError::Error
                })?;
            video::write_rgba(&mut vframe, scratch).map_err(|e| {
                gst::element_imp_error!(self, gst::ResourceError::Write, ["Failed to convert frame: {e}"]);
                gst::FlowError::Error
            })?;
        }
        let pts = frame_time(info, frame);
        let end = frame_time(info, frame + 1);
        buffer.set_pts(pts);
        buffer.set_duration(end.zip(pts).map(|(e, p)| e.saturating_sub(p)));
        buffer.set_offset(frame);
        buffer.set_offset_end(frame + 1);
        *next_frame += 1;
        gst::log!(CAT, imp = self, "frame {frame} pts {}", pts.display());
        Ok(gst::FlowSuccess::Ok)
    }
}
