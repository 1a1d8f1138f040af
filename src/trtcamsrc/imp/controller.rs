//! The controller thread of `trtcamsrc`: one session at a time, reconnects with backoff,
//! connect and stall timeouts, and the application ending the stream.

use super::*;

impl TrtCamSrc {
    /// The application ended the stream: no reconnect after this; the running recording is
    /// finalised (and its message posted) before the EOS goes downstream.
    pub(super) fn end_by_application(&self) {
        self.stop_session();
        self.interrupt_recording("the pipeline ended the camera's stream");
        let _ = self.appsrc.end_of_stream();
        self.post_status("stopped", "the pipeline ended the stream");
    }

    /// The controller thread: one session at a time, reconnects with backoff, stall
    /// detection.
    pub(super) fn control(&self, rx: mpsc::Receiver<Command>) {
        let s = self.settings.lock().unwrap().clone();
        let secrets = self.secrets();
        let timeouts = FrameTimeouts {
            connect: Duration::from_millis(u64::from(s.connect_ms.max(1))),
            stall: Duration::from_millis(u64::from(s.stall_ms.max(1))),
        };
        let mut backoff = Backoff::new(
            Duration::from_millis(u64::from(s.reconnect_ms)),
            Duration::from_millis(u64::from(s.max_reconnect_ms)),
        );
        let mut number = 0u64;
        let mut streaming = false;
        let mut failed = false;
        let mut ended = false;
        self.post_status(
            "connecting",
            &crate::live::redact_uri(s.uri.as_deref().unwrap_or("")),
        );
        let mut pending: Option<String> = self.start_session(number).err();
        loop {
            if let Some(reason) = pending.take() {
                let reason = secrets.redact(&reason);
                self.stop_session();
                self.interrupt_recording(&format!("the camera dropped: {reason}"));
                streaming = false;
                let wait = backoff.failed();
                if !backoff.may_retry(s.attempts) {
                    self.post_status("failed", &reason);
                    failed = true;
                    let _ = self.appsrc.end_of_stream();
                } else {
                    self.reconnects.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    self.post_status(
                        "reconnecting",
                        &format!("{reason}; next attempt in {} ms", wait.as_millis()),
                    );
                    match rx.recv_timeout(wait) {
                        Ok(Command::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
                        Ok(Command::EndOfStream) => {
                            ended = true;
                            self.end_by_application();
                            continue;
                        }
                        _ => {}
                    }
                    number += 1;
                    self.post_status(
                        "connecting",
                        &crate::live::redact_uri(s.uri.as_deref().unwrap_or("")),
                    );
                    pending = self.start_session(number).err();
                    continue;
                }
            }
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(Command::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Ok(Command::Failed(n, reason)) if n == number && !failed && !ended => pending = Some(reason),
                Ok(Command::Streaming(n)) if n == number => {
                    streaming = true;
                    backoff.reset();
                    self.post_status("streaming", "first frame received");
                }
                Ok(Command::Finished(n)) if n == number && !ended => {
                    ended = true;
                    self.interrupt_recording("the camera's stream ended");
                    let _ = self.appsrc.end_of_stream();
                }
                Ok(Command::EndOfStream) if !ended && !failed => {
                    ended = true;
                    self.end_by_application();
                }
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if failed || ended || pending.is_some() {
                continue;
            }
            // Before its first frame a connection has `connect-timeout` (opening, the first
            // keyframe and the decoder's start may take long when many cameras start at
            // once); then `stall-timeout` between frames.
            let idle = self.shared.last_frame.lock().unwrap().elapsed();
            if let Some(reason) = timeouts.expired(streaming, idle) {
                if streaming {
                    self.post_status("stalled", &reason);
                }
                pending = Some(reason);
            }
        }
        self.stop_session();
        self.interrupt_recording("the camera stopped");
    }

    pub(super) fn start_controller(&self) {
        let (tx, rx) = mpsc::channel();
        *self.tx.lock().unwrap() = Some(tx.clone());
        self.reconnects.store(0, std::sync::atomic::Ordering::Relaxed);
        *self.shared.restamp.lock().unwrap() = Restamp::default();
        *self.shared.last_caps.lock().unwrap() = None;
        self.start_recorder();
        let weak = self.obj().downgrade();
        let thread = std::thread::Builder::new()
            .name("trtcamsrc-ctl".into())
            .spawn(move || {
                if let Some(obj) = weak.upgrade() {
                    obj.imp().control(rx);
                }
            })
            .expect("a thread can be spawned");
        *self.controller.lock().unwrap() = Some(Controller { tx, thread });
    }

    pub(super) fn stop_controller(&self) {
        *self.tx.lock().unwrap() = None;
        if let Some(c) = self.controller.lock().unwrap().take() {
            let _ = c.tx.send(Command::Stop);
            let _ = c.thread.join();
        }
    }

    /// Whether `obj` is the current session or inside it, and that session's number.
    pub(super) fn session_of(&self, obj: &gst::Object) -> Option<u64> {
        let current = self.shared.session.lock().unwrap().clone();
        let (n, bin) = current?;
        let mut o = Some(obj.clone());
        while let Some(x) = o {
            if x == *bin.upcast_ref::<gst::Object>() {
                return Some(n);
            }
            o = x.parent();
        }
        None
    }

    pub(super) fn is_in_a_session(&self, obj: &gst::Object) -> bool {
        let mut o = Some(obj.clone());
        while let Some(x) = o {
            if x.name().starts_with("session") && x.parent().as_ref() == Some(self.obj().upcast_ref()) {
                return true;
            }
            o = x.parent();
        }
        false
    }
}
