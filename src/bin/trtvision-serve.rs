//! `trtvision-serve CONFIG.toml [--http ADDR:PORT]`: runs the analytics pipeline described
//! by the TOML file and serves the HTTP API (cameras, event recordings, Prometheus metrics).
//! SIGINT/SIGTERM end it cleanly (EOS, files finalised). See docs/serve.md.

const USAGE: &str = "usage: trtvision-serve CONFIG.toml [--http ADDR:PORT]\n\
  CONFIG.toml      cameras, models, tracker and outputs (docs/serve.md)\n\
  --http ADDR:PORT serve the HTTP API there (port 0: any free port, printed at start)";

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut config, mut http) = (None, None);
    while let Some(a) = args.next() {
        match a.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            "--http" => match args.next() {
                Some(v) => http = Some(v),
                None => usage_error("--http needs ADDR:PORT"),
            },
            _ if a.starts_with("--http=") => http = Some(a["--http=".len()..].to_owned()),
            _ if a.starts_with('-') => usage_error(&format!("unknown option {a}")),
            _ if config.is_none() => config = Some(std::path::PathBuf::from(a)),
            _ => usage_error(&format!("unexpected argument {a}")),
        }
    }
    let Some(config) = config else {
        usage_error("no config file given")
    };
    // A service runs for months with cameras reconnecting: keep its heap from growing.
    gsttrtvision::live::fix_mmap_threshold();
    if let Err(e) = gst::init() {
        eprintln!("trtvision-serve: GStreamer cannot start: {e}");
        std::process::exit(1);
    }
    if let Err(e) = gsttrtvision::plugin_register_static() {
        eprintln!("trtvision-serve: cannot register the trtvision elements: {e}");
        std::process::exit(1);
    }
    std::process::exit(gsttrtvision::serve::run(&config, http.as_deref()));
}

fn usage_error(message: &str) -> ! {
    eprintln!("trtvision-serve: {message}\n{USAGE}");
    std::process::exit(2);
}
