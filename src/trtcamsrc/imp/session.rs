//! One connection of `trtcamsrc`: the `session` bin (source by URI scheme → `parsebin` →
//! decoder → NV12 → `appsink`), built, started and torn down by the controller, and the
//! frames it hands to the element's output.

use super::*;

impl TrtCamSrc {
    /// Pipeline running time now, when the bin has a clock.
    pub(super) fn running_time_now(&self) -> Option<gst::ClockTime> {
        let obj = self.obj();
        let clock = obj.clock()?;
        let base = obj.base_time()?;
        clock.time().checked_sub(base)
    }

    /// Hands one decoded frame of session `number` to the output.
    pub(super) fn on_sample(
        &self,
        number: u64,
        sample: gst::Sample,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let first = {
            let mut last = self.shared.last_frame.lock().unwrap();
            *last = Instant::now();
            drop(last);
            self.shared
                .session
                .lock()
                .unwrap()
                .as_ref()
                .is_some_and(|(n, _)| *n == number)
        };
        if !first {
            // A frame of a session being torn down.
            return Err(gst::FlowError::Flushing);
        }
        let Some(buffer) = sample.buffer_owned() else {
            return Ok(gst::FlowSuccess::Ok);
        };
        let segment = sample
            .segment()
            .and_then(|s| s.downcast_ref::<gst::ClockTime>().cloned());
        let rt = buffer
            .pts()
            .and_then(|pts| segment.as_ref().and_then(|s| s.to_running_time(pts)))
            .unwrap_or(gst::ClockTime::ZERO);
        let now = self.running_time_now();
        let (pts, discont, starts) = {
            let mut r = self.shared.restamp.lock().unwrap();
            let (pts, discont) = r.map(rt, buffer.duration(), now);
            (pts, discont, discont)
        };
        if starts {
            self.send(Command::Streaming(number));
        }
        if let Some(caps) = sample.caps_owned() {
            let mut last = self.shared.last_caps.lock().unwrap();
            if last.as_ref() != Some(&caps) {
                gst::debug!(CAT, imp = self, "output caps {caps}");
                self.appsrc.set_caps(Some(&caps));
                *last = Some(caps);
            }
        }
        let mut buffer = buffer;
        {
            let b = buffer.make_mut();
            b.set_pts(pts);
            b.set_dts(gst::ClockTime::NONE);
            if discont {
                b.set_flags(gst::BufferFlags::DISCONT);
            } else {
                b.unset_flags(gst::BufferFlags::DISCONT);
            }
        }
        // The output queue drops its oldest frames when full: never an error here.
        let _ = self.appsrc.push_buffer(buffer);
        Ok(gst::FlowSuccess::Ok)
    }

    /// Decoder, and the caps it must output, for parsed caps `caps`.
    pub(super) fn decoder_for(
        &self,
        caps: &gst::CapsRef,
        choice: Decoder,
    ) -> Result<(gst::Element, gst::Caps), String> {
        let name = caps
            .structure(0)
            .map(|s| s.name().to_string())
            .unwrap_or_default();
        let (nv, sw): (&str, &[&str]) = match name.as_str() {
            "video/x-h264" => ("nvh264dec", &["avdec_h264", "openh264dec"]),
            "video/x-h265" => ("nvh265dec", &["avdec_h265", "libde265dec"]),
            _ => {
                return Err(format!(
                    "the camera sends {name}, which trtcamsrc cannot decode (H.264 and H.265 are supported)"
                ))
            }
        };
        let nv12 = gst_video::VideoCapsBuilder::new()
            .format(gst_video::VideoFormat::Nv12)
            .build();
        if choice != Decoder::Software {
            if let Ok(dec) = gst::ElementFactory::make(nv).build() {
                // NV12 in CUDA memory (its own caps: `nv12` is shared, so not writable).
                let cuda = gst_video::VideoCapsBuilder::new()
                    .features([crate::batch::CUDA_MEMORY_FEATURE])
                    .format(gst_video::VideoFormat::Nv12)
                    .build();
                return Ok((dec, cuda));
            }
            if choice == Decoder::Nvdec {
                return Err(format!(
                    "decoder=nvdec but {nv} is not available (no nvcodec plugin or no GPU)"
                ));
            }
        }
        sw.iter()
            .find_map(|f| gst::ElementFactory::make(f).build().ok())
            .map(|d| (d, nv12))
            .ok_or_else(|| {
                format!(
                    "no software decoder for {name} is installed (tried {})",
                    sw.join(", ")
                )
            })
    }

