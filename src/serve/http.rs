//! The HTTP API: routing of requests to the service, JSON bodies and status codes.
//!
//! `GET /health`, `GET /cameras`, `POST /cameras` (`{"id","uri"}`, optional `"record"`),
//! `DELETE /cameras/{id}`, `POST /cameras/{id}/record` (`{"before","after"}` seconds),
//! `GET /metrics`. Errors are JSON objects `{"error": "<sentence>"}` with 400 (bad request
//! or body), 404 (unknown camera or path), 405 (wrong method), 409 (duplicate id, or an
//! operation the camera cannot do) or 500/503.

use serde::{Deserialize, Serialize};
use std::io::Read;
use std::sync::Arc;

/// Largest request body read.
const MAX_BODY: u64 = 64 * 1024;
/// Worker threads answering requests (an add or remove takes a while; health and metrics
/// must not wait behind it).
const WORKERS: usize = 4;

/// An error answered to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

/// `POST /cameras` body: a camera as the config file describes it (`id`, `uri`,
/// optional `record`).
pub type AddCamera = super::config::CameraConfig;

/// `POST /cameras/{id}/record` body.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RecordRequest {
    #[serde(default = "default_before")]
    pub before: f64,
    #[serde(default = "default_after")]
    pub after: f64,
}

fn default_before() -> f64 {
    5.0
}
fn default_after() -> f64 {
    5.0
}

/// One camera as `GET /cameras` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CameraInfo {
    pub id: String,
    /// The URI without credentials.
    pub uri: String,
    pub state: String,
    pub fps: f64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub frames: u64,
    pub gaps: u64,
    pub reconnects: u64,
    /// trtmux sink pad number (the `source` of the JSON lines).
    pub source: u32,
    pub record: bool,
    /// File of the event recording being written, `null` when none.
    pub recording: Option<String>,
    /// Event recordings of this camera finished so far.
    pub recordings: u64,
}

/// What the API asks of the service.
pub trait CameraControl: Send + Sync {
    /// `None` when healthy, else why not.
    fn health(&self) -> Result<serde_json::Value, ApiError>;
    fn cameras(&self) -> Vec<CameraInfo>;
    fn add_camera(&self, req: AddCamera) -> Result<CameraInfo, ApiError>;
    fn remove_camera(&self, id: &str) -> Result<(), ApiError>;
    fn record(&self, id: &str, req: RecordRequest) -> Result<String, ApiError>;
    fn metrics(&self) -> String;
}

/// A response before it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Reply {
    fn json(status: u16, value: &impl Serialize) -> Self {
        Self {
            status,
            content_type: "application/json",
            body: serde_json::to_string(value).unwrap_or_else(|_| "{}".into()),
        }
    }

    fn error(e: ApiError) -> Self {
        Self::json(e.status, &serde_json::json!({ "error": e.message }))
    }
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            400,
            format!("the request body is not valid JSON for this call: {e}"),
        )
    })
}

/// Answers one request.
pub fn route(api: &dyn CameraControl, method: &str, url: &str, body: &[u8]) -> Reply {
    let path = url.split('?').next().unwrap_or_default();
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let result = match (method, parts.as_slice()) {
        ("GET", ["health"]) => api.health().map(|v| Reply::json(200, &v)),
        ("GET", ["cameras"]) => Ok(Reply::json(200, &api.cameras())),
        ("POST", ["cameras"]) => parse_body::<AddCamera>(body)
            .and_then(|req| api.add_camera(req))
            .map(|info| Reply::json(201, &info)),
        ("GET", ["cameras", id]) => api
            .cameras()
            .into_iter()
            .find(|c| c.id == *id)
            .map(|c| Reply::json(200, &c))
            .ok_or_else(|| ApiError::new(404, format!("there is no camera \"{id}\""))),
        ("DELETE", ["cameras", id]) => api
            .remove_camera(id)
            .map(|()| Reply::json(200, &serde_json::json!({ "removed": id }))),
        ("POST", ["cameras", id, "record"]) => {
            let req = if body.iter().all(u8::is_ascii_whitespace) {
                Ok(RecordRequest {
                    before: default_before(),
                    after: default_after(),
                })
            } else {
                parse_body::<RecordRequest>(body)
            };
            req.and_then(|r| {
                if !(r.before >= 0.0 && r.after >= 0.0 && r.before.is_finite() && r.after.is_finite()) {
                    return Err(ApiError::new(400, "before and after must be seconds, 0 or more"));
                }
                api.record(id, r)
            })
            .map(|file| Reply::json(202, &serde_json::json!({ "camera": id, "file": file })))
        }
        ("GET", ["metrics"]) => Ok(Reply {
            status: 200,
            content_type: "application/openmetrics-text; version=1.0.0; charset=utf-8",
            body: api.metrics(),
        }),
        (_, ["health"] | ["cameras"] | ["cameras", _] | ["cameras", _, "record"] | ["metrics"]) => {
            Err(ApiError::new(405, format!("{method} is not allowed on {path}")))
        }
        _ => Err(ApiError::new(404, format!("there is nothing at {path}"))),
    };
    result.unwrap_or_else(Reply::error)
}

