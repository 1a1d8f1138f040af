//! Engine cache: serialized engines built from ONNX, stored in `engine_cache_dir`.
//!
//! A TensorRT engine is only valid for the GPU model and TensorRT version that built it,
//! and it bakes in precision and the batch profile. The cache key therefore covers
//! the SHA-256 of the model file, GPU name, compute capability, TensorRT version,
//! precision, max batch, workspace limit and INT8 calibration cache. Files:
//!
//! - `<model stem>.<digest>.engine`: the serialized engine (digest = first 16 hex
//!   characters of SHA-256 over the canonical key text);
//! - `<model stem>.<digest>.json`: the key in readable form ([`CacheMeta`]); an engine is
//!   used only when its metadata matches the key exactly;
//! - `timing-<gpu>-sm<cc>-trt<version>.cache`: TensorRT's timing cache, shared by builds on
//!   the same GPU model and TensorRT version (speeds up rebuilds).
//!
//! Entries of the same model file (same path) with another digest are stale: they are
//! deleted when the new engine is stored. Writes go to a temporary file and are renamed
//! into place, so a crash never leaves a truncated engine under a valid name.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::options::Precision;
use super::sha256::{sha256_hex, sha256_reader};

/// Everything an engine built from ONNX depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey {
    /// SHA-256 (hex) of the ONNX file.
    pub model_sha256: String,
    /// GPU name as reported by the driver, e.g. `NVIDIA H100 80GB HBM3`.
    pub gpu_name: String,
    /// Compute capability (major, minor).
    pub compute_capability: (i32, i32),
    /// TensorRT version of the loaded library, e.g. `11.1.0`.
    pub tensorrt_version: String,
    /// Build precision.
    pub precision: Precision,
    /// Maximum batch of the optimisation profile.
    pub max_batch: usize,
    /// Builder workspace limit in bytes (0 = default).
    pub workspace_bytes: u64,
    /// SHA-256 (hex) of the INT8 calibration cache, when one is used.
    pub calibration_sha256: Option<String>,
}

impl CacheKey {
    /// Canonical one-line text of the key (what the digest is computed over).
    pub fn canonical(&self) -> String {
        format!(
            "trtvision-engine-v1;model={};gpu={};sm={}.{};tensorrt={};precision={};max_batch={};workspace={};calib={}",
            self.model_sha256,
            self.gpu_name,
            self.compute_capability.0,
            self.compute_capability.1,
            self.tensorrt_version,
            self.precision.name(),
            self.max_batch,
            self.workspace_bytes,
            self.calibration_sha256.as_deref().unwrap_or("-"),
        )
    }

    /// Short digest used in file names (16 hex characters).
    pub fn digest(&self) -> String {
        sha256_hex(self.canonical().as_bytes())[..16].to_string()
    }
}

/// SHA-256 (hex) of a file's content.
pub fn hash_file(path: &Path) -> io::Result<String> {
    sha256_reader(fs::File::open(path)?)
}

/// Sidecar metadata of a cached engine.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CacheMeta {
    /// [`CacheKey::canonical`] of the engine.
    pub key: String,
    /// Model file the engine was built from (as given).
    pub model_path: String,
    /// GPU and TensorRT version, for people reading the file.
    pub gpu_name: String,
    pub compute_capability: String,
    pub tensorrt_version: String,
    pub precision: String,
    pub max_batch: usize,
}

impl CacheMeta {
    fn new(model: &Path, key: &CacheKey) -> Self {
        CacheMeta {
            key: key.canonical(),
            model_path: model.display().to_string(),
            gpu_name: key.gpu_name.clone(),
            compute_capability: format!("{}.{}", key.compute_capability.0, key.compute_capability.1),
            tensorrt_version: key.tensorrt_version.clone(),
            precision: key.precision.name().to_string(),
            max_batch: key.max_batch,
        }
    }
}

/// Result of a cache lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheLookup {
    /// A valid engine for this exact key.
    Hit(PathBuf),
    /// No usable engine; `path` is where the new one goes, `stale` lists older entries of
    /// the same model that will be removed once it is stored.
    Miss { path: PathBuf, stale: Vec<PathBuf> },
}

/// The engine cache directory.
#[derive(Debug, Clone)]
pub struct EngineCache {
    dir: PathBuf,
}

