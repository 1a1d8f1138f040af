//! Live-camera logic used by `trtcamsrc`: credential redaction, reconnect backoff and the
//! restamping that keeps a camera's running time monotonic across reconnects.

use std::time::Duration;

/// `uri` without the user information (`rtsp://user:pass@host/x` → `rtsp://host/x`).
pub fn redact_uri(uri: &str) -> String {
    let Some(scheme_end) = uri.find("://") else {
        return uri.to_string();
    };
    let rest = &uri[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}{}", &uri[..scheme_end + 3], &rest[at + 1..]),
        None => uri.to_string(),
    }
}

/// The secrets of a camera: the user information of its URI and the `user-id`/`user-pw`
/// properties. [`Secrets::redact`] removes them from any text before it is logged or posted.
#[derive(Debug, Clone, Default)]
pub struct Secrets(Vec<String>);

impl Secrets {
    pub fn new(uri: &str, user: Option<&str>, password: Option<&str>) -> Self {
        let mut s = Vec::new();
        if let Some(scheme_end) = uri.find("://") {
            let rest = &uri[scheme_end + 3..];
            let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            if let Some(at) = rest[..authority_end].rfind('@') {
                let userinfo = &rest[..at];
                s.push(format!("{userinfo}@"));
                s.extend(userinfo.split(':').map(str::to_string));
            }
        }
        s.extend(user.map(str::to_string));
        s.extend(password.map(str::to_string));
        // Longest first, so that a secret containing another one is removed whole.
        s.retain(|x| !x.is_empty());
        s.sort_by_key(|x| std::cmp::Reverse(x.len()));
        Self(s)
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in &self.0 {
            let with_at = secret.ends_with('@');
            out = out.replace(secret.as_str(), if with_at { "" } else { "***" });
        }
        out
    }
}

/// Exponential reconnect backoff: `first`, then doubled after every failed attempt up to
/// `max`; reset when the camera streams again.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
    /// Failed attempts since the camera last streamed.
    pub failures: u32,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Self {
        let max = max.max(first);
        Self {
            first,
            max,
            next: first,
            failures: 0,
        }
    }

    /// Records a failure and returns the wait before the next attempt.
    pub fn failed(&mut self) -> Duration {
        self.failures += 1;
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        wait
    }

    pub fn reset(&mut self) {
        self.next = self.first;
        self.failures = 0;
    }

    /// Whether another attempt is allowed after `self.failures` failures (`limit` -1 = for
    /// ever).
    pub fn may_retry(&self, limit: i32) -> bool {
        limit < 0 || self.failures <= limit as u32
    }
}

/// How long a camera may go without a frame before it reconnects: `connect` until the
/// first frame of a connection (opening it, the first keyframe and the decoder's start,
/// which take long when many cameras start at once), `stall` between frames afterwards.
#[derive(Debug, Clone, Copy)]
pub struct FrameTimeouts {
    pub connect: Duration,
    pub stall: Duration,
}

impl FrameTimeouts {
    /// Why the connection must be replaced after `idle` without a frame (since it started,
    /// or since its last frame once `streaming`), or `None`.
    pub fn expired(&self, streaming: bool, idle: Duration) -> Option<String> {
        let ms = idle.as_millis();
        if streaming && idle > self.stall {
            Some(format!("no frame for {ms} ms"))
        } else if !streaming && idle > self.connect {
            Some(format!("no frame within {ms} ms of connecting"))
        } else {
            None
        }
    }
}

/// Maps each connection's timestamps onto one monotonic output timeline. The first frame
/// of a connection starts at the later of "now" (the pipeline's running time when it
/// arrives) and the end of the last frame output; later frames keep their spacing.
#[derive(Debug, Default, Clone)]
pub struct Restamp {
    /// Running time of the connection's first frame, and where it was placed.
    anchor: Option<(gst::ClockTime, gst::ClockTime)>,
    last_pts: Option<gst::ClockTime>,
    last_end: gst::ClockTime,
    discont: bool,
}

impl Restamp {
    /// A new connection starts: its first frame is placed anew and flagged DISCONT.
    pub fn new_connection(&mut self) {
        self.anchor = None;
        self.discont = true;
    }

    /// Output timestamp for a frame at running time `rt` (within its connection) that
    /// arrived at pipeline running time `now`, and whether it starts a new connection.
    pub fn map(
        &mut self,
        rt: gst::ClockTime,
        duration: Option<gst::ClockTime>,
        now: Option<gst::ClockTime>,
    ) -> (gst::ClockTime, bool) {
        let (first_rt, base) = *self.anchor.get_or_insert_with(|| {
            let base = now.map_or(self.last_end, |n| n.max(self.last_end));
            (rt, base)
        });
        let mut pts = base + rt.saturating_sub(first_rt);
        if let Some(last) = self.last_pts {
            // Never backwards, never twice the same time.
            pts = pts.max(last + gst::ClockTime::from_nseconds(1));
        }
        self.last_pts = Some(pts);
        self.last_end = pts + duration.unwrap_or(gst::ClockTime::ZERO);
        (pts, std::mem::take(&mut self.discont))
    }
}

