//! Outputs left in GPU memory: YOLO candidates decoded and dense maps summarised on the
//! device (cargo feature `cuda`), and what a build without it says.

use super::*;

/// Why device outputs cannot be read by a build without the `cuda` feature.
#[cfg(not(feature = "cuda"))]
const NO_CUDA: &str =
    "the outputs are in GPU memory but this build has no CUDA support (cargo feature 'cuda')";

impl OutputDecoder {
    /// YOLO outputs left on the device: candidates compacted by a kernel, only they cross
    /// to the host, then the CPU parser's NMS; YOLO-seg masks stay on the device. Adds the
    /// bytes copied to the host to `d2h`.
    #[cfg(feature = "cuda")]
    pub(super) fn yolo_on_device(
        &mut self,
        params: &ParseParams,
        outputs: &[Tensor],
        transforms: &[LetterboxTransform],
        d2h: &mut u64,
    ) -> Result<(Vec<Vec<Detection>>, Option<MaskTensor>), String> {
        let names = &params.tensor_names;
        let seg = self.parser == ParserKind::YoloSeg;
        let pick = |name: &str, pos: usize| outputs.iter().find(|t| t.name == name).or(outputs.get(pos));
        let out0 = pick(names.boxes_for(self.parser), 0).ok_or("the model returned no outputs")?;
        let protos = if seg {
            let p = pick(names.protos_name(), 1)
                .filter(|p| !std::ptr::eq(*p, out0))
                .ok_or_else(|| format!("no prototype output '{}'", names.protos_name()))?;
            match p.shape.as_slice() {
                &[b, n, _, _] if b == transforms.len() && n > 0 => Some((p, n)),
                s => {
                    return Err(format!(
                        "prototypes '{}' are {s:?}, expected [{}, prototypes, h, w]",
                        p.name,
                        transforms.len()
                    ))
                }
            }
        } else {
            None
        };
        let &[b, channels, _] = out0.shape.as_slice() else {
            return Err(format!(
                "output '{}' is {:?}, expected [batch, channels, anchors]",
                out0.name, out0.shape
            ));
        };
        let p = protos.map_or(0, |(_, n)| n);
        if b != transforms.len() || channels < 5 + p {
            return Err(format!(
                "output '{}' is {:?}, expected [{}, 4 + classes{}, anchors]",
                out0.name,
                out0.shape,
                transforms.len(),
                if seg { " + prototypes" } else { "" }
            ));
        }
        let classes = channels - 4 - p;
        if self.yolo.is_none() {
            let ctx = self.device_context("GPU decoding")?;
            self.yolo = Some(crate::ops::yolo::cuda::YoloDecoder::new(&ctx).map_err(|e| e.to_string())?);
        }
        let dec = self.yolo.as_mut().expect("created above");
        let copied = dec
            .decode(out0, classes, params.conf_threshold, &mut self.candidates)
            .map_err(|e| e.to_string())?;
        *d2h += copied as u64;
        let dets =
            crate::ops::yolo::finish_candidates(&mut self.scratch, params, &self.candidates, transforms, seg);
        let masks = protos.map(|(p, _)| MaskTensor::DevicePrototypes {
            protos: p.clone(),
            coefficients: out0.clone(),
            first: 4 + classes,
        });
        Ok((dets, masks))
    }

    /// The GPU's primary context of the outputs' device.
    #[cfg(feature = "cuda")]
    fn device_context(&self, what: &str) -> Result<crate::cuda::DeviceContext, String> {
        crate::cuda::DeviceContext::primary(self.device_id.max(0))
            .map_err(|e| format!("{what} needs a CUDA context: {e}"))
    }

    /// A dense output left on the device: each frame's map points at its row there, the
    /// summaries come from one GPU reduction (32 bytes per frame to the host), and with
    /// `download_dense` the values are copied to the host too. Adds the bytes copied to
    /// the host to `d2h`.
    #[cfg(feature = "cuda")]
    pub(super) fn dense_on_device(
        &mut self,
        params: &ParseParams,
        outputs: &[Tensor],
        transforms: &[LetterboxTransform],
        d2h: &mut u64,
    ) -> Result<Vec<DenseMap>, String> {
        use crate::ops::dense::cuda::{device_row, DenseSummarizer};
        let (t, layout) = parsers::dense::dense_output(&params.tensor_names, outputs, transforms.len())
            .map_err(|e| e.to_string())?;
        let mut maps = Vec::with_capacity(transforms.len());
        for (row, tr) in transforms.iter().enumerate() {
            let mut map = DenseMap::host(params.model.clone(), t.clone(), row, layout, *tr);
            map.device = Some(device_row(t, row).map_err(|e| e.to_string())?);
            maps.push(map);
        }
        if self.dense.is_none() {
            let ctx = self.device_context("the GPU summary of dense maps")?;
            self.dense = Some(DenseSummarizer::new(&ctx).map_err(|e| e.to_string())?);
        }
        let gpu = self.dense.as_mut().expect("created above");
        let (host, copied) = gpu
            .run(t, layout, &mut maps, self.download_dense)
            .map_err(|e| e.to_string())?;
        *d2h += copied as u64;
        if let Some(host) = host {
            for m in &mut maps {
                m.tensor = host.clone();
            }
        }
        Ok(maps)
    }

    #[cfg(not(feature = "cuda"))]
    pub(super) fn dense_on_device(
        &mut self,
        _params: &ParseParams,
        _outputs: &[Tensor],
        _transforms: &[LetterboxTransform],
        _d2h: &mut u64,
    ) -> Result<Vec<DenseMap>, String> {
        Err(NO_CUDA.into())
    }

    #[cfg(not(feature = "cuda"))]
    pub(super) fn yolo_on_device(
        &mut self,
        _params: &ParseParams,
        _outputs: &[Tensor],
        _transforms: &[LetterboxTransform],
        _d2h: &mut u64,
    ) -> Result<(Vec<Vec<Detection>>, Option<MaskTensor>), String> {
        Err(NO_CUDA.into())
    }
}
