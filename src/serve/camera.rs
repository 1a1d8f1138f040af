//! Camera URIs and the source each one becomes.
//!
//! `scene://<n>[?width=W&height=H&framerate=F]` is the synthetic camera `n` of
//! `trtscenesrc` (live, NV12; default 640x480 at 30 frames/s), for demos and tests; every
//! other URI (rtsp, rtsps, http, https, file) is opened by `trtcamsrc`, which reconnects on
//! its own.

use gst::prelude::*;

/// Schemes `trtcamsrc` opens.
const CAMSRC_SCHEMES: [&str; 5] = ["rtsp", "rtsps", "http", "https", "file"];

/// A parsed camera URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CameraUri {
    /// Synthetic `trtscenesrc` camera.
    Scene {
        camera: u32,
        width: u32,
        height: u32,
        framerate: u32,
    },
    /// Opened by `trtcamsrc`.
    Stream(String),
}

impl CameraUri {
    /// Parses and checks a camera URI; the error is a sentence for the user.
    pub fn parse(uri: &str) -> Result<Self, String> {
        let parsed = url::Url::parse(uri)
            .map_err(|e| format!("\"{}\" is not a URI ({e})", redact_credentials(uri)))?;
        if parsed.scheme() == "scene" {
            return Self::parse_scene(&parsed);
        }
        if CAMSRC_SCHEMES.contains(&parsed.scheme()) {
            return Ok(Self::Stream(uri.to_owned()));
        }
        Err(format!(
            "camera URI scheme \"{}\" is not supported: use scene://, rtsp://, rtsps://, http://, https:// or file://",
            parsed.scheme()
        ))
    }

    fn parse_scene(parsed: &url::Url) -> Result<Self, String> {
        let host = parsed.host_str().unwrap_or_default();
        let camera = host.parse::<u32>().map_err(|_| {
            format!("scene camera \"{host}\" is not a number: write scene://0, scene://1, ...")
        })?;
        let (mut width, mut height, mut framerate) = (640u32, 480u32, 30u32);
        for (key, value) in parsed.query_pairs() {
            let target = match key.as_ref() {
                "width" => &mut width,
                "height" => &mut height,
                "framerate" => &mut framerate,
                other => {
                    return Err(format!(
                        "scene:// URIs take width, height and framerate, not \"{other}\""
                    ))
                }
            };
            *target = value
                .parse()
                .ok()
                .filter(|v| (1..=8192).contains(v))
                .ok_or_else(|| format!("scene:// {key}={value} is not a number from 1 to 8192"))?;
        }
        if width % 2 != 0 || height % 2 != 0 {
            return Err(format!(
                "scene:// NV12 needs an even width and height, not {width}x{height}"
            ));
        }
        Ok(Self::Scene {
            camera,
            width,
            height,
            framerate,
        })
    }

    /// Whether the camera's timestamps start at zero whenever it starts (scene cameras),
    /// rather than following the pipeline clock (network cameras).
    pub fn starts_at_zero(&self) -> bool {
        matches!(self, Self::Scene { .. })
    }

    /// A source element with one always `src` pad producing NV12 frames.
    pub fn make_source(&self, camera_id: &str) -> Result<gst::Element, String> {
        match self {
            Self::Scene {
                camera,
                width,
                height,
                framerate,
            } => {
                let make = |f: &str| {
                    gst::ElementFactory::make(f)
                        .build()
                        .map_err(|e| format!("cannot create {f}: {e}"))
                };
                let src = make("trtscenesrc")?;
                src.set_property("camera", *camera);
                src.set_property("is-live", true);
                let filter = make("capsfilter")?;
                let caps = gst_video::VideoCapsBuilder::new()
                    .format(gst_video::VideoFormat::Nv12)
                    .width(*width as i32)
                    .height(*height as i32)
                    .framerate(gst::Fraction::new(*framerate as i32, 1))
                    .build();
                filter.set_property("caps", caps);
                // Like a network camera's jitter buffer, a queue lets the camera run while
                // the analytics are busy and gives the live latency a maximum above trtmux's
                // batched-push-timeout.
                let queue = make("queue")?;
                let bin = gst::Bin::with_name(&format!("camera-{camera_id}"));
                bin.add_many([&src, &filter, &queue]).map_err(|e| e.to_string())?;
                gst::Element::link_many([&src, &filter, &queue]).map_err(|e| e.to_string())?;
                let pad = queue.static_pad("src").ok_or("queue has no src pad")?;
                let ghost = gst::GhostPad::with_target(&pad).map_err(|e| e.to_string())?;
                ghost.set_active(true).map_err(|e| e.to_string())?;
                bin.add_pad(&ghost).map_err(|e| e.to_string())?;
                Ok(bin.upcast())
            }
            Self::Stream(uri) => {
                let src = gst::ElementFactory::make("trtcamsrc")
                    .name(format!("camera-{camera_id}"))
                    .property("uri", uri)
                    .property("camera-id", camera_id)
                    .build()
                    .map_err(|_| {
                        "the trtcamsrc element is not installed: only scene:// cameras can be used"
                            .to_string()
                    })?;
                Ok(src)
            }
        }
    }
}

/// `uri` without user name and password, for logs, messages and the API.
pub fn redact_credentials(uri: &str) -> String {
    match url::Url::parse(uri) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            if u.set_username("").is_ok() && u.set_password(None).is_ok() {
                u.to_string()
            } else {
                "<URI with credentials>".to_string()
            }
        }
        Ok(_) => uri.to_owned(),
        // Not a URI: it may still hold a secret, show only what cannot.
        Err(_) => match uri.rfind('@') {
            Some(at) => format!("<redacted>{}", &uri[at..]),
            None => uri.to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scene_uris_with_defaults_and_options() {
        assert_eq!(
            CameraUri::parse("scene://3").unwrap(),
            CameraUri::Scene {
                camera: 3,
                width: 640,
                height: 480,
                framerate: 30
            }
        );
        assert_eq!(
            CameraUri::parse("scene://0?width=320&height=240&framerate=15").unwrap(),
            CameraUri::Scene {
                camera: 0,
                width: 320,
                height: 240,
                framerate: 15
            }
        );
        for bad in [
            "scene://x",
            "scene://1?width=0",
            "scene://1?width=321",
            "scene://1?fps=3",
            "ftp://a/b",
            "no uri",
        ] {
            assert!(CameraUri::parse(bad).is_err(), "{bad}");
        }
        assert!(matches!(
            CameraUri::parse("rtsp://u:p@cam/1").unwrap(),
            CameraUri::Stream(_)
        ));
    }

    #[test]
    fn credentials_never_shown() {
        assert_eq!(
            redact_credentials("rtsp://admin:secret@10.0.0.5:554/live"),
            "rtsp://10.0.0.5:554/live"
        );
        assert_eq!(redact_credentials("rtsp://10.0.0.5/live"), "rtsp://10.0.0.5/live");
        assert!(!redact_credentials("rtsp://admin:secret@").contains("secret"));
        let e = CameraUri::parse("rtsp:://admin:secret@x")
            .err()
            .unwrap_or_default();
        assert!(!e.contains("secret"), "{e}");
    }
}