impl EngineCache {
    /// A cache in `dir` (created on first store).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        EngineCache { dir: dir.into() }
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn stem(model: &Path) -> String {
        let stem = model
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into());
        sanitize(&stem)
    }

    /// Path of the engine for `model` and `key`.
    pub fn engine_path(&self, model: &Path, key: &CacheKey) -> PathBuf {
        self.dir
            .join(format!("{}.{}.engine", Self::stem(model), key.digest()))
    }

    /// Path of the metadata sidecar of an engine path.
    pub fn meta_path(engine: &Path) -> PathBuf {
        engine.with_extension("json")
    }

    /// Path of the timing cache for the key's GPU and TensorRT version.
    pub fn timing_cache_path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(format!(
            "timing-{}-sm{}{}-trt{}.cache",
            sanitize(&key.gpu_name),
            key.compute_capability.0,
            key.compute_capability.1,
            sanitize(&key.tensorrt_version)
        ))
    }

    /// Looks up the engine for `model` and `key`.
    pub fn lookup(&self, model: &Path, key: &CacheKey) -> CacheLookup {
        let path = self.engine_path(model, key);
        let meta_ok = read_meta(&Self::meta_path(&path)).is_some_and(|m| m.key == key.canonical());
        if meta_ok && path.is_file() {
            return CacheLookup::Hit(path);
        }
        let stale = self.stale_entries(model, &path);
        CacheLookup::Miss { path, stale }
    }

    /// Engines of the same model file (same stem, same recorded model path, or unreadable
    /// metadata) other than `keep`.
    fn stale_entries(&self, model: &Path, keep: &Path) -> Vec<PathBuf> {
        let prefix = format!("{}.", Self::stem(model));
        let model_str = model.display().to_string();
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut stale: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p != keep)
            .filter(|p| {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let Some(digest) = name.strip_prefix(&prefix).and_then(|r| r.strip_suffix(".engine")) else {
                    return false;
                };
                if digest.len() != 16 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return false;
                }
                read_meta(&Self::meta_path(p)).is_none_or(|m| m.model_path == model_str)
            })
            .collect();
        stale.sort();
        stale
    }

    /// Stores a freshly built engine for `model`/`key` and removes stale entries of the
    /// same model. Returns the engine path.
    pub fn store(&self, model: &Path, key: &CacheKey, plan: &[u8]) -> io::Result<PathBuf> {
        fs::create_dir_all(&self.dir)?;
        let path = self.engine_path(model, key);
        let stale = self.stale_entries(model, &path);
        write_atomic(&path, plan)?;
        let meta = serde_json::to_vec_pretty(&CacheMeta::new(model, key)).map_err(io::Error::other)?;
        write_atomic(&Self::meta_path(&path), &meta)?;
        for old in stale {
            Self::evict(&old);
        }
        Ok(path)
    }

    /// Removes an engine and its metadata (errors ignored: the entry is unusable anyway).
    pub fn evict(engine: &Path) {
        let _ = fs::remove_file(engine);
        let _ = fs::remove_file(Self::meta_path(engine));
    }

    /// Reads the timing cache, if any.
    pub fn read_timing_cache(&self, key: &CacheKey) -> Option<Vec<u8>> {
        fs::read(self.timing_cache_path(key))
            .ok()
            .filter(|b| !b.is_empty())
    }

    /// Writes the timing cache.
    pub fn write_timing_cache(&self, key: &CacheKey, bytes: &[u8]) -> io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        write_atomic(&self.timing_cache_path(key), bytes)
    }
}

fn read_meta(path: &Path) -> Option<CacheMeta> {
    serde_json::from_slice(&fs::read(path).ok()?).ok()
}

