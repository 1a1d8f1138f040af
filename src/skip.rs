//! Tests that cannot run on this machine (no ONNX Runtime, no generated models, no NVRTC)
//! say so with a `SKIPPED:` line instead of passing silently; a switch in the environment
//! turns the missing dependency into a failure where it must be present (CI sets
//! `TRTVISION_REQUIRE_ORT=1`, the NVRTC step `TRTVISION_REQUIRE_NVRTC=1`).
//!
//! Tests that need a GPU are `#[ignore]`d instead and run with `--include-ignored`.

/// Switch that makes a missing ONNX Runtime (or missing generated models) a test failure.
pub const REQUIRE_ORT: &str = "TRTVISION_REQUIRE_ORT";
/// Switch that makes a missing NVRTC library a test failure.
pub const REQUIRE_NVRTC: &str = "TRTVISION_REQUIRE_NVRTC";

/// Whether the environment switch `switch` is on (`1`).
pub fn required(switch: &str) -> bool {
    std::env::var_os(switch).is_some_and(|v| v == "1")
}

/// Reports that the calling test cannot run because `why`: a `SKIPPED:` line on stderr, or
/// a panic when `switch` is on.
pub fn skip(switch: &str, why: &str) {
    if required(switch) {
        panic!("{switch}=1 but {why}");
    }
    eprintln!("SKIPPED: {why} (set {switch}=1 to make this a failure)");
}

/// Whether ONNX Runtime can be loaded here; reports the skip (or fails under
/// [`REQUIRE_ORT`]) when it cannot.
pub fn have_ort() -> bool {
    match crate::backend::onnxruntime::resolve_library_path() {
        Ok(_) => true,
        Err(e) => {
            skip(REQUIRE_ORT, &format!("ONNX Runtime is not available: {e}"));
            false
        }
    }
}

/// Whether the generated model file `path` exists; reports the skip (or fails under
/// [`REQUIRE_ORT`], as CI generates the models with ONNX Runtime's environment) otherwise.
pub fn have_model(path: &std::path::Path) -> bool {
    if path.is_file() {
        return true;
    }
    skip(
        REQUIRE_ORT,
        &format!("{} is missing (run engines/generate_models.py)", path.display()),
    );
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switch_is_read_from_the_environment() {
        let name = "TRTVISION_SKIP_SELF_TEST_SWITCH";
        assert!(!required(name));
        skip(name, "the self test reports a skip");
        std::env::set_var(name, "1");
        assert!(required(name));
        let r = std::panic::catch_unwind(|| skip(name, "the dependency is missing"));
        std::env::remove_var(name);
        let msg = r.expect_err("a required dependency fails");
        let text = msg.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(text.contains("the dependency is missing"), "{text}");
    }
}
