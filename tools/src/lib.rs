//! Code shared by the measurement programs of gst-trtvision (`trtvision-bench`,
//! `trtvision-infer-bench`, `trtvision-promptseg-bench`): command lines, GPU and process
//! monitoring, soak runs, JSON records and their statistics.
//!
//! The programs link the plugin statically (`gsttrtvision::plugin_register_static`) and
//! write one JSON record per run (see `docs/measuring.md`).

pub mod cli;
pub mod gpumon;
pub mod json;
pub mod percamera;
pub mod procstats;
pub mod soak;
pub mod stats;
