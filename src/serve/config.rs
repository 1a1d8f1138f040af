//! The service's TOML file: cameras, models, tracker and outputs.
//!
//! Relative paths (model configs, output files and directories) are relative to the
//! directory of the TOML file, like deepstream-app's configs, so a config works from any
//! working directory. See `docs/serve.md` for the format with an example.

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Why a service config cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ServeConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a valid service config: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// One camera: a unique id and the URI it is read from.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    /// Unique name used by the API, the metrics and the recording file names.
    pub id: String,
    /// `scene://<n>` (synthetic camera) or any URI `trtcamsrc` opens (rtsp, rtsps, http(s), file).
    pub uri: String,
    /// Record this camera's analysed frames into `[output] recordings` (default false).
    #[serde(default)]
    pub record: bool,
    /// GPU of `[service] gpus` whose chain this camera joins; absent = the chain with the
    /// fewest cameras.
    #[serde(default)]
    pub gpu: Option<u32>,
}

/// One model chain (`trtpreprocess ! trtinfer`) and the cameras it runs on.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// Model config TOML (engines/*.toml format).
    pub config: PathBuf,
    /// Camera ids the model runs on; absent = every camera, including cameras added later
    /// through the API.
    pub cameras: Option<Vec<String>>,
}

/// Batching settings (trtmux).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BatchConfig {
    /// Frames per batch; -1 = one slot per connected camera (default).
    #[serde(default = "default_batch_size")]
    pub batch_size: i32,
    /// Microseconds to wait for the missing frames of a partial batch (default 40 000).
    #[serde(default = "default_push_timeout")]
    pub batched_push_timeout: i64,
}

fn default_batch_size() -> i32 {
    -1
}
fn default_push_timeout() -> i64 {
    40_000
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            batch_size: default_batch_size(),
            batched_push_timeout: default_push_timeout(),
        }
    }
}

/// Video encoder of the recordings and the mosaic.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum EncoderChoice {
    /// nvh264enc when GStreamer has it (a GPU is present), x264enc otherwise.
    #[default]
    Auto,
    /// x264enc (CPU).
    X264,
    /// nvh264enc (NVENC).
    Nvh264,
}

/// What the service writes.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OutputConfig {
    /// Directory of the per-camera recordings (`<camera id>-<unix seconds>.mp4`), for
    /// cameras with `record = true`.
    pub recordings: Option<PathBuf>,
    /// JSON lines file of every frame's detections (trtjsonexport format).
    pub json: Option<PathBuf>,
    /// MP4 file of the mosaic of all cameras.
    pub mosaic: Option<PathBuf>,
    /// Mosaic size in pixels (default 1280x720).
    pub mosaic_width: Option<u32>,
    pub mosaic_height: Option<u32>,
    /// Mosaic grid (0 or absent = chosen from the batch size).
    pub mosaic_columns: Option<u32>,
    pub mosaic_rows: Option<u32>,
    /// Encoder of recordings and mosaic (default auto).
    #[serde(default)]
    pub encoder: EncoderChoice,
    /// Encoder bit rate in kbit/s (default 4000).
    pub bitrate: Option<u32>,
    /// Directory of event recordings (`POST /cameras/{id}/record`, trtcamsrc cameras);
    /// default: `recordings`.
    pub events: Option<PathBuf>,
    /// Seconds of compressed stream each trtcamsrc camera keeps for event recordings
    /// (default 10).
    pub event_buffer: Option<u32>,
    /// JSON lines file of the service's event messages (recording started / finished /
    /// failed, schema trtvision-message-v1).
    pub messages: Option<PathBuf>,
    /// Message broker the event messages also go to (`mqtt://`, `redis://`, `nats://`, as
    /// trtmsgbroker's uri).
    pub broker: Option<String>,
}

/// Event recordings started by detection rules (`[[recording.rules]]`).
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct RecordingConfig {
    #[serde(default)]
    pub rules: Vec<crate::recording::rule::RuleConfig>,
}

/// Object tracking (trttracker) on the detections.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct TrackerConfig {
    /// Run the tracker after the models (default false).
    #[serde(default)]
    pub enabled: bool,
}

/// `[service] gpus`: the GPUs the cameras are spread over, one chain per GPU.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Gpus {
    /// These device ordinals (`gpus = [0, 1]`).
    List(Vec<u32>),
    /// `gpus = "all"`: every GPU of the machine.
    Named(String),
}

/// `[service]`: how the pipeline is laid out.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Absent: one chain on the pipeline's CUDA context (one GPU or none).
    pub gpus: Option<Gpus>,
}

