//! The file writer of one recording: `appsrc ! h264parse|h265parse ! mp4mux|matroskamux !
//! filesink` in a pipeline of its own, fed with the camera's compressed access units (no
//! re-encoding) restamped to start at 0.

use super::{Container, Options};
use gst::prelude::*;
use std::path::Path;
use std::time::Duration;

/// How long finalising (EOS through the muxer, index written) may take.
const FINALISE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running writer.
pub struct Writer {
    pipeline: gst::Pipeline,
    appsrc: gst_app::AppSrc,
    /// Subtracted from every timestamp (the first unit's DTS, else PTS).
    offset: Option<u64>,
    /// PTS of the last unit written (in the file's time), for units without one.
    last_pts: Option<gst::ClockTime>,
    failed: Option<String>,
}

fn parser_for(caps: &gst::Caps) -> Result<&'static str, String> {
    match caps.structure(0).map(|s| s.name().as_str()) {
        Some("video/x-h264") => Ok("h264parse"),
        Some("video/x-h265") => Ok("h265parse"),
        other => Err(format!(
            "cannot record {} (H.264 and H.265 are recorded)",
            other.unwrap_or("a stream without caps")
        )),
    }
}

fn make(factory: &str) -> Result<gst::Element, String> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| format!("the GStreamer element {factory} is not installed"))
}

impl Writer {
    /// Starts writing `caps` into `location` in `opts`' container; `max_bytes` bounds what
    /// waits for the disk.
    pub fn start(caps: &gst::Caps, location: &Path, opts: &Options, max_bytes: u64) -> Result<Self, String> {
        gst::debug!(gst::CAT_DEFAULT, "recording {caps} into {}", location.display());
        let parser = make(parser_for(caps)?)?;
        Self::fill_missing_pts(&parser);
        let mux = match opts.container {
            // Fragmented: a file cut off by a crash plays up to its last fragment.
            Container::Mp4 => super::mp4_muxer(opts.fragment_ms)?,
            Container::Mkv => {
                let mux = make("matroskamux")?;
                // A file that is cut off is still playable; the index (cues) and the
                // duration are written at the end when it ends normally.
                mux.set_property("streamable", false);
                mux
            }
        };
        let sink = make("filesink")?;
        sink.set_property("location", location.display().to_string());
        sink.set_property("sync", false);
        // Each fragment reaches the file when the muxer writes it, not when a buffer fills.
        sink.set_property_from_str("buffer-mode", "unbuffered");
        let appsrc = gst_app::AppSrc::builder()
            .caps(caps)
            .format(gst::Format::Time)
            .is_live(false)
            .do_timestamp(false)
            .block(false)
            .max_bytes(max_bytes.max(1 << 20))
            .build();
        let pipeline = gst::Pipeline::with_name("trtvision-recording");
        pipeline
            .add_many([appsrc.upcast_ref(), &parser, &mux, &sink])
            .map_err(|e| e.to_string())?;
        gst::Element::link_many([appsrc.upcast_ref(), &parser, &mux, &sink])
            .map_err(|e| format!("cannot link the recording chain: {e}"))?;
        if pipeline.set_state(gst::State::Playing).is_err() {
            let reason =
                Self::error_of(&pipeline).unwrap_or_else(|| format!("cannot open {}", location.display()));
            let _ = pipeline.set_state(gst::State::Null);
            return Err(reason);
        }
        Ok(Writer {
            pipeline,
            appsrc,
            offset: None,
            last_pts: None,
            failed: None,
        })
    }

    /// The parser may output an access unit without PTS (seen with RTSP input), which
    /// muxers refuse: it gets the previous one's plus a millisecond.
    fn fill_missing_pts(parser: &gst::Element) {
        let Some(pad) = parser.static_pad("src") else {
            return;
        };
        let last = std::sync::Mutex::new(None::<gst::ClockTime>);
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(gst::PadProbeData::Buffer(b)) = info.data.as_mut() {
                let mut last = last.lock().unwrap();
                match b.pts() {
                    Some(p) => *last = Some(p),
                    None => {
                        let p = last.map_or(gst::ClockTime::ZERO, |l| l + gst::ClockTime::from_mseconds(1));
                        b.make_mut().set_pts(p);
                        *last = Some(p);
                    }
                }
            }
            gst::PadProbeReturn::Ok
        });
    }

    fn error_of(pipeline: &gst::Pipeline) -> Option<String> {
        let bus = pipeline.bus()?;
        let msg = bus.pop_filtered(&[gst::MessageType::Error])?;
        match msg.view() {
            gst::MessageView::Error(e) => Some(Self::describe(e)),
            _ => None,
        }
    }

    fn describe(e: &gst::message::Error) -> String {
        match e.debug() {
            Some(d) => format!("{} ({d})", e.error()),
            None => e.error().to_string(),
        }
    }

    /// Writes one unit (a shallow copy: the data is shared, not copied).
    pub fn push(&mut self, buffer: &gst::Buffer) {
        if self.failed.is_some() {
            return;
        }
        let Some(first) = buffer.dts().or(buffer.pts()) else {
            if self.offset.is_none() {
                // Nothing to place a unit without time before the first timed one.
                return;
            }
            return self.push_shifted(buffer);
        };
        self.offset.get_or_insert(first.nseconds());
        self.push_shifted(buffer);
    }

    fn push_shifted(&mut self, buffer: &gst::Buffer) {
        let offset = self.offset.unwrap_or(0);
        let shift = |t: Option<gst::ClockTime>| {
            t.map(|t| gst::ClockTime::from_nseconds(t.nseconds().saturating_sub(offset)))
        };
        // A unit without PTS (some depayloaders leave it out) follows the previous one;
        // muxers refuse units without one.
        let step = buffer.duration().unwrap_or(gst::ClockTime::from_mseconds(1));
        let Some(pts) = shift(buffer.pts().or(buffer.dts())).or(self.last_pts.map(|p| p + step)) else {
            return;
        };
        self.last_pts = Some(pts);
        let mut b = buffer.copy();
        {
            let b = b.make_mut();
            b.set_pts(pts);
            b.set_dts(shift(buffer.dts()));
            b.unset_flags(gst::BufferFlags::DISCONT);
        }
        if let Err(e) = self.appsrc.push_buffer(b) {
            self.failed = Some(format!("the file writer refused data ({e:?})"));
        }
        if let Some(e) = Self::error_of(&self.pipeline) {
            self.failed = Some(e);
        }
    }

    /// Why writing failed, if it did.
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// Ends the file (EOS through the muxer) and stops the writer; blocks until the file is
    /// complete. `Err` says why it is not.
    pub fn finish(self) -> Result<(), String> {
        let _ = self.appsrc.end_of_stream();
        let bus = self.pipeline.bus();
        let res = match bus.and_then(|b| {
            b.timed_pop_filtered(
                gst::ClockTime::from_nseconds(FINALISE_TIMEOUT.as_nanos() as u64),
                &[gst::MessageType::Eos, gst::MessageType::Error],
            )
        }) {
            Some(msg) => match msg.view() {
                gst::MessageView::Error(e) => Err(Self::describe(e)),
                _ => Ok(()),
            },
            None => Err(format!(
                "the file was not finalised within {} s",
                FINALISE_TIMEOUT.as_secs()
            )),
        };
        let _ = self.pipeline.set_state(gst::State::Null);
        match self.failed {
            Some(f) => Err(f),
            None => res,
        }
    }
}