    /// Links a parsed video pad of session `number` to decoder → NV12 → appsink.
    pub(super) fn link_parsed(&self, number: u64, session: &gst::Bin, pad: &gst::Pad) -> Result<(), String> {
        let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
        if !caps.structure(0).is_some_and(|s| s.name().starts_with("video/")) {
            // Audio or metadata streams of the camera are not used.
            let sink = gst::ElementFactory::make("fakesink")
                .property("sync", false)
                .property("async", false)
                .build()
                .map_err(|e| e.to_string())?;
            session.add(&sink).map_err(|e| e.to_string())?;
            sink.sync_state_with_parent().map_err(|e| e.to_string())?;
            pad.link(&sink.static_pad("sink").expect("fakesink has a sink pad"))
                .map_err(|e| e.to_string())?;
            return Ok(());
        }
        let choice = self.settings.lock().unwrap().decoder;
        let (decoder, out_caps) = self.decoder_for(&caps, choice)?;
        self.tap_parsed(pad);
        gst::info!(
            CAT,
            imp = self,
            "decoding {} with {}",
            caps.structure(0).map(|s| s.name().as_str()).unwrap_or("?"),
            decoder
                .factory()
                .map(|f| f.name().to_string())
                .unwrap_or_default()
        );
        let live = self
            .settings
            .lock()
            .unwrap()
            .uri
            .as_deref()
            .and_then(scheme)
            .is_some_and(|s| is_live_scheme(&s));
        let is_cuda = out_caps
            .features(0)
            .is_some_and(|f| f.contains(crate::batch::CUDA_MEMORY_FEATURE));
        let mut chain = vec![decoder];
        if !is_cuda {
            chain.push(
                gst::ElementFactory::make("videoconvert")
                    .build()
                    .map_err(|e| e.to_string())?,
            );
        }
        chain.push(
            gst::ElementFactory::make("capsfilter")
                .property("caps", &out_caps)
                .build()
                .map_err(|e| e.to_string())?,
        );
        let sink = gst_app::AppSink::builder()
            .sync(!live)
            .async_(false)
            .max_buffers(2)
            .build();
        let weak = self.obj().downgrade();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    let sample = s.pull_sample().map_err(|_| gst::FlowError::Flushing)?;
                    match weak.upgrade() {
                        Some(obj) => obj.imp().on_sample(number, sample),
                        None => Err(gst::FlowError::Flushing),
                    }
                })
                .eos({
                    let weak = self.obj().downgrade();
                    move |_| {
                        if let Some(obj) = weak.upgrade() {
                            let imp = obj.imp();
                            if live {
                                imp.send(Command::Failed(number, "the camera ended its stream".into()));
                            } else {
                                imp.send(Command::Finished(number));
                            }
                        }
                    }
                })
                .build(),
        );
        chain.push(sink.upcast());
        session.add_many(&chain).map_err(|e| e.to_string())?;
        gst::Element::link_many(&chain).map_err(|e| e.to_string())?;
        for e in chain.iter().rev() {
            e.sync_state_with_parent().map_err(|e| e.to_string())?;
        }
        let sinkpad = chain[0].static_pad("sink").expect("decoders have a sink pad");
        pad.link(&sinkpad)
            .map_err(|e| format!("cannot link the parsed stream: {e}"))?;
        Ok(())
    }

    /// Builds session `number` for the configured URI (not yet started).
    pub(super) fn build_session(&self, number: u64) -> Result<gst::Bin, String> {
        let s = self.settings.lock().unwrap().clone();
        let uri = s.uri.clone().ok_or("no uri set")?;
        let scheme = scheme(&uri).ok_or("the uri has no scheme")?;
        let session = gst::Bin::with_name(&format!("session{number}"));
        self.headers_in_keyframes(&session);
        let source = if scheme.starts_with("rtsp") {
            let src = gst::ElementFactory::make("rtspsrc")
                .property("location", &uri)
                .property("latency", s.latency_ms)
                .build()
                .map_err(|e| format!("rtspsrc is missing: {e}"))?;
            match s.protocols {
                Protocols::Tcp => src.set_property_from_str("protocols", "tcp"),
                Protocols::Udp => src.set_property_from_str("protocols", "udp"),
                Protocols::Auto => {}
            }
            if let Some(u) = &s.user_id {
                src.set_property("user-id", u);
            }
            if let Some(p) = &s.user_pw {
                src.set_property("user-pw", p);
            }
            // The connection itself must not outlast a stall, nor a slow first frame.
            let tcp_timeout = u64::from(s.stall_ms.max(s.connect_ms).max(100)) * 1000;
            src.set_property("tcp-timeout", tcp_timeout);
            src.set_property("timeout", tcp_timeout);
            src
        } else {
            gst::ElementFactory::make("urisourcebin")
                .property("uri", &uri)
                .build()
                .map_err(|e| format!("urisourcebin is missing: {e}"))?
        };
        session.add(&source).map_err(|e| e.to_string())?;
        let weak = self.obj().downgrade();
        let session_weak = session.downgrade();
        source.connect_pad_added(move |_, pad| {
            let (Some(obj), Some(session)) = (weak.upgrade(), session_weak.upgrade()) else {
                return;
            };
            let imp = obj.imp();
            let res = (|| -> Result<(), String> {
                let parse = gst::ElementFactory::make("parsebin")
                    .build()
                    .map_err(|e| e.to_string())?;
                session.add(&parse).map_err(|e| e.to_string())?;
                let (weak, session_weak) = (obj.downgrade(), session.downgrade());
                parse.connect_pad_added(move |_, pad| {
                    let (Some(obj), Some(session)) = (weak.upgrade(), session_weak.upgrade()) else {
                        return;
                    };
                    if let Err(e) = obj.imp().link_parsed(number, &session, pad) {
                        obj.imp().send(Command::Failed(number, e));
                    }
                });
                parse.sync_state_with_parent().map_err(|e| e.to_string())?;
                pad.link(&parse.static_pad("sink").expect("parsebin has a sink pad"))
                    .map_err(|e| e.to_string())?;
                Ok(())
            })();
            if let Err(e) = res {
                imp.send(Command::Failed(number, e));
            }
        });
        Ok(session)
    }

    pub(super) fn start_session(&self, number: u64) -> Result<(), String> {
        let session = self.build_session(number)?;
        self.shared.restamp.lock().unwrap().new_connection();
        *self.shared.last_frame.lock().unwrap() = Instant::now();
        *self.shared.session.lock().unwrap() = Some((number, session.clone()));
        self.obj().add(&session).map_err(|e| e.to_string())?;
        session
            .sync_state_with_parent()
            .map_err(|_| "the camera source could not start".to_string())?;
        Ok(())
    }

    pub(super) fn stop_session(&self) {
        let Some((_, session)) = self.shared.session.lock().unwrap().take() else {
            return;
        };
        let _ = session.set_state(gst::State::Null);
        let _ = self.obj().remove(&session);
    }
}
