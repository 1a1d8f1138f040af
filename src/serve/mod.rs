//! `trtvision-serve`: one analytics pipeline run from a TOML file, with an HTTP API to list,
//! add and remove cameras while it plays, event recordings and Prometheus metrics.
//!
//! [`config`] reads the file, [`camera`] turns camera URIs into sources, [`service`] builds
//! the pipeline and changes it at run time, [`stats`] and [`metrics`] measure it, [`http`]
//! answers the API. [`run`] is the program. See `docs/serve.md`.

pub mod camera;
pub mod config;
pub mod events;
pub mod gpu;
pub mod http;
pub mod metrics;
pub mod service;
pub mod stats;

use gst::glib;
use gst::prelude::*;
use std::path::Path;
use std::sync::Arc;

/// How long a shutdown may take before the service gives up waiting for the EOS.
const SHUTDOWN_TIMEOUT_S: u32 = 20;

/// Runs the service until SIGINT/SIGTERM or a fatal error; returns the exit code.
pub fn run(config_path: &Path, http: Option<&str>) -> i32 {
    let config = match config::ServeConfig::from_file(config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("trtvision-serve: {e}");
            return 2;
        }
    };
    let addr = http.map(str::to_owned).or_else(|| config.http.clone());
    let service = match service::Service::new(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("trtvision-serve: cannot build the pipeline: {e}");
            return 1;
        }
    };
    let pipeline = service.pipeline().clone();
    let main_loop = glib::MainLoop::new(None, false);
    let code = Arc::new(std::sync::atomic::AtomicI32::new(0));
    let Some(bus) = pipeline.bus() else {
        eprintln!("trtvision-serve: the pipeline has no bus");
        return 1;
    };
    let watch = {
        let (service, main_loop, code) = (service.clone(), main_loop.clone(), code.clone());
        bus.add_watch(move |_, msg| {
            on_message(&service, msg, &main_loop, &code);
            glib::ControlFlow::Continue
        })
    };
    let _watch = match watch {
        Ok(w) => w,
        Err(e) => {
            eprintln!("trtvision-serve: cannot watch the bus: {e}");
            return 1;
        }
    };
    if pipeline.set_state(gst::State::Playing).is_err() {
        eprintln!("trtvision-serve: the pipeline could not start");
        report_errors(&bus);
        let _ = pipeline.set_state(gst::State::Null);
        return 1;
    }
    let server = match addr
        .as_deref()
        .map(|a| http::HttpServer::start(a, Arc::new(service.clone())))
    {
        Some(Ok(s)) => {
            if let Some(a) = s.local_addr() {
                println!("trtvision-serve: HTTP API on http://{a}");
            }
            Some(s)
        }
        Some(Err(e)) => {
            eprintln!("trtvision-serve: {e}");
            let _ = pipeline.set_state(gst::State::Null);
            return 1;
        }
        None => None,
    };
    let interrupted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(signal, interrupted.clone()) {
            eprintln!("trtvision-serve: cannot handle signal {signal}: {e}");
        }
    }
    {
        let (service, main_loop) = (service.clone(), main_loop.clone());
        glib::timeout_add_local(std::time::Duration::from_millis(100), move || {
            if interrupted.load(std::sync::atomic::Ordering::SeqCst) {
                shut_down(&service, &main_loop);
            }
            glib::ControlFlow::Continue
        });
    }
    main_loop.run();
    if let Some(s) = server {
        s.stop();
    }
    close(&service, &bus);
    let _ = pipeline.set_state(gst::State::Null);
    code.load(std::sync::atomic::Ordering::SeqCst)
}