impl ServiceConfig {
    /// The device ordinals of the chains: one per GPU; `[]` = one chain without a
    /// `device-id` (the behaviour without the key). `count` is the number of GPUs of the
    /// machine (for `"all"`; 0 without a driver).
    pub fn chain_gpus(&self, count: u32) -> Vec<u32> {
        match &self.gpus {
            None => Vec::new(),
            Some(Gpus::List(l)) => l.clone(),
            Some(Gpus::Named(_)) if count > 1 => (0..count).collect(),
            Some(Gpus::Named(_)) => Vec::new(),
        }
    }
}

/// The chain (index into `gpus`) a new camera joins: the one of its `gpu`, else the chain
/// with the fewest cameras (`load[i]`: cameras of chain i), the first of equals.
pub fn chain_for(gpu: Option<u32>, gpus: &[u32], load: &[usize]) -> Result<usize, String> {
    match gpu {
        Some(g) if gpus.is_empty() => Err(format!(
            "gpu = {g} needs [service] gpus (the GPUs cameras are spread over)"
        )),
        Some(g) => gpus
            .iter()
            .position(|&x| x == g)
            .ok_or_else(|| format!("gpu = {g} is not one of [service] gpus {gpus:?}")),
        None => Ok(load
            .iter()
            .enumerate()
            .min_by_key(|(i, n)| (**n, *i))
            .map_or(0, |(i, _)| i)),
    }
}

/// The whole service config.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    #[serde(default, rename = "camera")]
    pub cameras: Vec<CameraConfig>,
    #[serde(default, rename = "model")]
    pub models: Vec<ModelEntry>,
    #[serde(default)]
    pub batch: BatchConfig,
    #[serde(default)]
    pub tracker: TrackerConfig,
    #[serde(default)]
    pub output: OutputConfig,
    #[serde(default)]
    pub recording: RecordingConfig,
    /// `ADDR:PORT` of the HTTP API when `--http` is not given.
    pub http: Option<String>,
    #[serde(default)]
    pub service: ServiceConfig,
}

