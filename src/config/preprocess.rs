//! The `[input]` section's meaning: how frames become the model input tensor.

use gst::glib;

use crate::geometry::LetterboxTransform;
use crate::tensor::DType;

use super::MAX_INPUT_SIZE;

/// How a frame is fitted into the model input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, glib::Enum)]
#[enum_type(name = "GstTrtResize")]
pub enum ResizeMode {
    /// Keep the aspect ratio, centre, pad the rest with `pad_value` (default).
    #[default]
    #[enum_value(
        name = "Keep the aspect ratio, centre the frame and pad the rest with pad-value",
        nick = "letterbox"
    )]
    Letterbox,
    /// Scale each axis independently to fill the input.
    #[enum_value(
        name = "Scale each axis on its own so that the frame fills the input",
        nick = "stretch"
    )]
    Stretch,
}

impl ResizeMode {
    /// Parses `letterbox` or `stretch`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "letterbox" => Some(Self::Letterbox),
            "stretch" => Some(Self::Stretch),
            _ => None,
        }
    }
    /// Name used in configs and properties.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Letterbox => "letterbox",
            Self::Stretch => "stretch",
        }
    }
}

/// Channel order of the model input planes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, glib::Enum)]
#[enum_type(name = "GstTrtColorOrder")]
pub enum ColorOrder {
    /// Plane 0 = red (default).
    #[default]
    #[enum_value(name = "Planes in red, green, blue order", nick = "rgb")]
    Rgb,
    /// Plane 0 = blue.
    #[enum_value(name = "Planes in blue, green, red order", nick = "bgr")]
    Bgr,
}

/// Element type of a prepared model input tensor (the floating-point subset of
/// [`DType`] that preprocessing writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, glib::Enum)]
#[enum_type(name = "GstTrtInputDType")]
pub enum InputDType {
    /// 32-bit floats (default).
    #[default]
    #[enum_value(name = "32-bit floating point", nick = "f32")]
    F32,
    /// 16-bit floats.
    #[enum_value(name = "16-bit floating point (half precision)", nick = "f16")]
    F16,
}

impl InputDType {
    /// The tensor element type.
    pub const fn dtype(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::F16 => DType::F16,
        }
    }

    /// The input type of a tensor element type, if preprocessing can write it.
    pub const fn from_dtype(d: DType) -> Option<Self> {
        match d {
            DType::F32 => Some(Self::F32),
            DType::F16 => Some(Self::F16),
            _ => None,
        }
    }
}

/// The nicks of a GEnum type, as "a, b or c", for messages listing accepted values.
pub fn enum_nicks<E: glib::prelude::StaticType>() -> String {
    let Some(class) = glib::EnumClass::with_type(E::static_type()) else {
        return String::new();
    };
    let nicks: Vec<&str> = class.values().iter().map(|v| v.nick()).collect();
    match nicks.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

impl ColorOrder {
    /// Parses `rgb` or `bgr`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "rgb" => Some(Self::Rgb),
            "bgr" => Some(Self::Bgr),
            _ => None,
        }
    }
    /// Name used in configs and properties.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Rgb => "rgb",
            Self::Bgr => "bgr",
        }
    }
}

/// How frames become the model input tensor `[B, 3, height, width]` (planar).
///
/// Each value is `(pixel * scale - mean[c]) / std[c]` with `pixel` in 0..=255 and `c` the
/// plane index in model order (after `color`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PreprocessConfig {
    /// Model input width in pixels (1..=16384). Default 640.
    pub width: u32,
    /// Model input height in pixels (1..=16384). Default 640.
    pub height: u32,
    /// Element type of the input tensor: f32 (default) or f16.
    pub dtype: DType,
    /// Letterbox (default) or stretch.
    pub resize: ResizeMode,
    /// Value (0..=255, before normalisation) of the letterbox padding. Default 114.
    pub pad_value: u8,
    /// Plane order: rgb (default) or bgr.
    pub color: ColorOrder,
    /// Multiplier applied to 0..=255 pixels. Default 1/255.
    pub scale: f32,
    /// Per-plane mean subtracted after scaling (model plane order). Default 0.
    pub mean: [f32; 3],
    /// Per-plane divisor after the mean (model plane order, never 0). Default 1.
    pub std: [f32; 3],
}

impl Default for PreprocessConfig {
    fn default() -> Self {
        Self {
            width: 640,
            height: 640,
            dtype: DType::F32,
            resize: ResizeMode::Letterbox,
            pad_value: 114,
            color: ColorOrder::Rgb,
            scale: 1.0 / 255.0,
            mean: [0.0; 3],
            std: [1.0; 3],
        }
    }
}

impl PreprocessConfig {
    /// Placement of a `frame_w x frame_h` frame in the model input.
    pub fn transform(&self, frame_w: u32, frame_h: u32) -> LetterboxTransform {
        match self.resize {
            ResizeMode::Letterbox => LetterboxTransform::letterbox(frame_w, frame_h, self.width, self.height),
            ResizeMode::Stretch => LetterboxTransform::stretch(frame_w, frame_h, self.width, self.height),
        }
    }

    /// Whether a model input takes what this preprocessing makes (`[batch, 3, height,
    /// width]` of `dtype`); the error is a sentence naming both.
    pub fn check_model_input(&self, input: &crate::backend::TensorSpec) -> Result<(), String> {
        let want = [1usize, 3, self.height as usize, self.width as usize];
        if input.accepts(&want) && input.dtype == self.dtype {
            return Ok(());
        }
        Err(format!(
            "input {} does not match the preprocessing ({} [batch, 3, {}, {}])",
            input.describe(),
            self.dtype.name(),
            self.height,
            self.width
        ))
    }

    /// Per-plane affine form `(a, b)` of the normalisation: `value = pixel * a + b`.
    pub fn affine(&self) -> [(f32, f32); 3] {
        std::array::from_fn(|c| (self.scale / self.std[c], -self.mean[c] / self.std[c]))
    }

    /// Checks the ranges documented on the fields; the error is a sentence.
    pub fn validate(&self) -> Result<(), String> {
        for (key, v) in [("width", self.width), ("height", self.height)] {
            if v == 0 || v > MAX_INPUT_SIZE {
                return Err(format!(
                    "{key} must be between 1 and {MAX_INPUT_SIZE} pixels, got {v}"
                ));
            }
        }
        if !matches!(self.dtype, DType::F32 | DType::F16) {
            return Err(format!("dtype must be f32 or f16, got {}", self.dtype.name()));
        }
        if !self.scale.is_finite() || self.scale == 0.0 {
            return Err(format!(
                "scale must be a finite, non-zero number, got {}",
                self.scale
            ));
        }
        if self.mean.iter().any(|v| !v.is_finite()) {
            return Err(format!("mean must hold finite numbers, got {:?}", self.mean));
        }
        if self.std.iter().any(|v| !v.is_finite() || *v == 0.0) {
            return Err(format!(
                "std must hold finite, non-zero numbers, got {:?}",
                self.std
            ));
        }
        Ok(())
    }
}
