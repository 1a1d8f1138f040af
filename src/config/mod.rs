//! Model configuration files (TOML).
//!
//! ```toml
//! [model]
//! name = "shapes-yolo"                # optional: default = model file stem
//! onnx = "models/shapes-yolo.onnx"    # relative to this file; or engine = "x.engine"
//! labels = "shapes.txt"               # optional, one label per line
//! max-batch = 16                      # optional, default 16
//! backend = "onnxruntime-cpu"         # optional default backend
//! [input]
//! name = "images"                     # optional: default = the model's first input
//! width = 640
//! height = 640
//! dtype = "f32"                       # f32 | f16, default f32
//! resize = "letterbox"                # letterbox | stretch, default letterbox
//! pad-value = 114                     # 0..255, default 114
//! color = "rgb"                       # rgb | bgr, default rgb
//! scale = 0.00392156862745098         # default 1/255
//! mean = [0.0, 0.0, 0.0]              # default 0
//! std = [1.0, 1.0, 1.0]               # default 1
//! [output]
//! parser = "yolo"                     # yolo | yolo-seg | detr | raw | dense | landmarks
//! conf-threshold = 0.25
//! nms-iou = 0.45
//! max-detections = 100
//! boxes = "output0"                   # optional tensor names (defaults per parser)
//! protos = "output1"
//! logits = "logits"
//! masks = "masks"
//! detr-sigmoid = false                # optional: DETR logits are sigmoid (RT-DETR)
//! dense = "depth"                     # dense: the map (default: the first output)
//! keypoints = "keypoints"             # landmarks: [n, K, 2|3] keypoints
//! attributes = "colors"               # landmarks: [n, C] attribute scores
//! keypoint-names = ["nose", "tail"]   # landmarks: names of the K keypoints
//! ```
//!
//! Every problem is reported as a [`ConfigError`] with a sentence naming the file and the
//! key; parsing never panics, whatever the input.

mod labels;
mod model;
pub mod npy;
mod preprocess;
pub mod promptseg;
mod raw;

pub use labels::{load_labels, parse_labels};
pub(crate) use model::{backend_for, file_stem, model_file, parse_input};
pub use model::{ModelConfig, ModelFile};
pub use preprocess::{enum_nicks, ColorOrder, InputDType, PreprocessConfig, ResizeMode};
pub(crate) use raw::{float_in, int_in, non_empty, read_text, resolve, RawInput};

/// Largest accepted model input width or height, in pixels.
pub const MAX_INPUT_SIZE: u32 = 16384;
/// Largest accepted `max-batch`.
pub const MAX_BATCH_LIMIT: usize = 4096;
/// Largest accepted `max-detections`.
pub const MAX_DETECTIONS_LIMIT: usize = 1_000_000;
/// Config and label files larger than this are rejected (bytes).
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Failure to load a model configuration, always with an actionable sentence.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// The config (or labels) file cannot be read.
    #[error("cannot read {what} {path}: {reason}")]
    Read {
        /// Which file: "model config" or "labels file".
        what: &'static str,
        /// The file path.
        path: String,
        /// Why (OS error, not UTF-8, too large).
        reason: String,
    },
    /// A file named by the config does not exist.
    #[error("{origin}: the {what} file {path} does not exist")]
    MissingFile {
        /// The config file path (or "model config" for in-memory text).
        origin: String,
        /// Which file: "ONNX model", "TensorRT engine" or "labels".
        what: &'static str,
        /// The absolute path that was looked for.
        path: String,
    },
    /// The TOML is malformed, has unknown keys or lacks required ones.
    #[error("{origin} is not a valid model config: {message}")]
    Syntax {
        /// The config file path (or "model config" for in-memory text).
        origin: String,
        /// The TOML parser's message, with line and column.
        message: String,
    },
    /// A value is out of range or not one of the accepted names.
    #[error("{origin}: {message}")]
    Invalid {
        /// The config file path (or "model config" for in-memory text).
        origin: String,
        /// Sentence naming the key, the accepted values and the value found.
        message: String,
    },
}

#[cfg(test)]
mod tests;
