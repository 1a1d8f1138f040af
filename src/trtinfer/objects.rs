//! Secondary inference on objects (`operate-on=objects`): crops of selected detections,
//! taken from the original frames of the batch, become one input tensor per chunk of at
//! most `max-batch` crops; the parsed results go back to the objects they came from.
//!
//! A crop is an ordinary preprocessing row whose placement is
//! [`LetterboxTransform::crop`]: the same bilinear sampling, colour conversion and
//! normalisation as trtpreprocess ([`crate::ops::preprocess::fill_row`]), and the same
//! transform maps the model's crop coordinates back to frame pixels.

use crate::config::{PreprocessConfig, ResizeMode};
use crate::geometry::LetterboxTransform;
use crate::ops::preprocess::{self, Scratch};
use crate::results::Detection;
use crate::tensor::{HostTensorPool, PooledBytes, Tensor};
use crate::video::FrameReader;

/// Which detections get a crop.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObjectFilter {
    /// Only detections of this model (`None` = of every model but this one).
    pub model: Option<String>,
    /// Only these class ids (empty = all).
    pub classes: Vec<u32>,
    /// Smallest box width and height in frame pixels (0 = no limit).
    pub min_size: u32,
    /// Most crops per batch, best confidence first (0 = no limit).
    pub max_objects: usize,
}

impl ObjectFilter {
    /// Whether detection `d` gets a crop from model `own` (a model never crops its own
    /// detections).
    pub fn accepts(&self, d: &Detection, own: &str) -> bool {
        let model_ok = match &self.model {
            Some(m) => *d.model == **m,
            None => &*d.model != own,
        };
        model_ok
            && (self.classes.is_empty() || self.classes.contains(&d.class_id))
            && d.bbox.width() >= self.min_size as f32
            && d.bbox.height() >= self.min_size as f32
            && d.bbox.width() >= 1.0
            && d.bbox.height() >= 1.0
    }
}

/// One selected object: slot index, detection index, confidence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ObjectRef {
    pub slot: usize,
    pub detection: usize,
    pub confidence: f32,
}

/// Reusable state of the object mode: the selection, the crop placements, the tensor pool
/// and the preprocessing scratch (nothing is allocated per batch after warm-up but the
/// frame mappings).
#[derive(Debug)]
pub struct CropStage {
    pub filter: ObjectFilter,
    pub pre: PreprocessConfig,
    pub(super) objects: Vec<ObjectRef>,
    pub(super) transforms: Vec<LetterboxTransform>,
    pool: HostTensorPool,
    scratch: Vec<Scratch>,
    /// GPU crops: the element's CUDA context, the preprocessor (created on the first batch
    /// of CUDA frames), and whether the GPU path is off.
    #[cfg(feature = "cuda")]
    pub(super) gpu: GpuCrops,
}

/// The CUDA side of the object mode: the same kernel as trtpreprocess, launched once per
/// chunk with one row per crop (the frame of each crop repeated, its crop placement as the
/// row's transform).
#[cfg(feature = "cuda")]
#[derive(Debug, Default)]
pub struct GpuCrops {
    pub ctx: Option<crate::cuda::CudaContext>,
    pre: Option<crate::ops::preprocess::cuda::CudaPreprocessor>,
    pub disabled: bool,
    /// Why the GPU path was turned off after a failure (for the element's log).
    pub failure: Option<String>,
}

#[cfg(feature = "cuda")]
impl GpuCrops {
    /// The device frame of every selected crop, when all their frames are CUDA memory the
    /// context can read (`maps` keeps the mappings alive); `None` = CPU path.
    pub fn frames(
        &self,
        objects: &[ObjectRef],
        slots: &[crate::batch::FrameSlot],
        maps: &mut Vec<(usize, crate::cuda::CudaFrameMap)>,
    ) -> Option<Vec<crate::cuda::CudaFrame>> {
        let ctx = self.ctx.as_ref().filter(|_| !self.disabled)?;
        maps.clear();
        let mut frames = Vec::with_capacity(objects.len());
        for o in objects {
            if let Some((_, m)) = maps.iter().find(|(i, _)| *i == o.slot) {
                frames.push(m.frame());
                continue;
            }
            let slot = slots.get(o.slot)?;
            // As in trtpreprocess: I420 CUDA frames take the CPU path.
            if slot.info.format() == gst_video::VideoFormat::I420 {
                return None;
            }
            let m = crate::cuda::map_cuda_frame(slot.buffer.as_ref(), &slot.info).ok()?;
            if !m.is_accessible_from(ctx) {
                return None;
            }
            frames.push(m.frame());
            maps.push((o.slot, m));
        }
        Some(frames)
    }

