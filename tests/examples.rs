//! The embedding examples (`examples/embed_8cam.rs`, `examples/python/embed_8cam.py`) and
//! `pipelines/read-roi-meta.py`, run as a user runs them: 8 synthetic cameras, their output
//! checked (every camera delivered frames, objects were detected, tracked and masked).
//!
//! The Python programs need PyGObject in the `python3` that `scripts/env.sh` puts first on
//! PATH (`scripts/setup.sh` makes `.venv` see Debian's python3-gi). Without it a test prints
//! why and skips, except under CI (`CI` set), where that is a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `cmd` in the checkout's root under a time limit; (success, stdout, stderr).
fn run(cmd: &mut Command, limit_s: u32) -> (bool, String, String) {
    let program = cmd.get_program().to_os_string();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_os_string()).collect();
    let out = Command::new("timeout")
        .arg(limit_s.to_string())
        .arg(&program)
        .args(&args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program:?}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Checks the per-camera summary lines of an embedding example.
fn check_summary(stdout: &str, frames: u64) {
    for cam in 0..8 {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("camera {cam}: ")))
            .unwrap_or_else(|| panic!("no summary line for camera {cam} in:\n{stdout}"));
        let nums: Vec<u64> = line
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|w| w.parse().ok())
            .collect();
        // camera N: F frames, D detections (M with a mask), T tracked objects [...]
        assert!(nums.len() >= 5, "unexpected summary line: {line}");
        assert_eq!(nums[1], frames, "camera {cam} frames: {line}");
        assert!(nums[2] > 0, "camera {cam} detected nothing: {line}");
        assert!(nums[3] > 0, "camera {cam} has no mask: {line}");
        assert!(nums[4] > 0, "camera {cam} has no tracked object: {line}");
    }
    assert!(
        stdout.lines().any(|l| l.contains(" entered at ")),
        "no object entered a view:\n{stdout}"
    );
}

/// True when `python3` (first on PATH) imports gi; otherwise skips (or fails under CI).
fn python_has_gi(test: &str) -> bool {
    let (ok, _, err) = run(Command::new("python3").args(["-c", "import gi"]), 60);
    if ok {
        return true;
    }
    let why = format!(
        "{test}: python3 ({}) cannot import gi: {}; run scripts/setup.sh (it installs python3-gi and \
         makes .venv see it), then . scripts/env.sh",
        which_python3(),
        err.trim()
    );
    if std::env::var_os("CI").is_some() {
        panic!("{why}");
    }
    eprintln!("SKIPPED {why}");
    false
}

fn which_python3() -> String {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("python3"))
                .find(|p| p.is_file())
        })
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "not found".into())
}

/// target/<profile>/examples/<name>, next to this test's own binary (target/<profile>/deps).
fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary has a path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binaries live in target/<profile>/deps");
    profile_dir.join("examples").join(name)
}

#[test]
fn rust_embedding_example() {
    let bin = example_binary("embed_8cam");
    assert!(
        bin.is_file(),
        "{} is missing: `cargo test --release` builds it (or cargo build --release --example embed_8cam)",
        bin.display()
    );
    let (ok, out, err) = run(Command::new(&bin).arg("12"), 300);
    assert!(ok, "embed_8cam failed:\n{out}\n{err}");
    check_summary(&out, 12);
}

#[test]
fn python_embedding_example() {
    if !python_has_gi("python_embedding_example") {
        return;
    }
    let (ok, out, err) = run(
        Command::new("python3").args(["examples/python/embed_8cam.py", "12"]),
        300,
    );
    assert!(ok, "examples/python/embed_8cam.py failed:\n{out}\n{err}");
    check_summary(&out, 12);
}

#[test]
fn python_read_roi_meta() {
    if !python_has_gi("python_read_roi_meta") {
        return;
    }
    let (ok, out, err) = run(Command::new("python3").arg("pipelines/read-roi-meta.py"), 300);
    assert!(ok, "pipelines/read-roi-meta.py failed:\n{out}\n{err}");
    for frame in 0..3 {
        assert!(
            out.lines()
                .any(|l| l.starts_with(&format!("frame {frame}: ")) && l.contains("mask_pixels=")),
            "no detection for frame {frame}:\n{out}\n{err}"
        );
    }
}
