//! [`OutputDecoder`]: a model's outputs for a batch of frames turned into results — the one
//! thing trtinfer calls after inference. It picks the decoding: outputs in host memory go
//! through the CPU parsers ([`crate::parsers`]); outputs a GPU backend left in device
//! memory are decoded where they are ([`super::yolo::cuda::YoloDecoder`] compacts the YOLO
//! candidates, [`super::dense::cuda::DenseSummarizer`] summarises dense maps, feature
//! `cuda`), and only what the results need crosses to the host. Both give the same results.

use crate::batch::MaskTensor;
use crate::geometry::LetterboxTransform;
use crate::parsers::{self, ParseParams, ParseScratch, ParserKind};
use crate::results::{DenseMap, Detection};
use crate::tensor::Tensor;

mod device;

/// Whether outputs of `parser` can stay in GPU memory for decoding (a GPU backend is asked
/// to leave them there): YOLO is decoded and dense maps are summarised on the device.
/// Never without the `cuda` feature.
pub fn decodes_on_device(parser: ParserKind) -> bool {
    cfg!(feature = "cuda") && matches!(parser, ParserKind::Yolo | ParserKind::YoloSeg | ParserKind::Dense)
}

/// What a batch's outputs decode into, one entry per row (frame) of the batch.
#[derive(Debug, Default)]
pub struct Decoded {
    /// Detections of each row (empty for `raw` and `dense`).
    pub detections: Vec<Vec<Detection>>,
    /// Dense map of each row (`dense` only, else empty).
    pub dense: Vec<DenseMap>,
    /// The mask tensor the masks of the detections come from (YOLO-seg prototypes, DETR
    /// masks), for trtmaskselect.
    pub masks: Option<MaskTensor>,
    /// Bytes of outputs copied device → host to decode them.
    pub d2h_bytes: u64,
}

/// The decoding of one model's outputs (see the module docs); reused from batch to batch.
pub struct OutputDecoder {
    parser: ParserKind,
    scratch: ParseScratch,
    /// CUDA device of the backend's outputs (for the kernels' context).
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    device_id: i32,
    /// Dense maps decoded on the device are copied to the host too.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    download_dense: bool,
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    candidates: Vec<super::yolo::YoloCandidate>,
    /// YOLO candidate kernel (created at the first batch that needs it).
    #[cfg(feature = "cuda")]
    yolo: Option<super::yolo::cuda::YoloDecoder>,
    /// Dense summary kernel (created at the first batch that needs it).
    #[cfg(feature = "cuda")]
    dense: Option<super::dense::cuda::DenseSummarizer>,
}

impl std::fmt::Debug for OutputDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputDecoder")
            .field("parser", &self.parser)
            .field("device_id", &self.device_id)
            .finish()
    }
}

impl OutputDecoder {
    /// A decoder for `parser`'s outputs; device outputs are read in the primary context
    /// of CUDA device `device_id`; `download_dense`: dense maps decoded on the device are
    /// copied to the host too.
    pub fn new(parser: ParserKind, device_id: i32, download_dense: bool) -> Self {
        Self {
            parser,
            scratch: ParseScratch::default(),
            device_id,
            download_dense,
            candidates: Vec::new(),
            #[cfg(feature = "cuda")]
            yolo: None,
            #[cfg(feature = "cuda")]
            dense: None,
        }
    }

    /// Decodes `outputs` of a batch whose row `i` is the frame placed by `transforms[i]`,
    /// on the device when the outputs are there. The error is a sentence about the
    /// outputs (what the parser expected).
    pub fn decode(
        &mut self,
        params: &ParseParams,
        outputs: &[Tensor],
        transforms: &[LetterboxTransform],
    ) -> Result<Decoded, String> {
        let rows = transforms.len();
        let on_device = outputs.iter().any(|t| t.host_bytes().is_none());
        let mut decoded = Decoded::default();
        if self.parser == ParserKind::Dense {
            decoded.dense = if on_device {
                self.dense_on_device(params, outputs, transforms, &mut decoded.d2h_bytes)?
            } else {
                parsers::dense::parse_dense(&params.model, &params.tensor_names, outputs, transforms)
                    .map_err(|e| e.to_string())?
            };
        }
        if matches!(self.parser, ParserKind::Raw | ParserKind::Dense) {
            decoded.detections = vec![Vec::new(); rows];
        } else if on_device {
            let (dets, masks) = self.yolo_on_device(params, outputs, transforms, &mut decoded.d2h_bytes)?;
            decoded.detections = dets;
            decoded.masks = masks;
        } else {
            decoded.detections =
                parsers::parse_with(&mut self.scratch, self.parser, params, outputs, transforms)
                    .map_err(|e| e.to_string())?;
            decoded.masks = self.mask_tensor(params, outputs);
        }
        Ok(decoded)
    }

    /// The host mask tensor of the parser's outputs, if it has one.
    fn mask_tensor(&self, params: &ParseParams, outputs: &[Tensor]) -> Option<MaskTensor> {
        let names = &params.tensor_names;
        match self.parser {
            ParserKind::YoloSeg => outputs
                .iter()
                .find(|t| t.name == names.protos_name())
                .map(|t| MaskTensor::Prototypes(t.clone())),
            ParserKind::Detr => outputs
                .iter()
                .find(|t| t.name == names.masks_name())
                .map(|t| MaskTensor::Dense(t.clone())),
            _ => None,
        }
    }
}
