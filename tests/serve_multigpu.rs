//! `trtvision-serve` with `[service] gpus = [0, 1]`: two decode -> trtmux -> trtpreprocess ->
//! trtinfer chains whose batches merge into the one JSON output. On a machine without a
//! CUDA GPU (CI) both chains run on the CPU and the GPU numbers only name the chains; the
//! merged output must hold every camera's frames once, with the detections a one-chain run
//! of the same cameras gives.

mod common;

use common::serve::Serve;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const CAMERAS: u64 = 4;
const FRAMES: usize = 12;

fn write_config(dir: &Path, service: &str) -> PathBuf {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let mut text = format!("{service}\n");
    for i in 0..CAMERAS {
        text += &format!(
            "[[camera]]\nid = \"cam{i}\"\nuri = \"scene://{i}?width=160&height=120&framerate=10\"\n{}",
            // cam3 names its chain; the others are spread over the chains.
            if i == 3 && !service.is_empty() {
                "gpu = 1\n"
            } else {
                ""
            }
        );
    }
    text += &format!(
        "[[model]]\nconfig = \"{}\"\n[output]\njson = \"detections.jsonl\"\n",
        common::cfg("shapes-yolo.toml")
    );
    let path = dir.join("serve.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Detections of each (source, frame) of the JSON lines; a frame listed twice fails.
fn read(jsonl: &Path) -> BTreeMap<(u64, u64), serde_json::Value> {
    let mut out = BTreeMap::new();
    let text = std::fs::read_to_string(jsonl).unwrap_or_default();
    // While the service runs, the last line may be half written.
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    for line in complete.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        let key = (v["source"].as_u64().unwrap(), v["frame"].as_u64().unwrap());
        assert!(
            out.insert(key, v["detections"].clone()).is_none(),
            "source {} frame {} is in the output twice",
            key.0,
            key.1
        );
    }
    out
}

/// Runs the service until every camera has FRAMES frames in the JSON output; returns the
/// output and the trtmux pads `/health` counted.
fn run(tag: &str, service: &str) -> (BTreeMap<(u64, u64), serde_json::Value>, u64) {
    let dir = common::temp_path("serve-multigpu", tag);
    let config = write_config(&dir, service);
    let mut serve = Serve::start(&config);
    let jsonl = dir.join("detections.jsonl");
    let deadline = Instant::now() + Duration::from_secs(120);
    let pads = loop {
        let (status, health) = serve.call("GET", "/health", None);
        let frames = read(&jsonl);
        let enough = (0..CAMERAS).all(|s| frames.range((s, 0)..(s + 1, 0)).count() >= FRAMES);
        if status == 200 && enough {
            break health["pads"]["trtmux_sink"].as_u64().unwrap_or(0);
        }
        assert!(
            Instant::now() < deadline,
            "{tag}: not every camera reached {FRAMES} frames in 120 s: {health}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let status = serve.signal(libc::SIGTERM);
    assert!(status.success(), "{tag}: trtvision-serve exited with {status}");
    (read(&jsonl), pads)
}

#[test]
fn two_gpu_chains_merge_into_one_output() {
    let (one, _) = run("one", "");
    let (two, pads) = run("two", "[service]\ngpus = [0, 1]");
    assert_eq!(
        pads, CAMERAS,
        "one trtmux sink pad per camera over the two chains"
    );
    let mut compared = 0;
    for s in 0..CAMERAS {
        let frames: Vec<u64> = two.range((s, 0)..(s + 1, 0)).map(|(k, _)| k.1).collect();
        assert!(frames.len() >= FRAMES, "source {s}: {} frames", frames.len());
        // Every frame once, in order, from the first.
        assert_eq!(
            frames,
            (0..frames.len() as u64).collect::<Vec<_>>(),
            "source {s}: frame numbers"
        );
        for (key, dets) in two.range((s, 0)..(s + 1, 0)) {
            if let Some(want) = one.get(key) {
                assert_eq!(
                    dets, want,
                    "source {} frame {}: detections differ from one chain",
                    key.0, key.1
                );
                compared += 1;
            }
        }
    }
    assert!(
        compared >= CAMERAS as usize * FRAMES,
        "{compared} frames compared"
    );
    let detections: usize = two.values().map(|d| d.as_array().map_or(0, Vec::len)).sum();
    assert!(detections > 0, "the merged output has detections");
}
