//! `trtvision-serve` as a child process of a test, driven through its HTTP API on
//! 127.0.0.1.

use std::io::BufRead;
use std::path::Path;
use std::time::{Duration, Instant};

/// `trtvision-serve` with a config as a child process; its HTTP API's base URL. Killed
/// (SIGKILL) on drop.
pub struct Serve {
    pub child: std::process::Child,
    pub base: String,
}

impl Serve {
    pub fn start(config: &Path) -> Self {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_trtvision-serve"))
            .arg(config)
            .args(["--http", "127.0.0.1:0"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("trtvision-serve starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let base = loop {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    if let Some(at) = line.find("http://") {
                        break line[at..].trim().to_owned();
                    }
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("trtvision-serve did not announce its HTTP address: {e}");
                }
            }
        };
        Self { child, base }
    }

    /// One API call: status and JSON body (a JSON string when the body is not JSON).
    pub fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, serde_json::Value) {
        let req = ureq::request(method, &format!("{}{path}", self.base)).timeout(Duration::from_secs(30));
        let res = match body {
            Some(b) => req.set("Content-Type", "application/json").send_string(b),
            None => req.call(),
        };
        let (status, text) = match res {
            Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
            Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
            Err(e) => panic!("{method} {path}: {e}"),
        };
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        )
    }

    /// The `GET /cameras` entry of camera `id`.
    pub fn camera(&self, id: &str) -> serde_json::Value {
        let (status, list) = self.call("GET", "/cameras", None);
        assert_eq!(status, 200, "{list}");
        list.as_array()
            .and_then(|l| l.iter().find(|c| c["id"] == id).cloned())
            .unwrap_or_else(|| panic!("camera {id} not listed: {list}"))
    }

    /// Waits until `ok` holds for camera `id`'s entry, at most `secs`.
    pub fn wait_camera(&self, id: &str, what: &str, secs: u64, ok: impl Fn(&serde_json::Value) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let c = self.camera(id);
            if ok(&c) {
                return;
            }
            assert!(Instant::now() < deadline, "{what}: not within {secs} s: {c}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `GET /cameras`.
    pub fn cameras(&self) -> Vec<serde_json::Value> {
        let (status, list) = self.call("GET", "/cameras", None);
        assert_eq!(status, 200, "{list}");
        list.as_array().cloned().expect("GET /cameras is a JSON array")
    }

    /// Frames out of trtdemux per camera id, from `GET /cameras`.
    pub fn frames(&self) -> std::collections::BTreeMap<String, u64> {
        self.cameras()
            .iter()
            .map(|c| {
                (
                    c["id"].as_str().unwrap_or_default().to_owned(),
                    c["frames"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    }

    /// Waits until `ok` holds, at most `timeout`.
    pub fn wait_for(&self, what: &str, timeout: Duration, mut ok: impl FnMut(&Self) -> bool) {
        let end = Instant::now() + timeout;
        while !ok(self) {
            assert!(Instant::now() < end, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// RSS (kB), threads and open file descriptors of the service process.
    pub fn resources(&self) -> (u64, u64, u64) {
        super::process_resources(&self.child.id().to_string())
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM)
    }

    /// Sends `signal` and waits (at most 60 s) for the exit status.
    pub fn signal(&mut self, signal: i32) -> std::process::ExitStatus {
        signal_and_wait(&mut self.child, signal)
    }
}

/// Sends `signal` to `child` and waits (at most 60 s) for its exit status.
pub fn signal_and_wait(child: &mut std::process::Child, signal: i32) -> std::process::ExitStatus {
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, signal) };
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("trtvision-serve did not end within 60 s of signal {signal}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