/// A running HTTP server.
pub struct HttpServer {
    server: Arc<tiny_http::Server>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl HttpServer {
    /// Listens on `addr` (`ADDR:PORT`, port 0 = any free port) and answers with `api`.
    pub fn start(addr: &str, api: Arc<dyn CameraControl>) -> Result<Self, String> {
        let server =
            Arc::new(tiny_http::Server::http(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?);
        let workers = (0..WORKERS)
            .map(|i| {
                let (server, api) = (server.clone(), api.clone());
                std::thread::Builder::new()
                    .name(format!("http-{i}"))
                    .spawn(move || {
                        while let Ok(req) = server.recv() {
                            answer(&*api, req);
                        }
                    })
                    .map_err(|e| format!("cannot start the HTTP threads: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { server, workers })
    }

    /// The address actually listened on.
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.server.server_addr().to_ip()
    }

    /// Stops answering and joins the workers.
    pub fn stop(self) {
        self.server.unblock();
        for _ in 1..self.workers.len() {
            self.server.unblock();
        }
        for w in self.workers {
            let _ = w.join();
        }
    }
}

fn answer(api: &dyn CameraControl, mut req: tiny_http::Request) {
    let mut body = Vec::new();
    let reply = match req.as_reader().take(MAX_BODY + 1).read_to_end(&mut body) {
        Ok(_) if body.len() as u64 > MAX_BODY => {
            Reply::error(ApiError::new(413, "the request body is larger than 64 KiB"))
        }
        Ok(_) => {
            let method = req.method().as_str().to_ascii_uppercase();
            // No panic may take a worker down; a bug answers 500.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                route(api, &method, req.url(), &body)
            }))
            .unwrap_or_else(|_| {
                Reply::error(ApiError::new(500, "internal error while answering the request"))
            })
        }
        Err(e) => Reply::error(ApiError::new(400, format!("cannot read the request body: {e}"))),
    };
    let header = tiny_http::Header::from_bytes(&b"Content-Type"[..], reply.content_type.as_bytes())
        .expect("static header is valid");
    let response = tiny_http::Response::from_string(reply.body)
        .with_status_code(reply.status)
        .with_header(header);
    let _ = req.respond(response);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Fake {
        cameras: Mutex<Vec<String>>,
    }

    impl CameraControl for Fake {
        fn health(&self) -> Result<serde_json::Value, ApiError> {
            Ok(serde_json::json!({"status": "ok"}))
        }
        fn cameras(&self) -> Vec<CameraInfo> {
            self.cameras
                .lock()
                .unwrap()
                .iter()
                .map(|id| CameraInfo {
                    id: id.clone(),
                    uri: "scene://0".into(),
                    state: "streaming".into(),
                    fps: 30.0,
                    latency_p50_ms: None,
                    latency_p99_ms: None,
                    frames: 1,
                    gaps: 0,
                    reconnects: 0,
                    source: 0,
                    record: false,
                    recording: None,
                    recordings: 0,
                })
                .collect()
        }
        fn add_camera(&self, req: AddCamera) -> Result<CameraInfo, ApiError> {
            let mut c = self.cameras.lock().unwrap();
            if c.contains(&req.id) {
                return Err(ApiError::new(409, "duplicate"));
            }
            c.push(req.id);
            drop(c);
            Ok(self.cameras().pop().unwrap())
        }
        fn remove_camera(&self, id: &str) -> Result<(), ApiError> {
            let mut c = self.cameras.lock().unwrap();
            let n = c.len();
            c.retain(|x| x != id);
            if c.len() == n {
                Err(ApiError::new(404, "unknown"))
            } else {
                Ok(())
            }
        }
        fn record(&self, id: &str, req: RecordRequest) -> Result<String, ApiError> {
            Ok(format!("/rec/{id}-{}-{}.mp4", req.before, req.after))
        }
        fn metrics(&self) -> String {
            "# EOF\n".into()
        }
    }

    #[test]
    fn routes_and_status_codes() {
        let api = Fake::default();
        assert_eq!(route(&api, "GET", "/health", b"").status, 200);
        let r = route(&api, "POST", "/cameras", br#"{"id":"a","uri":"scene://0"}"#);
        assert_eq!(r.status, 201, "{}", r.body);
        assert_eq!(
            route(&api, "POST", "/cameras", br#"{"id":"a","uri":"scene://0"}"#).status,
            409
        );
        let r = route(&api, "POST", "/cameras", b"{not json");
        assert_eq!(r.status, 400);
        assert!(r.body.starts_with("{\"error\":"), "{}", r.body);
        assert_eq!(route(&api, "POST", "/cameras", br#"{"id":"b"}"#).status, 400);
        let list: Vec<CameraInfo> = serde_json::from_str(&route(&api, "GET", "/cameras", b"").body).unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(route(&api, "GET", "/cameras/a", b"").status, 200);
        assert_eq!(route(&api, "GET", "/cameras/zz", b"").status, 404);
        let r = route(&api, "POST", "/cameras/a/record", br#"{"before":2,"after":3}"#);
        assert_eq!(r.status, 202);
        assert!(r.body.contains("a-2-3.mp4"), "{}", r.body);
        assert_eq!(route(&api, "POST", "/cameras/a/record", b"").status, 202);
        assert_eq!(
            route(&api, "POST", "/cameras/a/record", br#"{"before":-1}"#).status,
            400
        );
        assert_eq!(route(&api, "DELETE", "/cameras/a", b"").status, 200);
        assert_eq!(route(&api, "DELETE", "/cameras/a", b"").status, 404);
        assert_eq!(route(&api, "PUT", "/cameras", b"").status, 405);
        assert_eq!(route(&api, "GET", "/nothing", b"").status, 404);
        let m = route(&api, "GET", "/metrics?x=1", b"");
        assert_eq!(m.status, 200);
        assert!(m.content_type.starts_with("application/openmetrics-text"));
    }
}
