fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=COMMIT_ID={commit}");
    println!("cargo:rustc-env=BUILD_REL_DATE=2026-11-23");
}