/// glibc's mmap threshold for a long-running live process: heap blocks of this size or more
/// are mmap()ed and go back to the system when freed.
pub const MMAP_THRESHOLD: usize = 64 * 1024;

/// Fixes glibc's mmap threshold of this process at [`MMAP_THRESHOLD`]; returns it, or None
/// where nothing was changed: not glibc, the call failed, or `MALLOC_MMAP_THRESHOLD_` is set
/// (glibc applied that value at start).
///
/// By default glibc raises the threshold each time a block above it is freed, after which
/// blocks of that size come from the malloc arenas. Cameras that reconnect free and
/// allocate such blocks (stream and decoder buffers) on new threads over and over; the
/// arenas fragment and keep growing although the memory in use does not (measured in
/// docs/cameras.md, Soak). A fixed threshold turns the dynamic adjustment off.
pub fn fix_mmap_threshold() -> Option<usize> {
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some() {
        return None;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let value = libc::c_int::try_from(MMAP_THRESHOLD).ok()?;
        // SAFETY: mallopt only changes a parameter of the allocator; any value is accepted
        // or refused (0).
        if unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, value) } == 1 {
            return Some(MMAP_THRESHOLD);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use gst::ClockTime as T;

    #[test]
    fn uris_lose_their_credentials() {
        assert_eq!(
            redact_uri("rtsp://admin:s3cr@t@10.0.0.1:554/x?a=b"),
            "rtsp://10.0.0.1:554/x?a=b"
        );
        assert_eq!(redact_uri("rtsp://10.0.0.1/a@b"), "rtsp://10.0.0.1/a@b");
        assert_eq!(redact_uri("file:///tmp/a.mp4"), "file:///tmp/a.mp4");
        let s = Secrets::new("rtsp://admin:hunter2@cam/x", Some("bob"), Some("pw!"));
        assert_eq!(
            s.redact("Could not open rtsp://admin:hunter2@cam/x as bob/pw! (hunter2)"),
            "Could not open rtsp://cam/x as ***/*** (***)"
        );
    }

    #[test]
    fn stall_timeout_counts_only_once_streaming() {
        let ms = Duration::from_millis;
        let t = FrameTimeouts {
            connect: ms(20_000),
            stall: ms(1000),
        };
        // A slow first frame is not a stall.
        assert_eq!(t.expired(false, ms(3000)), None);
        assert_eq!(
            t.expired(false, ms(20_001)).as_deref(),
            Some("no frame within 20001 ms of connecting")
        );
        assert_eq!(t.expired(true, ms(1000)), None);
        assert_eq!(t.expired(true, ms(1500)).as_deref(), Some("no frame for 1500 ms"));
    }

    #[test]
    fn backoff_doubles_to_the_maximum_and_resets() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(100), ms(350));
        assert_eq!(
            [b.failed(), b.failed(), b.failed(), b.failed()],
            [ms(100), ms(200), ms(350), ms(350)]
        );
        assert!(b.may_retry(4) && !b.may_retry(3) && b.may_retry(-1));
        b.reset();
        assert_eq!(b.failed(), ms(100));
    }

    #[test]
    fn restamp_is_monotonic_across_connections() {
        let mut r = Restamp::default();
        r.new_connection();
        let d = Some(T::from_mseconds(40));
        assert_eq!(
            r.map(T::from_seconds(5), d, Some(T::from_seconds(5))),
            (T::from_seconds(5), true)
        );
        assert_eq!(
            r.map(T::from_mseconds(5040), d, Some(T::from_seconds(6))),
            (T::from_mseconds(5040), false)
        );
        // Reconnect: the new connection's clock restarts near 0; output continues at "now".
        r.new_connection();
        assert_eq!(
            r.map(T::from_mseconds(10), d, Some(T::from_seconds(9))),
            (T::from_seconds(9), true)
        );
        assert_eq!(
            r.map(T::from_mseconds(50), d, None),
            (T::from_mseconds(9040), false)
        );
        // Without a clock, after the last frame's end; never backwards.
        r.new_connection();
        assert_eq!(r.map(T::ZERO, d, None), (T::from_mseconds(9080), true));
        assert_eq!(r.map(T::ZERO, d, None).0, T::from_nseconds(9_080_000_001));
    }

    #[test]
    fn mmap_threshold_is_fixed_on_glibc() {
        let fixed = fix_mmap_threshold();
        if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some() {
            assert_eq!(fixed, None);
        } else if cfg!(all(target_os = "linux", target_env = "gnu")) {
            assert_eq!(fixed, Some(MMAP_THRESHOLD));
        } else {
            assert_eq!(fixed, None);
        }
    }
}
