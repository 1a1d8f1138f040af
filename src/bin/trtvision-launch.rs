//! `trtvision-launch PIPELINE-DESCRIPTION`: like `gst-launch-1.0 -e`, but starts file readers
//! and demuxers only once the rest of the pipeline runs (see `gsttrtvision::launch`), so
//! file cameras never stall at start. Ctrl-C sends EOS so that MP4 files are finalised.
//! Uses the installed plugin (GST_PLUGIN_PATH) like gst-launch-1.0.

use gst::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn main() {
    let desc = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
    if desc.trim().is_empty() {
        eprintln!("usage: trtvision-launch PIPELINE-DESCRIPTION");
        std::process::exit(2);
    }
    if let Err(e) = gst::init() {
        eprintln!("GStreamer cannot start: {e}");
        std::process::exit(1);
    }
    let pipeline = match gst::parse::launch(&desc).map(|e| e.downcast::<gst::Pipeline>()) {
        Ok(Ok(p)) => p,
        Ok(Err(_)) => {
            eprintln!("the description is not a pipeline");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("erroneous pipeline: {e}");
            std::process::exit(1);
        }
    };
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t,
        )
    };
    let bus = pipeline.bus().expect("a pipeline has a bus");
    if gsttrtvision::launch::play_sources_last(&pipeline).is_err() {
        report_error(&bus);
        let _ = pipeline.set_state(gst::State::Null);
        std::process::exit(1);
    }
    let mut code = 0;
    let mut eos_sent = false;
    loop {
        if INTERRUPTED.load(Ordering::SeqCst) && !eos_sent {
            eprintln!("interrupt: sending EOS");
            pipeline.send_event(gst::event::Eos::new());
            eos_sent = true;
        }
        let Some(msg) = bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(200),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        ) else {
            continue;
        };
        match msg.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => {
                eprintln!(
                    "ERROR from {}: {}\n{}",
                    e.src().map(|s| s.path_string().to_string()).unwrap_or_default(),
                    e.error(),
                    e.debug().map(|d| d.to_string()).unwrap_or_default()
                );
                code = 1;
                break;
            }
            _ => {}
        }
    }
    let _ = pipeline.set_state(gst::State::Null);
    std::process::exit(code);
}

fn report_error(bus: &gst::Bus) {
    if let Some(msg) = bus.timed_pop_filtered(gst::ClockTime::from_seconds(2), &[gst::MessageType::Error]) {
        if let gst::MessageView::Error(e) = msg.view() {
            eprintln!(
                "ERROR: {} ({})",
                e.error(),
                e.debug().map(|d| d.to_string()).unwrap_or_default()
            );
            return;
        }
    }
    eprintln!("ERROR: the pipeline could not start");
}