    /// One launch for the crops `frames[i]` placed by `transforms[i]`; waits for it (the
    /// backend reads the tensor next). `Err` = message for the log; the GPU path is then off.
    pub fn run(
        &mut self,
        pre: &PreprocessConfig,
        max_batch: usize,
        name: &str,
        frames: &[crate::cuda::CudaFrame],
        transforms: &[LetterboxTransform],
    ) -> Result<Tensor, String> {
        let fail = |this: &mut Self, e: String| {
            this.disabled = true;
            this.failure = Some(e.clone());
            Err(e)
        };
        if self.pre.is_none() {
            let Some(ctx) = &self.ctx else {
                return fail(self, "no CUDA context".into());
            };
            match crate::ops::preprocess::cuda::CudaPreprocessor::for_gst(ctx, pre, max_batch) {
                Ok(mut p) => {
                    p.set_tensor_name(name);
                    self.pre = Some(p);
                }
                Err(e) => return fail(self, format!("CUDA crops unavailable: {e}")),
            }
        }
        let Some(p) = self.pre.as_mut() else {
            return fail(self, "no CUDA preprocessor".into());
        };
        let t = match p.run(frames, transforms) {
            Ok(t) => t,
            Err(e) => return fail(self, format!("CUDA crops failed: {e}")),
        };
        if let Some(lease) = crate::cuda::device_lease(&t) {
            if let Err(e) = lease.wait() {
                return fail(self, format!("waiting for the CUDA crops: {e}"));
            }
        }
        Ok(t)
    }
}

impl CropStage {
    pub fn new(filter: ObjectFilter, pre: PreprocessConfig) -> Self {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(8);
        Self {
            filter,
            pre,
            objects: Vec::new(),
            transforms: Vec::new(),
            pool: HostTensorPool::new(),
            scratch: (0..threads).map(|_| Scratch::default()).collect(),
            #[cfg(feature = "cuda")]
            gpu: GpuCrops::default(),
        }
    }

    /// Selects the objects of a batch (`frames[i]` = detections of slot `i`); returns how
    /// many were selected.
    pub fn select<'a>(&mut self, own: &str, frames: impl Iterator<Item = &'a [Detection]>) -> usize {
        self.objects.clear();
        self.transforms.clear();
        for (slot, dets) in frames.enumerate() {
            for (i, d) in dets.iter().enumerate() {
                if self.filter.accepts(d, own) {
                    self.objects.push(ObjectRef {
                        slot,
                        detection: i,
                        confidence: d.confidence,
                    });
                }
            }
        }
        let cap = self.filter.max_objects;
        if cap > 0 && self.objects.len() > cap {
            self.objects.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
            self.objects.truncate(cap);
            self.objects.sort_by_key(|o| (o.slot, o.detection));
        }
        self.objects.len()
    }

    /// Computes the crop placement of every selected object from its box.
    pub fn place(&mut self, boxes: impl Fn(&ObjectRef) -> (crate::geometry::BoxF, (u32, u32))) {
        let keep_aspect = self.pre.resize == ResizeMode::Letterbox;
        self.transforms.clear();
        for o in &self.objects {
            let (b, (fw, fh)) = boxes(o);
            self.transforms.push(LetterboxTransform::crop(
                fw,
                fh,
                &b,
                self.pre.width,
                self.pre.height,
                keep_aspect,
            ));
        }
    }

    /// Fills the input tensor of crops `range` (indices into the selection) from the frames
    /// (`readers[slot]`, `None` for slots without crops) on the CPU.
    pub fn fill(
        &mut self,
        name: &str,
        readers: &[Option<FrameReader<'_>>],
        range: std::ops::Range<usize>,
    ) -> Option<Tensor> {
        let n = range.len();
        let shape = vec![n, 3, self.pre.height as usize, self.pre.width as usize];
        let len = shape.iter().product::<usize>() * self.pre.dtype.size();
        let mut rows = Vec::with_capacity(n);
        for o in &self.objects[range.clone()] {
            rows.push((*readers.get(o.slot)?)?);
        }
        let mut bytes: PooledBytes = self.pool.acquire(len);
        preprocess::fill_batch(
            &self.pre,
            &rows,
            &self.transforms[range],
            bytes.as_mut_slice(),
            &mut self.scratch,
        );
        Some(Tensor::host(name.to_string(), self.pre.dtype, shape, bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::BoxF;
    use std::sync::Arc;

    fn det(model: &str, class_id: u32, confidence: f32, b: BoxF) -> Detection {
        Detection::new(Arc::from(model), class_id, Arc::from("x"), confidence, b)
    }

    #[test]
    fn selection_follows_model_classes_size_and_cap() {
        let big = BoxF::new(0.0, 0.0, 40.0, 40.0);
        let small = BoxF::new(0.0, 0.0, 10.0, 40.0);
        let f0 = [
            det("det", 0, 0.5, big),
            det("det", 1, 0.9, big),
            det("other", 0, 0.9, big),
        ];
        let f1 = [det("det", 0, 0.8, small), det("det", 0, 0.7, big)];
        let filter = ObjectFilter {
            model: Some("det".into()),
            classes: vec![0],
            min_size: 20,
            max_objects: 0,
        };
        let mut stage = CropStage::new(filter, PreprocessConfig::default());
        let frames = [&f0[..], &f1[..]];
        assert_eq!(stage.select("lm", frames.iter().copied()), 2);
        let picked: Vec<_> = stage.objects.iter().map(|o| (o.slot, o.detection)).collect();
        assert_eq!(picked, vec![(0, 0), (1, 1)]);
        stage.filter.max_objects = 1;
        assert_eq!(stage.select("lm", frames.iter().copied()), 1);
        assert_eq!((stage.objects[0].slot, stage.objects[0].detection), (1, 1));
        // Without a model, every model but the element's own.
        stage.filter = ObjectFilter::default();
        assert_eq!(stage.select("det", frames.iter().copied()), 1);
    }
}