/// File-name-safe form: ASCII alphanumerics, `.`, `-`, `_` kept, the rest becomes `_`.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    fs::write(&tmp, bytes)?;
    fs::rename(&tmp, path).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> CacheKey {
        CacheKey {
            model_sha256: "ab".repeat(32),
            gpu_name: "NVIDIA GeForce RTX 4090".into(),
            compute_capability: (8, 9),
            tensorrt_version: "11.1.0".into(),
            precision: Precision::Fp16,
            max_batch: 8,
            workspace_bytes: 0,
            calibration_sha256: None,
        }
    }

    struct TempDir(PathBuf);
    impl TempDir {
        fn new(tag: &str) -> Self {
            let p = std::env::temp_dir().join(format!("trtvision-trt-{}-{tag}", std::process::id()));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn key_covers_every_field() {
        let base = key();
        assert_eq!(base.digest(), key().digest());
        assert_eq!(base.digest().len(), 16);
        let variants = [
            CacheKey {
                model_sha256: "cd".repeat(32),
                ..key()
            },
            CacheKey {
                gpu_name: "NVIDIA H100".into(),
                ..key()
            },
            CacheKey {
                compute_capability: (9, 0),
                ..key()
            },
            CacheKey {
                tensorrt_version: "10.16.1".into(),
                ..key()
            },
            CacheKey {
                precision: Precision::Fp32,
                ..key()
            },
            CacheKey {
                max_batch: 16,
                ..key()
            },
            CacheKey {
                workspace_bytes: 1 << 30,
                ..key()
            },
            CacheKey {
                calibration_sha256: Some("00".into()),
                ..key()
            },
        ];
        for v in variants {
            assert_ne!(v.digest(), base.digest(), "{}", v.canonical());
        }
        assert!(base
            .canonical()
            .contains("sm=8.9;tensorrt=11.1.0;precision=fp16;max_batch=8"));
    }

    #[test]
    fn paths() {
        let cache = EngineCache::new("/var/cache/trt");
        let k = key();
        let p = cache.engine_path(Path::new("/models/yolo v8.onnx"), &k);
        assert_eq!(
            p,
            PathBuf::from(format!("/var/cache/trt/yolo_v8.{}.engine", k.digest()))
        );
        assert_eq!(EngineCache::meta_path(&p), p.with_extension("json"));
        assert_eq!(
            cache.timing_cache_path(&k),
            PathBuf::from("/var/cache/trt/timing-NVIDIA_GeForce_RTX_4090-sm89-trt11.1.0.cache")
        );
    }

    #[test]
    fn miss_store_hit_and_staleness() {
        let tmp = TempDir::new("cache");
        let cache = EngineCache::new(tmp.0.join("engines"));
        let model = tmp.0.join("yolo.onnx");
        let other_model = tmp.0.join("other").join("yolo.onnx");
        let k8 = key();
        let k16 = CacheKey {
            max_batch: 16,
            ..key()
        };

        // Nothing cached yet (directory does not even exist).
        assert_eq!(
            cache.lookup(&model, &k8),
            CacheLookup::Miss {
                path: cache.engine_path(&model, &k8),
                stale: vec![]
            }
        );
        let p8 = cache.store(&model, &k8, b"plan-8").unwrap();
        assert_eq!(cache.lookup(&model, &k8), CacheLookup::Hit(p8.clone()));
        assert_eq!(fs::read(&p8).unwrap(), b"plan-8");
        let meta: CacheMeta =
            serde_json::from_slice(&fs::read(EngineCache::meta_path(&p8)).unwrap()).unwrap();
        assert_eq!(meta.key, k8.canonical());
        assert_eq!(meta.max_batch, 8);

        // Same stem, different model file: never stale for our model.
        let k_other = CacheKey {
            model_sha256: "ef".repeat(32),
            ..k16.clone()
        };
        let po = cache.store(&other_model, &k_other, b"other").unwrap();

        // Key changes (max batch 16): miss, the batch-8 engine is stale.
        match cache.lookup(&model, &k16) {
            CacheLookup::Miss { path, stale } => {
                assert_eq!(path, cache.engine_path(&model, &k16));
                assert_eq!(stale, vec![p8.clone()]);
            }
            hit => panic!("expected a miss, got {hit:?}"),
        }
        let p16 = cache.store(&model, &k16, b"plan-16").unwrap();
        assert!(
            !p8.exists() && !EngineCache::meta_path(&p8).exists(),
            "stale entry removed"
        );
        assert!(po.exists(), "the other model's engine is kept");
        assert_eq!(cache.lookup(&model, &k16), CacheLookup::Hit(p16.clone()));

        // Metadata that does not match the key (e.g. tampered / partial) is a miss.
        fs::write(EngineCache::meta_path(&p16), b"{}").unwrap();
        assert!(matches!(cache.lookup(&model, &k16), CacheLookup::Miss { .. }));
        EngineCache::evict(&p16);
        assert!(!p16.exists());
    }

    #[test]
    fn timing_cache_roundtrip() {
        let tmp = TempDir::new("timing");
        let cache = EngineCache::new(&tmp.0);
        let k = key();
        assert_eq!(cache.read_timing_cache(&k), None);
        cache.write_timing_cache(&k, b"timing").unwrap();
        assert_eq!(cache.read_timing_cache(&k).as_deref(), Some(&b"timing"[..]));
    }

    #[test]
    fn hashes_files() {
        let tmp = TempDir::new("hash");
        let f = tmp.0.join("m.onnx");
        fs::write(&f, b"abc").unwrap();
        assert_eq!(
            hash_file(&f).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(hash_file(&tmp.0.join("missing.onnx")).is_err());
    }
}
