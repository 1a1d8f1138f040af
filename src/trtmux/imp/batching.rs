//! The batching policy of `trtmux`: which queued frames make the next batch, their slots,
//! and the batch pushed with the events of sources that lost frames or ended (see the
//! module documentation of `imp.rs`).

use super::*;
use crate::batch::{Batch, BatchMeta, FrameSlot};

impl TrtMux {
    /// One batch: at most one frame from each source pad with one queued, round-robin from
    /// the pad after the last one served (see the module documentation), pushed with the
    /// events of the sources that lost frames or ended.
    pub(super) fn aggregate_batch(&self, timeout: bool) -> Result<gst::FlowSuccess, gst::FlowError> {
        let began = std::time::Instant::now();
        let pads = self.sink_pads();
        let configured = self.settings.lock().unwrap().batch_size;
        let mut state = self.state.lock().unwrap();
        let batch_size = if configured < 0 {
            pads.len().max(1)
        } else {
            configured.max(1) as usize
        };

        let mut slots = Vec::with_capacity(batch_size);
        let mut gaps = Vec::new();
        while slots.len() < batch_size {
            let Some((source, info, n, buf)) = state.orphans.pop_front() else {
                break;
            };
            slots.push(slot_from(source, info, n, buf));
        }
        // Round-robin start so that with fewer slots than sources nobody starves.
        let start = state.batches as usize % pads.len().max(1);
        for k in 0..pads.len() {
            if slots.len() >= batch_size {
                break;
            }
            let (idx, pad) = &pads[(start + k) % pads.len()];
            while let Some(buf) = pad.pop_buffer() {
                if batch::is_gap_buffer(&buf) {
                    gst::log!(CAT, obj = pad, "gap at {}", buf.pts().display());
                    gaps.push(batch::source_gap_event(*idx, buf.pts(), buf.duration()));
                    continue;
                }
                slots.push(self.make_slot(&mut state, *idx, buf)?);
                break;
            }
        }

        // Sources whose last frame is now batched (or that were released) end downstream
        // after this batch.
        let released = std::mem::take(&mut state.released);
        let (removed, waiting): (Vec<u32>, Vec<u32>) = released
            .into_iter()
            .partition(|idx| !state.orphans.iter().any(|(s, ..)| s.pad_index == *idx));
        state.released = waiting;
        let mut ended: Vec<(u32, bool)> = removed.into_iter().map(|idx| (idx, true)).collect();
        for (idx, pad) in &pads {
            if pad.is_eos() && !pad.has_buffer() {
                let ps = state.pads.entry(*idx).or_default();
                if !ps.eos_announced {
                    ps.eos_announced = true;
                    ended.push((*idx, false));
                }
            }
        }
        let all_eos = state.orphans.is_empty() && pads.iter().all(|(_, p)| p.is_eos() && !p.has_buffer());

        if slots.is_empty() {
            drop(state);
            for gap in gaps {
                self.obj().src_pad().push_event(gap);
            }
            for end in ended {
                self.obj().src_pad().push_event(Self::source_eos_event(end));
            }
            if all_eos {
                gst::debug!(CAT, imp = self, "all sources ended");
                return Err(gst::FlowError::Eos);
            }
            return Err(gst_base::AGGREGATOR_FLOW_NEED_DATA);
        }

        let batch_number = state.batches;
        state.batches += 1;
        #[cfg(feature = "v1_28")]
        let upstream = self.upstream_streams(&state, &slots, &gaps, &ended);
        drop(state);
        for gap in gaps {
            self.obj().src_pad().push_event(gap);
        }

        let running_times = slots
            .iter()
            .filter_map(|s| s.source.segment.to_running_time(s.pts?));
        let pts = running_times.min();
        gst::log!(
            CAT,
            imp = self,
            "batch {batch_number}: {} of {batch_size} slots, timeout {timeout}, pts {}",
            slots.len(),
            pts.display()
        );

        let mut buffer = gst::Buffer::new();
        {
            let b = buffer.get_mut().expect("new buffer is writable");
            b.set_pts(pts);
            b.set_offset(batch_number);
            #[cfg(not(feature = "v1_28"))]
            let upstream_objects = Vec::new();
            #[cfg(feature = "v1_28")]
            let upstream_objects = match upstream {
                Some((streams, places)) => {
                    batch::upstream::add_analytics_batch_meta(b, streams);
                    places
                }
                None => Vec::new(),
            };
            BatchMeta::add(
                b,
                Batch {
                    slots,
                    batch_number,
                    batch_size,
                    inputs: Vec::new(),
                    outputs: Vec::new(),
                    models: Vec::new(),
                    tracked: false,
                    upstream_objects,
                },
            );
        }
        if let Some(pts) = pts {
            self.obj().set_position(pts);
        }
        use std::sync::atomic::Ordering::Relaxed;
        self.made_ns.fetch_add(began.elapsed().as_nanos() as u64, Relaxed);
        self.made.fetch_add(1, Relaxed);
        let res = self.obj().finish_buffer(buffer);
        if let Err(err) = res {
            // The aggregator's task owns this thread: like basesrc and queue, post the fatal
            // flow returns that downstream did not (not-linked from trtdemux, a sink that
            // refused a buffer); otherwise, once every source has pushed its last frame,
            // nothing else would notice and the pipeline would stall silently.
            if !matches!(err, gst::FlowError::Flushing | gst::FlowError::Eos) {
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Failed,
                    ("Internal data stream error."),
                    ["streaming stopped, reason {:?} ({})", err, err]
                );
            }
        }
        for end in ended {
            self.obj().src_pad().push_event(Self::source_eos_event(end));
        }
        res
    }

    pub(super) fn make_slot(
        &self,
        state: &mut State,
        idx: u32,
        buffer: gst::Buffer,
    ) -> Result<FrameSlot, gst::FlowError> {
        let ps = state.pads.entry(idx).or_default();
        let (Some(info), Some(source)) = (ps.info.clone(), ps.source(idx)) else {
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                ("Source {} sent a frame before its caps", idx),
                ["sink_{} received a buffer without a preceding caps event", idx]
            );
            return Err(gst::FlowError::NotNegotiated);
        };
        let frame_number = ps.frames;
        ps.frames += 1;
        Ok(slot_from(source, info, frame_number, buffer))
    }
}

fn slot_from(
    source: Arc<SourceStream>,
    info: gst_video::VideoInfo,
    frame_number: u64,
    buffer: gst::Buffer,
) -> FrameSlot {
    FrameSlot {
        source,
        frame_number,
        pts: buffer.pts(),
        dts: buffer.dts(),
        duration: buffer.duration(),
        info,
        buffer,
        results: Default::default(),
    }
}