impl ServeConfig {
    /// Reads and validates `path`; relative paths become relative to its directory.
    pub fn from_file(path: &Path) -> Result<Self, ServeConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ServeConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_toml_str(&text, base).map_err(|e| match e {
            ServeConfigError::Parse { message, .. } => ServeConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
    }

    /// Parses `text`, resolving relative paths against `base`, and validates it.
    pub fn from_toml_str(text: &str, base: &Path) -> Result<Self, ServeConfigError> {
        let mut cfg: ServeConfig = toml::from_str(text).map_err(|e| ServeConfigError::Parse {
            path: PathBuf::new(),
            message: e.to_string(),
        })?;
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        for m in &mut cfg.models {
            resolve(&mut m.config);
        }
        let o = &mut cfg.output;
        for p in [
            &mut o.recordings,
            &mut o.json,
            &mut o.mosaic,
            &mut o.events,
            &mut o.messages,
        ]
        .into_iter()
        .flatten()
        {
            resolve(p);
        }
        for r in &mut cfg.recording.rules {
            if let Some(p) = r.zone_file.as_mut() {
                resolve(p);
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ServeConfigError> {
        let invalid = |m: String| Err(ServeConfigError::Invalid(m));
        let mut seen = std::collections::HashSet::new();
        for c in &self.cameras {
            if let Err(m) = validate_camera_id(&c.id) {
                return invalid(m);
            }
            if !seen.insert(c.id.as_str()) {
                return invalid(format!("camera id \"{}\" appears twice", c.id));
            }
            if let Err(m) = super::camera::CameraUri::parse(&c.uri) {
                return invalid(format!("camera \"{}\": {m}", c.id));
            }
            if c.record && self.output.recordings.is_none() {
                return invalid(format!(
                    "camera \"{}\" has record = true but [output] has no recordings directory",
                    c.id
                ));
            }
        }
        for m in &self.models {
            for id in m.cameras.iter().flatten() {
                if !seen.contains(id.as_str()) {
                    return invalid(format!(
                        "model {} runs on camera \"{id}\", which is not a [[camera]] of this file",
                        m.config.display()
                    ));
                }
            }
        }
        match &self.service.gpus {
            Some(Gpus::Named(n)) if n != "all" => {
                return invalid(format!(
                "[service] gpus = \"{n}\" is not valid: use \"all\" or a list of GPU numbers such as [0, 1]"
            ))
            }
            Some(Gpus::List(l)) if l.is_empty() => {
                return invalid("[service] gpus = [] is empty: leave the key out for one chain".into())
            }
            Some(Gpus::List(l)) if (1..l.len()).any(|i| l[..i].contains(&l[i])) => {
                return invalid(format!("[service] gpus {l:?} names a GPU twice"))
            }
            _ => {}
        }
        let gpus = match &self.service.gpus {
            Some(Gpus::List(l)) => Some(l.as_slice()),
            _ => None,
        };
        for c in &self.cameras {
            match (c.gpu, gpus) {
                (Some(g), Some(l)) if !l.contains(&g) => {
                    return invalid(format!(
                        "camera \"{}\" has gpu = {g}, which is not one of [service] gpus {l:?}",
                        c.id
                    ))
                }
                (Some(g), None) if self.service.gpus.is_none() => {
                    return invalid(format!(
                        "camera \"{}\" has gpu = {g} but [service] has no gpus to spread cameras over",
                        c.id
                    ))
                }
                _ => {}
            }
        }
        let mut rules = std::collections::HashSet::new();
        for r in &self.recording.rules {
            if let Err(m) = r.validate() {
                return invalid(m);
            }
            if validate_camera_id(&r.name).is_err() {
                return invalid(format!(
                    "recording rule name \"{}\" is not valid: use 1 to 64 letters, digits, '-', '_' or '.'",
                    r.name
                ));
            }
            if !rules.insert(r.name.as_str()) {
                return invalid(format!("recording rule name \"{}\" appears twice", r.name));
            }
            if self.output.events.is_none() && self.output.recordings.is_none() {
                return invalid(format!(
                    "recording rule \"{}\" needs event recording: set events (or recordings) in [output]",
                    r.name
                ));
            }
        }
        if let Some(uri) = &self.output.broker {
            if let Err(m) = crate::broker::Destination::parse(uri) {
                return invalid(format!("[output] broker: {m}"));
            }
        }
        if self.batch.batch_size == 0 {
            return invalid(
                "[batch] batch-size 0 is invalid: use -1 (one slot per camera) or at least 1".into(),
            );
        }
        Ok(())
    }
}

/// Camera ids appear in URLs, metric labels and file names: letters, digits, `-`, `_`, `.`.
pub fn validate_camera_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !id.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "camera id \"{id}\" is not valid: use 1 to 64 letters, digits, '-', '_' or '.' (not first)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
        http = "127.0.0.1:8080"
        [[camera]]
        id = "door"
        uri = "scene://0"
        record = true
        [[camera]]
        id = "yard"
        uri = "rtsp://user:pw@10.0.0.2/stream"
        [[model]]
        config = "shapes-yolo.toml"
        [[model]]
        config = "/abs/depth.toml"
        cameras = ["yard"]
        [tracker]
        enabled = true
        [output]
        recordings = "rec"
        json = "out/d.jsonl"
        mosaic = "/tmp/m.mp4"
        encoder = "x264"
    "#;

    #[test]
    fn parses_and_resolves_relative_paths() {
        let c = ServeConfig::from_toml_str(EXAMPLE, Path::new("/etc/trt")).unwrap();
        assert_eq!(c.cameras.len(), 2);
        assert!(c.cameras[0].record);
        assert_eq!(c.models[0].config, PathBuf::from("/etc/trt/shapes-yolo.toml"));
        assert_eq!(c.models[1].config, PathBuf::from("/abs/depth.toml"));
        assert_eq!(c.models[1].cameras.as_deref(), Some(&["yard".to_string()][..]));
        assert_eq!(c.output.recordings, Some(PathBuf::from("/etc/trt/rec")));
        assert_eq!(c.output.json, Some(PathBuf::from("/etc/trt/out/d.jsonl")));
        assert_eq!(c.output.mosaic, Some(PathBuf::from("/tmp/m.mp4")));
        assert_eq!(c.output.encoder, EncoderChoice::X264);
        assert!(c.tracker.enabled);
        assert_eq!(c.batch, BatchConfig::default());
        assert_eq!(c.http.as_deref(), Some("127.0.0.1:8080"));
    }

    #[test]
    fn recording_rules_and_event_outputs() {
        let text =
            "[output]\nevents = 'ev'\nmessages = 'ev/events.jsonl'\nbroker = 'mqtt://127.0.0.1:1883/rec'\n\
                    [[recording.rules]]\nname = 'person-door'\nlabel = 'person'\nmin-confidence = 0.6\n\
                    zone-file = 'zones.toml'\nzone = 'door'\nafter = 8\n";
        let c = ServeConfig::from_toml_str(text, Path::new("/etc/trt")).unwrap();
        let r = &c.recording.rules[0];
        assert_eq!(r.name, "person-door");
        assert_eq!(r.zone_file, Some(PathBuf::from("/etc/trt/zones.toml")));
        assert_eq!((r.before, r.after, r.cooldown), (5.0, 8.0, 30.0));
        assert_eq!(c.output.messages, Some(PathBuf::from("/etc/trt/ev/events.jsonl")));
        let no_dir = "[[recording.rules]]\nname = 'a'";
        let e = ServeConfig::from_toml_str(no_dir, Path::new(".")).unwrap_err();
        assert!(e.to_string().contains("events"), "{e}");
        let twice = "[output]\nevents='e'\n[[recording.rules]]\nname='a'\n[[recording.rules]]\nname='a'";
        let e = ServeConfig::from_toml_str(twice, Path::new(".")).unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
        let bad = "[output]\nbroker = 'kafka://x/y'";
        assert!(ServeConfig::from_toml_str(bad, Path::new(".")).is_err());
    }

    #[test]
    fn rejects_duplicates_unknown_cameras_and_typos() {
        let dup = "[[camera]]\nid='a'\nuri='scene://0'\n[[camera]]\nid='a'\nuri='scene://1'";
        let e = ServeConfig::from_toml_str(dup, Path::new(".")).unwrap_err();
        assert!(e.to_string().contains("appears twice"), "{e}");
        let unknown = "[[camera]]\nid='a'\nuri='scene://0'\n[[model]]\nconfig='m.toml'\ncameras=['b']";
        let e = ServeConfig::from_toml_str(unknown, Path::new(".")).unwrap_err();
        assert!(e.to_string().contains("\"b\""), "{e}");
        let typo = "[[camera]]\nid='a'\nuri='scene://0'\nrecrod=true";
        let e = ServeConfig::from_toml_str(typo, Path::new(".")).unwrap_err();
        assert!(e.to_string().contains("recrod"), "{e}");
        let no_dir = "[[camera]]\nid='a'\nuri='scene://0'\nrecord=true";
        let e = ServeConfig::from_toml_str(no_dir, Path::new(".")).unwrap_err();
        assert!(e.to_string().contains("recordings"), "{e}");
        let bad_uri = "[[camera]]\nid='a'\nuri='nonsense'";
        assert!(ServeConfig::from_toml_str(bad_uri, Path::new(".")).is_err());
    }

    #[test]
    fn camera_ids_are_url_and_file_safe() {
        assert!(validate_camera_id("cam-01_a.b").is_ok());
        for bad in ["", "a/b", "a b", ".hidden", "é", &"x".repeat(65)] {
            assert!(validate_camera_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn gpus_spread_cameras_over_chains() {
        let cfg = |service: &str, cams: &str| {
            ServeConfig::from_toml_str(
                &format!(
                    "{service}\n[[camera]]\nid = \"a\"\nuri = \"scene://0\"\n{cams}\n[[camera]]\nid = \"b\"\nuri = \"scene://1\"\n"
                ),
                Path::new("/"),
            )
        };
        let c = cfg("[service]\ngpus = [0, 1]", "gpu = 1").unwrap();
        assert_eq!(c.service.chain_gpus(8), vec![0, 1]);
        assert_eq!(c.cameras[0].gpu, Some(1));
        let c = cfg("[service]\ngpus = \"all\"", "").unwrap();
        assert_eq!(c.service.chain_gpus(4), vec![0, 1, 2, 3]);
        assert_eq!(c.service.chain_gpus(1), Vec::<u32>::new(), "one GPU: one chain");
        assert_eq!(c.service.chain_gpus(0), Vec::<u32>::new(), "no GPU: one chain");
        assert_eq!(cfg("", "").unwrap().service.chain_gpus(8), Vec::<u32>::new());
        for (service, cams, why) in [
            ("[service]\ngpus = \"some\"", "", "\"all\""),
            ("[service]\ngpus = []", "", "empty"),
            ("[service]\ngpus = [1, 1]", "", "twice"),
            ("[service]\ngpus = [0, 1]", "gpu = 2", "not one of"),
            ("", "gpu = 0", "no gpus"),
        ] {
            let e = cfg(service, cams).unwrap_err().to_string();
            assert!(e.contains(why), "{service} {cams}: {e}");
        }
        // Explicit GPU, else the least loaded chain (first of equals).
        assert_eq!(chain_for(Some(1), &[0, 1], &[0, 5]), Ok(1));
        assert_eq!(chain_for(None, &[0, 1], &[0, 0]), Ok(0));
        assert_eq!(chain_for(None, &[0, 1], &[1, 0]), Ok(1));
        assert_eq!(chain_for(None, &[0, 1, 2], &[2, 1, 1]), Ok(1));
        assert_eq!(chain_for(None, &[], &[3]), Ok(0));
        assert!(chain_for(Some(3), &[0, 1], &[0, 0]).is_err());
        assert!(chain_for(Some(0), &[], &[0]).is_err());
    }
}