/// How long the last event messages may take to reach the broker at exit.
const EVENTS_FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Before exit: the cameras stop (each finalises its running event recording and posts its
/// end), the events the main loop did not see go to the outputs, and the broker gets the
/// time to acknowledge them. The bus is read before NULL, which flushes it.
fn close(service: &Arc<service::Service>, bus: &gst::Bus) {
    // Branches whose camera ends from here on stay in the pipeline, which takes them to NULL
    // (an error exit arrives here without the EOS of a shutdown).
    service.set_stopping();
    let _ = service.pipeline().set_state(gst::State::Ready);
    while let Some(msg) = bus.pop() {
        if let gst::MessageView::Element(e) = msg.view() {
            if let Some(s) = e.structure() {
                on_element(service, s);
            }
        }
    }
    if !service.flush_events(EVENTS_FLUSH_TIMEOUT) {
        eprintln!(
            "trtvision-serve: the broker did not acknowledge every event message within {} s",
            EVENTS_FLUSH_TIMEOUT.as_secs()
        );
    }
}

/// A `trtcamsrc-status` or `trtcamsrc-recording` element message.
fn on_element(service: &Arc<service::Service>, s: &gst::StructureRef) {
    if s.name() == "trtcamsrc-status" {
        service.camera_status(s);
    } else if s.name() == crate::recording::RECORDING_MESSAGE {
        service.recording_event(s);
    }
}

/// SIGINT/SIGTERM: EOS through the pipeline so that the files are finalised, then quit.
fn shut_down(service: &Arc<service::Service>, main_loop: &glib::MainLoop) {
    if service.stopping() {
        return;
    }
    eprintln!("trtvision-serve: stopping (EOS through the pipeline)");
    service.set_stopping();
    service.pipeline().send_event(gst::event::Eos::new());
    let main_loop = main_loop.clone();
    glib::timeout_add_seconds_local(SHUTDOWN_TIMEOUT_S, move || {
        eprintln!("trtvision-serve: the EOS did not reach every output within {SHUTDOWN_TIMEOUT_S} s; stopping anyway");
        main_loop.quit();
        glib::ControlFlow::Break
    });
}

fn on_message(
    service: &Arc<service::Service>,
    msg: &gst::Message,
    main_loop: &glib::MainLoop,
    code: &std::sync::atomic::AtomicI32,
) {
    use gst::MessageView;
    match msg.view() {
        MessageView::Eos(_) => {
            if !service.stopping() {
                eprintln!("trtvision-serve: every camera ended");
            }
            main_loop.quit();
        }
        MessageView::Error(e) => {
            let text = format!(
                "{} ({})",
                e.error(),
                e.debug().map(|d| d.to_string()).unwrap_or_default()
            );
            // One camera's failure is never the pipeline's failure.
            if let Some(camera) = service.camera_of_message(msg) {
                service.camera_failed(&camera, &text);
                return;
            }
            let from = msg.src().map(|s| s.path_string().to_string()).unwrap_or_default();
            eprintln!("trtvision-serve: ERROR from {from}: {text}");
            code.store(1, std::sync::atomic::Ordering::SeqCst);
            main_loop.quit();
        }
        MessageView::Warning(w) => {
            let from = msg.src().map(|s| s.path_string().to_string()).unwrap_or_default();
            let text = format!(
                "warning from {from}: {} ({})",
                w.error(),
                w.debug().map(|d| d.to_string()).unwrap_or_default()
            );
            // Live pipelines repeat some warnings on every latency change: say each once.
            if service.first_report(&text) {
                eprintln!("trtvision-serve: {text}");
            }
        }
        MessageView::Element(e) => {
            if let Some(s) = e.structure() {
                on_element(service, s);
            }
        }
        MessageView::Latency(_) => {
            // Cameras come and go: the pipeline latency follows them.
            let _ = service.pipeline().recalculate_latency();
        }
        _ => {}
    }
}

fn report_errors(bus: &gst::Bus) {
    while let Some(msg) =
        bus.timed_pop_filtered(gst::ClockTime::from_mseconds(500), &[gst::MessageType::Error])
    {
        if let gst::MessageView::Error(e) = msg.view() {
            eprintln!(
                "  {}: {} ({})",
                msg.src().map(|s| s.path_string().to_string()).unwrap_or_default(),
                e.error(),
                e.debug().map(|d| d.to_string()).unwrap_or_default()
            );
        }
    }
}
