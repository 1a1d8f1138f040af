//! The commands of README.md and docs/*.md run as written, and the benchmark index is up
//! to date.
//!
//! Every fenced ```` ```sh ```` block of those pages carries a mark after `sh`:
//! - `test`: run here with bash from the checkout's root (after `scripts/env.sh`, as the
//!   test suite runs), under a time limit; it must exit 0;
//! - `gpu`: needs a GPU (not run here);
//! - `ci`: run by CI in another form (`.ci/run`'s set-up and test commands, cargo builds, the
//!   Rust example that `tests/examples.rs` runs);
//! - `manual`: not run by CI (meson, GPU builds).
//!
//! A block that runs `python3` needs PyGObject; without it that block is skipped with a
//! message, except under CI (`CI` set), where that is a failure. The GPU peer's check
//! (`check-gpu-peer.sh`) needs python3 with numpy and onnxruntime (the .venv's, first on PATH
//! after `scripts/env.sh`); without them it is skipped the same way: the GStreamer 1.28 lane's
//! root has sid's python3, without onnxruntime, and runs with the environment cleared (no `CI`).

use std::path::{Path, PathBuf};
use std::process::Command;

const MARKS: &[&str] = &["test", "gpu", "ci", "manual"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn pages() -> Vec<PathBuf> {
    let mut pages = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

/// (page, line, mark, body) of every ```sh block.
fn sh_blocks() -> Vec<(String, usize, String, String)> {
    let mut out = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap_or_else(|e| panic!("{}: {e}", page.display()));
        let name = page.strip_prefix(root()).unwrap_or(&page).display().to_string();
        let mut lines = text.lines().enumerate();
        while let Some((i, line)) = lines.next() {
            let Some(info) = line.strip_prefix("```") else {
                continue;
            };
            let mut words = info.split_whitespace();
            let lang = words.next().unwrap_or("");
            let mut body = String::new();
            for (_, l) in lines.by_ref() {
                if l.starts_with("```") {
                    break;
                }
                body.push_str(l);
                body.push('\n');
            }
            if lang == "sh" || lang == "bash" || lang == "shell" {
                out.push((name.clone(), i + 1, words.next().unwrap_or("").to_string(), body));
            }
        }
    }
    out
}

fn python_imports(modules: &str) -> bool {
    Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .status()
        .is_ok_and(|s| s.success())
}

fn python_has_gi() -> bool {
    python_imports("gi")
}

/// Python modules a block needs beyond PyGObject, by a command it runs.
const PYTHON_NEEDS: &[(&str, &str)] = &[("check-gpu-peer.sh", "numpy, onnxruntime")];

#[test]
fn every_sh_block_is_marked() {
    let unmarked: Vec<String> = sh_blocks()
        .into_iter()
        .filter(|(_, _, mark, _)| !MARKS.contains(&mark.as_str()))
        .map(|(page, line, mark, _)| format!("{page}:{line}: ```sh block marked '{mark}'"))
        .collect();
    assert!(
        unmarked.is_empty(),
        "mark every ```sh block with one of {MARKS:?} (see tests/docs.rs):\n{}",
        unmarked.join("\n")
    );
}

#[test]
fn doc_commands_run() {
    let blocks: Vec<_> = sh_blocks().into_iter().filter(|b| b.2 == "test").collect();
    assert!(
        !blocks.is_empty(),
        "no ```sh test block found: the pages lost their examples"
    );
    let gi = python_has_gi();
    let mut failures = Vec::new();
    for (page, line, _, body) in &blocks {
        let missing = PYTHON_NEEDS
            .iter()
            .find(|(cmd, modules)| body.contains(cmd) && !python_imports(modules))
            .map(|(_, modules)| *modules)
            .or(
                (body.contains("python3") && !body.contains("scripts/bench-index.py") && !gi).then_some("gi"),
            );
        if let Some(modules) = missing {
            let why = format!("{page}:{line}: python3 cannot import {modules} (run scripts/setup.sh)");
            if std::env::var_os("CI").is_some() {
                failures.push(why);
            } else {
                eprintln!("SKIPPED {why}");
            }
            continue;
        }
        let out = Command::new("timeout")
            .args(["300", "bash", "-euo", "pipefail", "-c", body])
            .current_dir(root())
            .output()
            .unwrap_or_else(|e| panic!("cannot run bash: {e}"));
        if !out.status.success() {
            failures.push(format!(
                "{page}:{line}: exit {:?}\n{body}--- stdout (tail)\n{}\n--- stderr (tail)\n{}",
                out.status.code(),
                tail(&out.stdout),
                tail(&out.stderr)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "documented commands failed:\n{}",
        failures.join("\n\n")
    );
}

fn tail(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

#[test]
fn bench_index_is_up_to_date() {
    let out = Command::new("python3")
        .args(["scripts/bench-index.py", "--check"])
        .current_dir(root())
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "scripts/bench-index.py --check:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
