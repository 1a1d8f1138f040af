//! Cameras added to and removed from the playing pipeline: the source and its trtmux pad,
//! the trtdemux branch made for the first frame of each source (`queue ! fakesink`, or an
//! encoder and MP4 file when recorded), and the branch's removal once its EOS went through.

use super::*;

impl Service {
    pub(super) fn add_locked(&self, req: AddCamera) -> Result<Arc<Camera>, ApiError> {
        validate_camera_id(&req.id).map_err(|m| ApiError::new(400, m))?;
        let kind = CameraUri::parse(&req.uri).map_err(|m| ApiError::new(400, m))?;
        if req.record && self.config.output.recordings.is_none() {
            return Err(ApiError::new(
                400,
                "recording needs a recordings directory in the [output] section of the config",
            ));
        }
        if self.cameras.lock().unwrap().contains_key(&req.id) {
            return Err(ApiError::new(
                409,
                format!("camera \"{}\" already exists", req.id),
            ));
        }
        let source = kind.make_source(&req.id).map_err(|m| ApiError::new(400, m))?;
        self.configure_event_recording(&source);
        let mux = {
            let cameras = self.cameras.lock().unwrap();
            let load: Vec<usize> = self
                .muxes
                .iter()
                .map(|m| cameras.values().filter(|c| &c.mux == m).count())
                .collect();
            let chain = chain_for(req.gpu, &self.chain_gpus, &load).map_err(|m| ApiError::new(400, m))?;
            self.muxes[chain].clone()
        };
        let index = self.next_index.fetch_add(1, Ordering::SeqCst);
        let fail = |m: String| ApiError::new(500, m);
        self.pipeline.add(&source).map_err(|e| fail(e.to_string()))?;
        let undo = |m: String| {
            let _ = self.pipeline.remove(&source);
            fail(m)
        };
        let Some(mux_pad) = mux.request_pad_simple(&format!("sink_{index}")) else {
            return Err(undo("trtmux refused a new sink pad".into()));
        };
        let Some(src_pad) = source.static_pad("src") else {
            mux.release_request_pad(&mux_pad);
            return Err(undo("the camera source has no src pad".into()));
        };
        let playing = self.pipeline.current_state() == gst::State::Playing;
        if kind.starts_at_zero() && playing {
            // The scene camera's timestamps start at zero: its clock time and running time
            // are shifted to now, so that it is paced from now instead of catching up.
            if let (Some(now), Some(base)) = (self.running_time(), self.pipeline.base_time()) {
                source.set_base_time(base + now);
                src_pad.set_offset(now.nseconds() as i64);
            }
        }
        let camera = Arc::new(Camera {
            uri: redact_credentials(&req.uri),
            series: self.metrics.camera(&req.id),
            id: req.id,
            kind,
            pad_index: index,
            record: req.record,
            source: source.clone(),
            mux_pad: mux_pad.clone(),
            mux: mux.clone(),
            stats: Mutex::new(CameraStats::default()),
            recording: Mutex::new((None, 0)),
        });
        let weak = Arc::downgrade(&camera);
        mux_pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let (Some(c), Some(b)) = (weak.upgrade(), info.buffer()) {
                c.stats
                    .lock()
                    .unwrap()
                    .frame_in(b.pts().map(|t| t.nseconds()), Instant::now());
            }
            gst::PadProbeReturn::Ok
        });
        if let Err(e) = src_pad.link(&mux_pad) {
            mux.release_request_pad(&mux_pad);
            return Err(undo(format!("cannot link the camera to trtmux: {e:?}")));
        }
        self.by_index.lock().unwrap().insert(index, camera.clone());
        self.cameras
            .lock()
            .unwrap()
            .insert(camera.id.clone(), camera.clone());
        self.metrics
            .cameras
            .set(self.cameras.lock().unwrap().len() as i64);
        if self.pipeline.current_state() > gst::State::Null && source.sync_state_with_parent().is_err() {
            let _ = self.remove_locked(&camera.id);
            return Err(fail(format!("camera \"{}\" could not start", camera.id)));
        }
        gst::info!(
            gst::CAT_DEFAULT,
            "camera {} ({}) on trtmux sink_{index}",
            camera.id,
            camera.uri
        );
        Ok(camera)
    }

    /// trtcamsrc keeps its compressed stream for event recording when an events directory
    /// is configured.
    pub(super) fn configure_event_recording(&self, source: &gst::Element) {
        let out = &self.config.output;
        let Some(dir) = out.events.as_ref().or(out.recordings.as_ref()) else {
            return;
        };
        if source.find_property("record-dir").is_some() {
            source.set_property_from_str("record-dir", &dir.display().to_string());
        }
        if source.find_property("record-buffer").is_some() {
            let seconds = out.event_buffer.unwrap_or(10);
            source.set_property_from_str("record-buffer", &seconds.to_string());
        }
    }

    pub(super) fn remove_locked(&self, id: &str) -> Result<(), ApiError> {
        let camera = self
            .cameras
            .lock()
            .unwrap()
            .remove(id)
            .ok_or_else(|| ApiError::new(404, format!("there is no camera \"{id}\"")))?;
        self.metrics
            .cameras
            .set(self.cameras.lock().unwrap().len() as i64);
        let source = &camera.source;
        if let Some(src_pad) = source.static_pad("src") {
            // Nothing of this camera enters trtmux any more; what is queued there is batched.
            // Handled: the probe consumes the data (with Drop, GStreamer 1.22 unrefs the
            // data the Rust binding already released: a CRITICAL per buffer).
            src_pad.add_probe(gst::PadProbeType::DATA_DOWNSTREAM, |_, _| {
                gst::PadProbeReturn::Handled
            });
        }
        // Locked: the pipeline's own state changes leave the source in NULL from here on.
        source.set_locked_state(true);
        let _ = source.set_state(gst::State::Null);
        if let Some(src_pad) = source.static_pad("src") {
            let _ = src_pad.unlink(&camera.mux_pad);
        }
        let _ = self.pipeline.remove(source);
        camera.mux.release_request_pad(&camera.mux_pad);
        self.metrics.remove_camera(id);
        // Wait until trtdemux ended the camera's output and its branch is gone (the
        // recording is then complete).
        let index = camera.pad_index;
        let deadline = Instant::now() + BRANCH_DRAIN_TIMEOUT;
        let mut branches = self.branches.lock().unwrap();
        while branches.by_index.contains_key(&index) && !self.stopping.load(Ordering::SeqCst) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                gst::warning!(
                    gst::CAT_DEFAULT,
                    "camera {id}: its output did not end within {BRANCH_DRAIN_TIMEOUT:?}"
                );
                break;
            }
            branches = self.branch_gone.wait_timeout(branches, left).unwrap().0;
        }
        let has_branch = branches.by_index.contains_key(&index);
        drop(branches);
        if !has_branch {
            self.by_index.lock().unwrap().remove(&index);
        }
        gst::info!(gst::CAT_DEFAULT, "camera {id} removed");
        Ok(())
    }

    /// Links trtdemux's new `src_<n>` to a branch and counts the camera's frames on it.
    pub(super) fn attach_branch(self: &Arc<Self>, pad: &gst::Pad) -> Result<(), String> {
        let index: u32 = pad
            .name()
            .strip_prefix("src_")
            .and_then(|n| n.parse().ok())
            .ok_or("unexpected pad name")?;
        let camera = self.by_index.lock().unwrap().get(&index).cloned();
        let bin = gst::Bin::with_name(&format!("branch-{index}"));
        let mut chain = vec![make("queue")?];
        let recording = match (&camera, &self.config.output.recordings) {
            (Some(c), Some(dir)) if c.record => {
                let secs = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                Some(dir.join(format!("{}-{secs}.mp4", c.id)))
            }
            _ => None,
        };
        match &recording {
            Some(path) => {
                // Fragmented: a recording cut off by a crash plays up to its last fragment.
                chain.extend(encoder_chain(
                    self.config.output.encoder,
                    self.config.output.bitrate.unwrap_or(4000),
                    crate::recording::DEFAULT_FRAGMENT_MS,
                )?);
                chain.push(file_sink(path, true)?);
            }
            None => {
                let sink = make("fakesink")?;
                sink.set_property("sync", false);
                sink.set_property("async", false);
                chain.push(sink);
            }
        }
        link_chain(&bin, &chain)?;
        let target = chain[0].static_pad("sink").ok_or("queue has no sink pad")?;
        let ghost = gst::GhostPad::with_target(&target).map_err(|e| e.to_string())?;
        bin.add_pad(&ghost).map_err(|e| e.to_string())?;
        let sink_pad = chain
            .last()
            .and_then(|s| s.static_pad("sink"))
            .ok_or("sink has no pad")?;
        let weak = Arc::downgrade(self);
        sink_pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
            if info.event().is_some_and(|e| e.type_() == gst::EventType::Eos) {
                if let Some(s) = weak.upgrade() {
                    s.branch_ended(index);
                }
            }
            gst::PadProbeReturn::Ok
        });
        if let Some(c) = &camera {
            Self::count_frames(pad, c);
        }
        self.pipeline.add(&bin).map_err(|e| e.to_string())?;
        bin.sync_state_with_parent().map_err(|e| e.to_string())?;
        pad.link(&ghost).map_err(|e| format!("{e:?}"))?;
        self.branches.lock().unwrap().by_index.insert(
            index,
            Branch {
                bin,
                demux_pad: pad.clone(),
            },
        );
        if let Some(p) = recording {
            gst::info!(gst::CAT_DEFAULT, "recording source {index} into {}", p.display());
        }
        Ok(())
    }

    pub(super) fn count_frames(pad: &gst::Pad, camera: &Arc<Camera>) {
        let weak = Arc::downgrade(camera);
        pad.add_probe(
            gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
            move |_, info| {
                let Some(c) = weak.upgrade() else {
                    return gst::PadProbeReturn::Remove;
                };
                match &info.data {
                    Some(gst::PadProbeData::Buffer(b)) => {
                        let latency = c.stats.lock().unwrap().frame_out(
                            b.pts().map(|t| t.nseconds()),
                            b.duration().map(|t| t.nseconds()),
                            b.flags().contains(gst::BufferFlags::DISCONT),
                            Instant::now(),
                        );
                        c.series.frames.inc();
                        if let Some(l) = latency {
                            c.series.latency.observe(l.as_secs_f64());
                        }
                    }
                    Some(gst::PadProbeData::Event(e)) if e.type_() == gst::EventType::Gap => {
                        c.stats.lock().unwrap().gap();
                        c.series.gaps.inc();
                    }
                    _ => {}
                }
                gst::PadProbeReturn::Ok
            },
        );
    }

    /// The EOS of source `index` went through its branch: remove the branch (from another
    /// thread, the branch's own streaming thread is the caller).
    pub(super) fn branch_ended(self: &Arc<Self>, index: u32) {
        if self.stopping.load(Ordering::SeqCst) {
            return;
        }
        let weak = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name(format!("remove-branch-{index}"))
            .spawn(move || {
                let Some(s) = weak.upgrade() else { return };
                let branch = s.branches.lock().unwrap().by_index.remove(&index);
                if let Some(b) = branch {
                    // Locked first: a pipeline state change under way (a shutdown) would
                    // otherwise set the branch back to READY after this NULL, and the branch
                    // would be disposed out of NULL once removed.
                    b.bin.set_locked_state(true);
                    let _ = b.bin.set_state(gst::State::Null);
                    if let Some(ghost) = b.bin.static_pad("sink") {
                        let _ = b.demux_pad.unlink(&ghost);
                    }
                    let _ = s.pipeline.remove(&b.bin);
                }
                s.by_index.lock().unwrap().remove(&index);
                s.branch_gone.notify_all();
            });
        if let Err(e) = spawned {
            gst::error!(
                gst::CAT_DEFAULT,
                "cannot remove the branch of source {index}: {e}"
            );
        }
    }
}
