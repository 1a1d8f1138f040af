//! `trtmsgbroker` against real brokers started by the tests on free loopback ports
//! (Debian's mosquitto, redis-server and nats-server; `scripts/setup.sh` installs them).
//! A missing broker binary fails the test in CI (`CI=true`) and is reported as skipped
//! (on stderr) elsewhere.
//!
//! - every message of a 4-camera run (detections, masks, track ids, zone counts, events)
//!   reaches MQTT, Redis and NATS JetStream and validates against the JSON Schema;
//! - the broker killed for 10 s mid-run and restarted: after deduplication by key exactly
//!   one message per frame, and the live pipeline's frame rate unchanged meanwhile;
//! - a spool too small: drops counted, pipeline still running to the end.

mod common;

use gst::prelude::*;
use std::collections::{BTreeMap, HashSet};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Mqtt,
    Redis,
    Nats,
}

/// A broker process on a loopback port, killed on drop.
struct Server {
    kind: Kind,
    port: u16,
    dir: PathBuf,
    bin: PathBuf,
    child: Option<Child>,
    /// mosquitto's `set_tcp_nodelay` (on unless a test measures Debian's default).
    nodelay: bool,
    /// mosquitto keeps sessions and queued messages across a graceful restart.
    persistent: bool,
    /// Serve TLS only, with these certificates.
    tls: Option<Certs>,
}

fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/usr/bin", "/usr/local/bin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

impl Server {
    /// Starts a broker, or `None` (skip) when its binary is missing outside CI.
    fn start(kind: Kind, tag: &str) -> Option<Server> {
        let name = match kind {
            Kind::Mqtt => "mosquitto",
            Kind::Redis => "redis-server",
            Kind::Nats => "nats-server",
        };
        let Some(bin) = find_binary(name) else {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{name} is not installed: scripts/setup.sh installs it");
            }
            eprintln!("SKIPPED: {name} is not installed (scripts/setup.sh installs it)");
            return None;
        };
        let dir = common::temp_path(&format!("broker-{tag}"), name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("broker dir");
        let mut s = Server {
            kind,
            port: free_port(),
            dir,
            bin,
            child: None,
            nodelay: true,
            persistent: false,
            tls: None,
        };
        s.spawn();
        Some(s)
    }

    /// [`Server::start`] serving TLS only, with a throw-away CA made for it.
    fn start_tls(kind: Kind, tag: &str) -> Option<Server> {
        let certs = Certs::make(tag)?;
        let mut s = Server::start(kind, tag)?;
        s.kill();
        s.tls = Some(certs);
        s.spawn();
        Some(s)
    }

    fn spawn(&mut self) {
        let port = self.port.to_string();
        let mut cmd = Command::new(&self.bin);
        match self.kind {
            Kind::Mqtt => {
                let conf = self.dir.join("mosquitto.conf");
                let tls = self.tls.as_ref().map_or(String::new(), |c| {
                    format!(
                        "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n",
                        c.ca.display(),
                        c.server_cert.display(),
                        c.server_key.display()
                    )
                });
                std::fs::write(
                    &conf,
                    // set_tcp_nodelay: without it mosquitto holds every PUBACK after the
                    // first of a batch until the client's delayed ACK (docs/brokers.md).
                    format!(
                        "listener {port} 127.0.0.1\nallow_anonymous true\n{}\
                         set_tcp_nodelay {}\n{tls}",
                        if self.persistent {
                            // mosquitto started as root runs as the user `mosquitto`, which
                            // must be able to write its database here.
                            use std::os::unix::fs::PermissionsExt;
                            std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o777))
                                .expect("broker dir permissions");
                            format!(
                                "persistence true\npersistence_location {}/\nmax_queued_messages 0\n",
                                self.dir.display()
                            )
                        } else {
                            "persistence false\n".to_string()
                        },
                        self.nodelay
                    ),
                )
                .expect("mosquitto config");
                cmd.arg("-c").arg(conf);
            }
            Kind::Redis => {
                // TLS: the plain port off; clients must show a certificate of the CA
                // (Redis' default, tls-auth-clients yes).
                match &self.tls {
                    Some(c) => cmd
                        .args(["--port", "0", "--tls-port", &port, "--tls-cert-file"])
                        .arg(&c.server_cert)
                        .arg("--tls-key-file")
                        .arg(&c.server_key)
                        .arg("--tls-ca-cert-file")
                        .arg(&c.ca),
                    None => cmd.args(["--port", &port]),
                };
                // Append-only file fsynced on every write: a killed server keeps every
                // acknowledged XADD.
                cmd.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"])
                    .args(["--appendfsync", "always", "--dir"])
                    .arg(&self.dir);
            }
            Kind::Nats => {
                cmd.args(["-js", "-a", "127.0.0.1", "-p", &port, "-sd"])
                    .arg(&self.dir);
                if let Some(c) = &self.tls {
                    cmd.arg("--tls")
                        .arg("--tlscert")
                        .arg(&c.server_cert)
                        .arg("--tlskey")
                        .arg(&c.server_key);
                }
            }
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", self.bin.display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "{:?} broker did not start on port {}",
                self.kind,
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        if self.kind == Kind::Nats {
            // JetStream is ready shortly after the port.
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the broker gracefully (SIGTERM: mosquitto saves its persistent state).
    fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = c.id() as libc::pid_t;
            // SAFETY: a plain signal to our own child process.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let _ = c.wait();
        }
    }

    fn uri(&self, target: &str) -> String {
        let scheme = match (self.kind, self.tls.is_some()) {
            (Kind::Mqtt, false) => "mqtt",
            (Kind::Redis, false) => "redis",
            (Kind::Nats, false) => "nats",
            (Kind::Mqtt, true) => "mqtts",
            (Kind::Redis, true) => "rediss",
            (Kind::Nats, true) => "nats+tls",
        };
        format!("{scheme}://127.0.0.1:{}/{target}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// MQTT subscriber collecting every payload of `topic` (QoS 1).
struct MqttSubscriber {
    got: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl MqttSubscriber {
    fn start(server: &Server, topic: &str) -> Self {
        let mut o = rumqttc::MqttOptions::new(
            format!("test-sub-{}", std::process::id()),
            "127.0.0.1",
            server.port,
        );
        o.set_keep_alive(Duration::from_secs(5));
        o.set_max_packet_size(64 << 20, 64 << 20);
        if let Some(c) = &server.tls {
            // rumqttc is built without a crypto provider; the plugin installs *ring* on its
            // first connection, the subscriber comes first.
            #[allow(deprecated)]
            let _ = rustls::crypto::ring::default_provider().install_default();
            let (ca, client) = c.pem();
            o.set_transport(rumqttc::Transport::tls(ca, Some(client), None));
        }
        let got = common::mqtt::subscribe_with(o, topic);
        MqttSubscriber { got }
    }
}

/// MQTT subscriber with a persistent session (clean session off, QoS 1) that reconnects
/// after a broker restart: the broker keeps what it queued for it meanwhile.
fn durable_subscriber(server: &Server, topic: &str) -> Arc<Mutex<Vec<Vec<u8>>>> {
    let mut o = rumqttc::MqttOptions::new(
        format!("test-durable-{}", std::process::id()),
        "127.0.0.1",
        server.port,
    );
    o.set_keep_alive(Duration::from_secs(5))
        .set_clean_session(false)
        .set_max_packet_size(64 << 20, 64 << 20);
    common::mqtt::subscribe_with(o, topic)
}

/// Every entry of a Redis stream: (key, payload).
fn redis_stream(server: &Server, stream: &str) -> Vec<(String, Vec<u8>)> {
    let client = match &server.tls {
        None => redis::Client::open(format!("redis://127.0.0.1:{}/", server.port)),
        Some(c) => {
            let (ca, (client_cert, client_key)) = c.pem();
            redis::Client::build_with_tls(
                format!("rediss://127.0.0.1:{}/", server.port),
                redis::TlsCertificates {
                    client_tls: Some(redis::ClientTlsConfig {
                        client_cert,
                        client_key,
                    }),
                    root_cert: Some(ca),
                },
            )
        }
    }
    .expect("redis client");
    let mut con = client.get_connection().expect("redis connection");
    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query(&mut con)
        .expect("XRANGE");
    reply
        .ids
        .iter()
        .map(|e| {
            let key: String = e.get("key").expect("key field");
            let payload: Vec<u8> = e.get("payload").expect("payload field");
            (key, payload)
        })
        .collect()
}

/// Every message of a JetStream stream, in order.
fn nats_stream(server: &Server, stream: &str) -> Vec<Vec<u8>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut o = async_nats::ConnectOptions::new();
        if let Some(c) = &server.tls {
            o = o.require_tls(true).add_root_certificates(c.ca.clone());
        }
        let client = o
            .connect(format!("127.0.0.1:{}", server.port))
            .await
            .expect("nats connect");
        let js = async_nats::jetstream::new(client);
        let mut s = js.get_stream(stream).await.expect("stream exists");
        let n = s.info().await.expect("stream info").state.messages;
        let mut out = Vec::new();
        for seq in 1..=n {
            let m = s.get_raw_message(seq).await.expect("stream message");
            out.push(m.payload.to_vec());
        }
        out
    })
}

fn validator() -> jsonschema::Validator {
    let schema: serde_json::Value =
        serde_json::from_str(gsttrtvision::messages::SCHEMA).expect("schema is JSON");
    jsonschema::validator_for(&schema).expect("schema compiles")
}

/// Parses and validates every payload; returns them.
fn validate_all(payloads: &[Vec<u8>]) -> Vec<serde_json::Value> {
    let v = validator();
    payloads
        .iter()
        .map(|p| {
            let j: serde_json::Value = serde_json::from_slice(p).expect("payload is JSON");
            if let Err(e) = v.validate(&j) {
                panic!("message does not match the schema: {e}\n{j}");
            }
            j
        })
        .collect()
}

const CAMS: u32 = 4;
const FRAMES: u64 = 24;

const ANALYTICS: &str = r#"
[[camera]]
id = 0
[[camera.zone]]
name = "left"
polygon = [[0, 0], [80, 0], [80, 120], [0, 120]]
occupancy-threshold = 1
[[camera.line]]
name = "middle"
from = [80, 0]
to = [80, 120]
[[camera]]
id = 1
[[camera.zone]]
name = "top"
polygon = [[0, 0], [160, 0], [160, 60], [0, 60]]
"#;

/// 4 cameras -> YOLO-seg -> masks -> tracker -> analytics -> trtmsgbroker (as fast as it goes).
fn run_four_cameras(uri: &str, tag: &str) -> gst::Element {
    common::init();
    let cfg = common::cfg("shapes-yolo-seg.toml");
    let analytics = common::temp_path(tag, "analytics.toml");
    std::fs::write(&analytics, ANALYTICS).unwrap();
    let mut desc = format!(
        "trtmux name=m batch-size={CAMS} ! trtpreprocess config-file={cfg} ! trtinfer model={cfg} ! trtmaskselect \
         ! trttracker ! trtanalytics config-file={} ! trtmsgbroker name=b uri={uri} pipeline-id=test",
        analytics.display()
    );
    for i in 0..CAMS {
        desc += &format!(
            " trtscenesrc camera={i} num-buffers={FRAMES} ! video/x-raw,format=RGBA,width=160,height=120,framerate=30/1 ! m.sink_{i}"
        );
    }
    let p = common::parse(&desc);
    common::run_to_end(&p, gst::ClockTime::from_seconds(120)).expect("pipeline runs to EOS");
    p.by_name("b").unwrap()
}

/// One frame message per frame of every camera, unique keys; events present.
fn check_four_cameras(msgs: &[serde_json::Value]) {
    let frames: HashSet<(u64, u64)> = msgs
        .iter()
        .filter(|m| m["kind"] == "frame")
        .map(|m| (m["camera"].as_u64().unwrap(), m["frame"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        frames.len() as u64,
        CAMS as u64 * FRAMES,
        "one frame message per frame"
    );
    let keys: HashSet<&str> = msgs.iter().map(|m| m["key"].as_str().unwrap()).collect();
    assert_eq!(keys.len(), msgs.len(), "keys are unique");
    let dets: usize = msgs
        .iter()
        .filter_map(|m| m["detections"].as_array())
        .map(|d| d.len())
        .sum();
    assert!(
        dets as u64 >= 2 * CAMS as u64 * FRAMES,
        "detections present ({dets})"
    );
    assert!(msgs
        .iter()
        .any(|m| m["detections"][0]["mask"]["area"].as_u64().is_some_and(|a| a > 0)));
    assert!(msgs.iter().any(|m| m["detections"][0]["track_id"].is_u64()));
    assert!(msgs
        .iter()
        .any(|m| m["zones"].as_array().is_some_and(|z| !z.is_empty())));
    assert!(
        msgs.iter().any(|m| m["event"]["type"] == "zone_entry"),
        "zone events present"
    );
}

#[test]
fn mqtt_four_cameras_every_message_valid() {
    let Some(server) = Server::start(Kind::Mqtt, "mqtt4") else {
        return;
    };
    let sub = MqttSubscriber::start(&server, "trtvision/test");
    let b = run_four_cameras(&server.uri("trtvision/test"), "mqtt4");
    assert_eq!(b.property::<u64>("dropped"), 0);
    let sent = b.property::<u64>("sent");
    let deadline = Instant::now() + Duration::from_secs(10);
    while (sub.got.lock().unwrap().len() as u64) < sent && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let got = sub.got.lock().unwrap().clone();
    assert_eq!(got.len() as u64, sent, "the subscriber received every message");
    check_four_cameras(&validate_all(&got));
}

#[test]
fn mqtt5_delivers() {
    let Some(server) = Server::start(Kind::Mqtt, "mqtt5") else {
        return;
    };
    let sub = MqttSubscriber::start(&server, "v5");
    common::init();
    let p = common::parse(&format!(
        "trtscenesrc num-buffers=20 ! video/x-raw,width=64,height=48,framerate=30/1 ! trtmsgbroker name=b uri={}?version=5",
        server.uri("v5")
    ));
    common::run_to_end(&p, gst::ClockTime::from_seconds(60)).expect("runs");
    assert_eq!(p.by_name("b").unwrap().property::<u64>("sent"), 20);
    let deadline = Instant::now() + Duration::from_secs(10);
    while sub.got.lock().unwrap().len() < 20 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let msgs = validate_all(&sub.got.lock().unwrap());
    let frames: Vec<u64> = msgs.iter().map(|m| m["frame"].as_u64().unwrap()).collect();
    assert_eq!(
        frames,
        (0..20).collect::<Vec<_>>(),
        "video input: one message per frame, in order"
    );
}

#[test]
fn redis_four_cameras_every_message_valid() {
    let Some(server) = Server::start(Kind::Redis, "redis4") else {
        return;
    };
    let b = run_four_cameras(&server.uri("trtvision"), "redis4");
    let entries = redis_stream(&server, "trtvision");
    assert_eq!(entries.len() as u64, b.property::<u64>("sent"));
    let payloads: Vec<Vec<u8>> = entries.iter().map(|(_, p)| p.clone()).collect();
    let msgs = validate_all(&payloads);
    for ((key, _), m) in entries.iter().zip(&msgs) {
        assert_eq!(
            m["key"].as_str().unwrap(),
            key,
            "stream field 'key' is the message key"
        );
    }
    check_four_cameras(&msgs);
}

#[test]
fn nats_four_cameras_every_message_valid() {
    let Some(server) = Server::start(Kind::Nats, "nats4") else {
        return;
    };
    let b = run_four_cameras(&server.uri("trtvision.results"), "nats4");
    let payloads = nats_stream(&server, "TRTVISION_RESULTS");
    assert_eq!(payloads.len() as u64, b.property::<u64>("sent"));
    check_four_cameras(&validate_all(&payloads));
}

/// Live 4-camera run with frame messages; `outage` kills the broker for that long from
/// `kill_at` on. Returns the element and the wall-clock arrival times of batches.
fn live_run(
    server: &mut Server,
    spool: &Path,
    spool_max: u64,
    seconds: u64,
    outage: Option<(Duration, Duration)>,
) -> (gst::Element, Vec<(Instant, usize)>) {
    common::init();
    let frames = seconds * 30;
    let mut desc = format!(
        "trtmux name=m batch-size={CAMS} ! trtmsgbroker name=b uri={} pipeline-id=live message-kind=frame \
         spool-dir={} spool-max-bytes={spool_max} queue-size=64 timeout=500",
        server.uri("live"),
        spool.display()
    );
    for i in 0..CAMS {
        desc += &format!(
            " trtscenesrc camera={i} is-live=true num-buffers={frames} ! video/x-raw,format=RGBA,width=64,height=48,framerate=30/1 ! m.sink_{i}"
        );
    }
    let p = common::parse(&desc);
    let b = p.by_name("b").unwrap();
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let a = arrivals.clone();
    b.static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(buf) = info.buffer() {
                let n = buf
                    .meta::<gsttrtvision::batch::BatchMeta>()
                    .map_or(0, |m| m.batch().slots.len());
                a.lock().unwrap().push((Instant::now(), n));
            }
            gst::PadProbeReturn::Ok
        });
    let start = Instant::now();
    let handle = {
        let p = p.clone();
        std::thread::spawn(move || common::run_to_end(&p, gst::ClockTime::from_seconds(seconds + 60)))
    };
    if let Some((at, len)) = outage {
        std::thread::sleep(at.saturating_sub(start.elapsed()));
        server.kill();
        std::thread::sleep(len);
        server.spawn();
    }
    handle.join().unwrap().expect("pipeline runs to EOS");
    let arrivals = arrivals.lock().unwrap().clone();
    (b, arrivals)
}

/// The element's counters: sent, spooled, replayed, dropped.
fn counters(b: &gst::Element) -> (u64, u64, u64, u64) {
    let c = |n: &str| b.property::<u64>(n);
    (c("sent"), c("spooled"), c("replayed"), c("dropped"))
}

/// Frames per second that reached the sink within `[from, to)` after the first arrival.
fn rate(arrivals: &[(Instant, usize)], from: Duration, to: Duration) -> f64 {
    let t0 = arrivals[0].0;
    let n: usize = arrivals
        .iter()
        .filter(|(t, _)| (from..to).contains(&(*t - t0)))
        .map(|(_, n)| n)
        .sum();
    n as f64 / (to - from).as_secs_f64()
}

#[test]
fn redis_outage_of_10s_loses_nothing_and_never_slows_the_pipeline() {
    let Some(mut server) = Server::start(Kind::Redis, "outage") else {
        return;
    };
    let spool = common::temp_path("outage", "spool");
    let _ = std::fs::remove_dir_all(&spool);
    let seconds = 16;
    let (b, arrivals) = live_run(
        &mut server,
        &spool,
        64 << 20,
        seconds,
        Some((Duration::from_secs(3), Duration::from_secs(10))),
    );
    let (sent, spooled, replayed, dropped) = counters(&b);
    eprintln!("outage: sent {sent}, spooled {spooled}, replayed {replayed}, dropped {dropped}");
    assert_eq!(dropped, 0);
    assert!(
        spooled > 0 && replayed == spooled,
        "the outage went through the spool"
    );
    // Frame rate of the live sources while the broker was down, against before it.
    let before = rate(&arrivals, Duration::from_millis(500), Duration::from_millis(2500));
    let during = rate(
        &arrivals,
        Duration::from_millis(4000),
        Duration::from_millis(12000),
    );
    eprintln!("frames/s reaching trtmsgbroker: before {before:.1}, during the outage {during:.1}");
    assert!(
        during >= 0.95 * before && during >= 0.9 * 30.0 * CAMS as f64,
        "before {before}, during {during}"
    );
    // After deduplication by key: exactly one message per frame.
    let entries = redis_stream(&server, "live");
    let mut by_key: BTreeMap<String, usize> = BTreeMap::new();
    for (k, _) in &entries {
        *by_key.entry(k.clone()).or_default() += 1;
    }
    let frames = seconds * 30;
    assert_eq!(
        by_key.len() as u64,
        CAMS as u64 * frames,
        "one message per frame after deduplication"
    );
    for c in 0..CAMS {
        for f in 0..frames {
            assert!(
                by_key.contains_key(&format!("live/{c}/{f}/frame/0")),
                "camera {c} frame {f} missing"
            );
        }
    }
    validate_all(&entries.iter().map(|(_, p)| p.clone()).collect::<Vec<_>>());
}

#[test]
fn small_spool_drops_are_counted_and_the_pipeline_keeps_running() {
    let Some(mut server) = Server::start(Kind::Mqtt, "small") else {
        return;
    };
    let spool = common::temp_path("small", "spool");
    let _ = std::fs::remove_dir_all(&spool);
    let seconds = 4;
    // Down the whole run after the first second; a 16 KiB spool holds ~40 messages.
    let (b, arrivals) = live_run(
        &mut server,
        &spool,
        16 << 10,
        seconds,
        Some((Duration::from_secs(1), Duration::from_secs(seconds + 2))),
    );
    let (sent, spooled, _, dropped) = counters(&b);
    eprintln!("small spool: sent {sent}, spooled {spooled}, dropped {dropped}");
    let frames: usize = arrivals.iter().map(|(_, n)| n).sum();
    assert_eq!(
        frames as u64,
        CAMS as u64 * seconds * 30,
        "every frame went through the pipeline"
    );
    assert!(dropped > 0, "drops are counted");
    assert!(spooled > 0);
    assert!(
        sent + spooled + dropped >= frames as u64,
        "every message accounted for"
    );
}

#[test]
fn mqtt_window_is_respected_and_a_restart_with_messages_in_flight_loses_none() {
    use gsttrtvision::broker::{Config, Destination, Sender};
    let Some(mut server) = Server::start(Kind::Mqtt, "inflight") else {
        return;
    };
    // Debian's default (Nagle on): held-back PUBACKs keep the window full.
    server.kill();
    server.nodelay = false;
    server.persistent = true;
    server.spawn();
    let got = durable_subscriber(&server, "inflight");
    let spool = common::temp_path("inflight", "spool");
    let _ = std::fs::remove_dir_all(&spool);
    let mut c = Config::new(Destination::parse(&server.uri("inflight")).unwrap());
    c.max_inflight = 64;
    c.spool = Some((spool, "inflight".into()));
    let s = Sender::start(c, |_| {}).expect("sender starts");
    // Enough that the restart (at 2,000 acknowledged) comes well before the end.
    let n = 50_000u64;
    for i in 0..n {
        let (k, p) = sample_payload(i);
        s.push(k, p);
    }
    // Restart the broker while messages are in flight.
    let deadline = Instant::now() + Duration::from_secs(60);
    while s.counters().get().0 < 2_000 {
        assert!(Instant::now() < deadline, "the first 2,000 acknowledged");
        std::thread::sleep(Duration::from_millis(1));
    }
    let in_flight = s.in_flight();
    server.terminate();
    let sent_at_stop = s.counters().get().0;
    std::thread::sleep(Duration::from_secs(1));
    server.spawn();
    assert!(s.flush(Duration::from_secs(120)), "everything acknowledged");
    let (sent, spooled, replayed, dropped) = s.counters().get();
    let peak = s.peak_in_flight();
    eprintln!(
        "in flight at SIGTERM {in_flight}, acknowledged when mosquitto exited {sent_at_stop}, peak in flight \
         {peak}; sent {sent}, spooled {spooled}, replayed {replayed}, dropped {dropped}"
    );
    // mosquitto reads what its clients send before it acts on SIGTERM, so it may take the
    // messages in flight (and more) before it exits; the stand-in broker of
    // src/broker/tests.rs drops a connection with messages in flight deterministically.
    assert!(
        in_flight > 0,
        "messages were in flight when the broker was told to stop"
    );
    assert_eq!(peak, 64, "the window filled and was never exceeded");
    assert_eq!(
        (sent, dropped),
        (n, 0),
        "each message acknowledged once, none lost"
    );
    assert_eq!(replayed, spooled);
    // The subscriber's persistent session: after deduplication, every message once.
    let deadline = Instant::now() + Duration::from_secs(60);
    let keys = loop {
        let keys: HashSet<String> = got
            .lock()
            .unwrap()
            .iter()
            .map(|p| {
                let v: serde_json::Value = serde_json::from_slice(p).expect("JSON");
                v["key"].as_str().expect("key").to_string()
            })
            .collect();
        if keys.len() as u64 == n || Instant::now() > deadline {
            break keys;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let received = got.lock().unwrap().len();
    eprintln!("subscriber: {received} messages, {} distinct keys", keys.len());
    assert_eq!(keys.len() as u64, n, "every message reached the subscriber");
}

/// A throw-away CA with a server certificate for 127.0.0.1 and a client certificate, made
/// with the openssl CLI.
struct Certs {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

impl Certs {
    /// `None` (skip) when openssl is missing outside CI.
    fn make(tag: &str) -> Option<Certs> {
        if find_binary("openssl").is_none() {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("openssl is not installed: scripts/setup.sh installs it");
            }
            eprintln!("SKIPPED: openssl is not installed (scripts/setup.sh installs it)");
            return None;
        }
        let dir = common::temp_path(&format!("tls-{tag}"), "certs");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("cert dir");
        let f = |n: &str| dir.join(n);
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .output()
                .expect("openssl runs");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509"][..],
                &ec,
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=trtvision test CA",
                ],
                &["-addext", "basicConstraints=critical,CA:TRUE"],
                &["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
            ]
            .concat(),
        );
        for (name, cn, ext) in [
            (
                "server",
                "127.0.0.1",
                "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth",
            ),
            ("client", "trtvision test client", "extendedKeyUsage=clientAuth"),
        ] {
            std::fs::write(
                f(&format!("{name}.ext")),
                format!("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n{ext}\n"),
            )
            .expect("extension file");
            let (key, csr, pem, extf) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.pem"),
                format!("{name}.ext"),
            );
            openssl(
                &[
                    &["req"][..],
                    &ec,
                    &["-keyout", &key, "-out", &csr, "-subj", &format!("/CN={cn}")],
                ]
                .concat(),
            );
            openssl(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &extf,
            ]);
        }
        // mosquitto started as root reads its files as the user mosquitto.
        for name in ["ca.pem", "server.pem", "server.key", "client.pem", "client.key"] {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(f(name), std::fs::Permissions::from_mode(0o644)).expect("chmod");
        }
        Some(Certs {
            ca: f("ca.pem"),
            server_cert: f("server.pem"),
            server_key: f("server.key"),
            client_cert: f("client.pem"),
            client_key: f("client.key"),
        })
    }

    /// PEM bytes: the CA, and the client's (certificate, key).
    fn pem(&self) -> (Vec<u8>, (Vec<u8>, Vec<u8>)) {
        let r = |p: &Path| std::fs::read(p).expect("certificate file");
        (r(&self.ca), (r(&self.client_cert), r(&self.client_key)))
    }

    /// trtmsgbroker properties: verified by the CA, with the client certificate.
    fn props(&self) -> String {
        format!(
            "tls-ca-file={} tls-cert-file={} tls-key-file={}",
            self.ca.display(),
            self.client_cert.display(),
            self.client_key.display()
        )
    }
}

/// 20 frames of one camera through `trtmsgbroker uri=URI PROPS`; the element.
fn send_twenty(uri: &str, props: &str) -> gst::Element {
    common::init();
    let p = common::parse(&format!(
        "trtscenesrc num-buffers=20 ! video/x-raw,width=64,height=48,framerate=30/1 \
         ! trtmsgbroker name=b uri={uri} {props} timeout=1000 flush-timeout=3000"
    ));
    common::run_to_end(&p, gst::ClockTime::from_seconds(60)).expect("runs to EOS");
    p.by_name("b").unwrap()
}

/// The frame numbers of `payloads`, validated against the schema.
fn frames_of(payloads: &[Vec<u8>]) -> Vec<u64> {
    validate_all(payloads)
        .iter()
        .map(|m| m["frame"].as_u64().unwrap())
        .collect()
}

/// Waits until the subscriber holds `n` messages (at most 10 s); its payloads.
fn wait_for(sub: &MqttSubscriber, n: usize) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while sub.got.lock().unwrap().len() < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    sub.got.lock().unwrap().clone()
}

#[test]
fn mqtts_verifies_the_broker_and_shows_a_client_certificate() {
    let Some(server) = Server::start_tls(Kind::Mqtt, "mqtts") else {
        return;
    };
    let certs = server.tls.as_ref().unwrap();
    let sub = MqttSubscriber::start(&server, "tls");
    let b = send_twenty(&server.uri("tls"), &certs.props());
    assert_eq!(counters(&b), (20, 0, 0, 0));
    assert_eq!(frames_of(&wait_for(&sub, 20)), (0..20).collect::<Vec<_>>());
    // tls-insecure: no CA, the broker's certificate accepted as it is.
    let b = send_twenty(
        &server.uri("tls"),
        &format!(
            "tls-insecure=true tls-cert-file={} tls-key-file={}",
            certs.client_cert.display(),
            certs.client_key.display()
        ),
    );
    assert_eq!(b.property::<u64>("sent"), 20);
    assert_eq!(wait_for(&sub, 40).len(), 40, "the insecure connection delivered");
    // A CA that did not sign the broker's certificate: nothing is sent (dropped at EOS).
    let other = Certs::make("mqtts-other").expect("openssl");
    let b = send_twenty(
        &server.uri("tls"),
        &format!(
            "tls-ca-file={} tls-cert-file={} tls-key-file={}",
            other.ca.display(),
            certs.client_cert.display(),
            certs.client_key.display()
        ),
    );
    assert_eq!(counters(&b), (0, 0, 0, 20), "an unverified broker gets nothing");
    assert_eq!(sub.got.lock().unwrap().len(), 40);
}

#[test]
fn rediss_with_a_client_certificate() {
    let Some(server) = Server::start_tls(Kind::Redis, "rediss") else {
        return;
    };
    let b = send_twenty(&server.uri("tls"), &server.tls.as_ref().unwrap().props());
    assert_eq!(counters(&b), (20, 0, 0, 0));
    let payloads: Vec<Vec<u8>> = redis_stream(&server, "tls").into_iter().map(|(_, p)| p).collect();
    assert_eq!(frames_of(&payloads), (0..20).collect::<Vec<_>>());
    // Redis requires a client certificate: without one the handshake fails.
    let b = send_twenty(
        &server.uri("tls"),
        &format!("tls-ca-file={}", server.tls.as_ref().unwrap().ca.display()),
    );
    assert_eq!(counters(&b), (0, 0, 0, 20), "no client certificate, no delivery");
}

#[test]
fn nats_over_tls() {
    let Some(server) = Server::start_tls(Kind::Nats, "natstls") else {
        return;
    };
    let certs = server.tls.as_ref().unwrap();
    let b = send_twenty(
        &server.uri("tls.frames"),
        &format!("tls-ca-file={}", certs.ca.display()),
    );
    assert_eq!(counters(&b), (20, 0, 0, 0));
    // Another pipeline-id: JetStream would drop the same keys again as duplicates.
    let b = send_twenty(&server.uri("tls.frames"), "tls-insecure=true pipeline-id=second");
    assert_eq!(counters(&b), (20, 0, 0, 0));
    let frames = frames_of(&nats_stream(&server, "TLS_FRAMES"));
    assert_eq!(frames, (0..20).chain(0..20).collect::<Vec<_>>());
}

#[test]
fn bad_uris_are_clear_errors() {
    common::init();
    for (uri, needle) in [
        ("kafka://127.0.0.1:9092/t", "kafka:// is not supported"),
        ("mqtt://127.0.0.1:1883", "MQTT topic"),
        ("ftp://h/x", "unknown broker scheme"),
    ] {
        let p = common::parse(&format!("trtscenesrc num-buffers=1 ! trtmsgbroker uri={uri}"));
        let e = common::run_to_end(&p, gst::ClockTime::from_seconds(10)).unwrap_err();
        assert!(e.contains(needle), "{uri}: {e}");
    }
    let p =
        common::parse("trtscenesrc num-buffers=1 ! trtmsgbroker uri=mqtt://alice:s3cret@127.0.0.1:1/t?qos=1");
    let e = common::run_to_end(&p, gst::ClockTime::from_seconds(10)).unwrap_err();
    assert!(!e.contains("s3cret"), "credentials never appear: {e}");
}

/// Process CPU seconds (user + system) of this process.
fn self_cpu_s() -> f64 {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct it is given.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// CPU seconds of process `pid` (user + system), from /proc.
fn pid_cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // After the command name: state is field 0, utime 11, stime 12.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

/// A frame message of 4 detections with masks, as a 4-camera YOLO-seg pipeline sends.
fn sample_payload(frame: u64) -> (String, Vec<u8>) {
    let dets = gsttrtvision::scene::scene_detections(0, frame, 640, 480);
    let at = gsttrtvision::messages::FrameRef {
        camera: 0,
        frame,
        pts_ns: Some(frame * 33_333_333),
        running_time_ns: Some(frame * 33_333_333),
    };
    let m = gsttrtvision::messages::frame_messages(
        "bench",
        gsttrtvision::messages::MessageKind::Frame,
        &at,
        (640, 480),
        &dets,
        &[],
        &[],
    );
    let e = gsttrtvision::messages::encode(&m[0]);
    (e.key, e.payload)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[test]
#[ignore = "measurement: writes bench/results/cpu-broker-<broker>-20261207.json"]
fn bench_brokers() {
    use gsttrtvision::broker::{Config, Destination, Sender};
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let device = format!(
        "cpu: {cpu_model} x{}",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    // A command's trimmed standard output ("" when it cannot run).
    let stdout_of = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let commit = stdout_of("git", &["rev-parse", "HEAD"]);
    let date = stdout_of("date", &["-u", "+%Y-%m-%d"]);
    // TRTVISION_BENCH_BROKERS=mqtt,redis measures only those; TRTVISION_BENCH_SUFFIX=-b
    // names the records cpu-broker-NAME-YYYYMMDD-b.json (a second record of the same day).
    let only = std::env::var("TRTVISION_BENCH_BROKERS").unwrap_or_default();
    let suffix = std::env::var("TRTVISION_BENCH_SUFFIX").unwrap_or_default();
    let (n, paced_rate, paced_s, replay_n) = (10_000u64, 1_000u64, 3u64, 5_000u64);
    for (kind, name, target) in [
        (Kind::Mqtt, "mqtt", "bench"),
        (Kind::Redis, "redis", "bench"),
        (Kind::Nats, "nats", "bench.frames"),
    ] {
        if !only.is_empty() && !only.split(',').any(|b| b == name) {
            continue;
        }
        let mut server = Server::start(kind, &format!("bench-{name}")).expect("broker installed");
        let uri = server.uri(target);
        let make = |spool: Option<(PathBuf, String)>, queue: usize| {
            let mut c = Config::new(Destination::parse(&uri).unwrap());
            c.queue_size = queue;
            c.spool = spool;
            c.latency_samples = 1 << 20;
            Sender::start(c, |_| {}).expect("sender starts")
        };
        let payload_bytes = sample_payload(0).1.len();
        let defaults = Config::new(Destination::parse(&uri).unwrap());
        let window = match kind {
            Kind::Mqtt => format!("max-inflight {}", defaults.max_inflight),
            _ => format!("batch {}", defaults.batch),
        };
        // 1. Sustained rate: everything queued at once, time until all acknowledged.
        let s = make(None, n as usize);
        assert!(s.flush(Duration::from_secs(10)));
        let msgs: Vec<_> = (0..n).map(sample_payload).collect();
        let pid = server.child.as_ref().unwrap().id();
        let (c0, b0, t0) = (self_cpu_s(), pid_cpu_s(pid), Instant::now());
        for (k, p) in msgs {
            s.push(k, p);
        }
        assert!(s.flush(Duration::from_secs(300)), "{name}: all acknowledged");
        let wall = t0.elapsed().as_secs_f64();
        let (client_cpu, broker_cpu) = (self_cpu_s() - c0, pid_cpu_s(pid) - b0);
        let rate = n as f64 / wall;
        s.take_latencies();
        // mosquitto as Debian configures it (Nagle on): the sustained rate only.
        // mosquitto as Debian configures it (Nagle on): the sustained rate, and the latency
        // at the steady rate of part 2.
        let paced = |s: &Sender, from: u64| {
            let t1 = Instant::now();
            for i in 0..paced_rate * paced_s {
                let due = Duration::from_secs_f64(i as f64 / paced_rate as f64);
                if let Some(w) = due.checked_sub(t1.elapsed()) {
                    std::thread::sleep(w);
                }
                let (k, p) = sample_payload(from + i);
                s.push(k, p);
            }
            assert!(s.flush(Duration::from_secs(60)));
            let mut lat: Vec<f64> = s.take_latencies().iter().map(|d| d.as_secs_f64() * 1e3).collect();
            lat.sort_by(f64::total_cmp);
            lat
        };
        let nagle_on = (kind == Kind::Mqtt).then(|| {
            let mut plain = Server::start(kind, "bench-mqtt-default").expect("broker installed");
            plain.kill();
            plain.nodelay = false;
            plain.spawn();
            let mut c = Config::new(Destination::parse(&plain.uri(target)).unwrap());
            c.queue_size = n as usize;
            c.latency_samples = 1 << 20;
            let s = Sender::start(c, |_| {}).expect("sender starts");
            assert!(s.flush(Duration::from_secs(10)));
            let t = Instant::now();
            for (k, p) in (0..n).map(sample_payload) {
                s.push(k, p);
            }
            assert!(s.flush(Duration::from_secs(300)), "{name}: all acknowledged");
            let rate = n as f64 / t.elapsed().as_secs_f64();
            s.take_latencies();
            (rate, paced(&s, n))
        });
        // 2. Latency frame -> broker acknowledgement at a steady rate.
        let lat = paced(&s, n);
        drop(s);
        // 3. Spool replay: broker down while messages are spooled, then back.
        server.kill();
        let dir = common::temp_path(&format!("bench-{name}"), "spool");
        let _ = std::fs::remove_dir_all(&dir);
        let s = make(Some((dir, "bench".into())), 64);
        for i in 0..replay_n {
            let (k, p) = sample_payload(i);
            s.push(k, p);
        }
        let spooled = s.counters().get().1;
        let t2 = Instant::now();
        server.spawn();
        assert!(s.flush(Duration::from_secs(300)), "{name}: spool replayed");
        let replay_wall = t2.elapsed().as_secs_f64();
        let replayed = s.counters().get().2;
        let replay_rate = replayed as f64 / replay_wall;
        drop(s);
        let mut record = serde_json::json!({
            "device": device,
            "date": date,
            "commit": commit,
            "what": format!("broker-{name}"),
            "pipeline": format!("cargo test --release --test broker -- --ignored bench_brokers ({uri}, gsttrtvision::broker::Sender, {window})"),
            "cameras": null, "width": 640, "height": 480, "batch_size": 64,
            "model": "none", "backend": "none",
            "frames": n,
            "payload_bytes": payload_bytes,
            "messages_per_s": rate,
            "cpu_cores": client_cpu / wall,
            "cpu_cores_per_1000_msgs_per_s": client_cpu / wall / (rate / 1000.0),
            "broker_cpu_cores_per_1000_msgs_per_s": broker_cpu / wall / (rate / 1000.0),
            "latency_ms": {"p50": percentile(&lat, 0.5), "p95": percentile(&lat, 0.95), "p99": percentile(&lat, 0.99)},
            "latency_rate_msgs_per_s": paced_rate,
            "latency_samples": lat.len(),
            "spool_replay": {"messages": replayed, "spooled": spooled, "seconds": replay_wall, "messages_per_s": replay_rate},
            "note": "latency: push (the frame's message handed to trtmsgbroker's queue) to the broker's acknowledgement; \
                     cpu_cores: this process only; the machine is shared, so rates are lower bounds",
        });
        if let Some((r, lat)) = nagle_on {
            record["broker_config"] = "mosquitto set_tcp_nodelay true".into();
            record["messages_per_s_broker_nagle_on"] = r.into();
            record["latency_ms_broker_nagle_on"] = serde_json::json!({
                "p50": percentile(&lat, 0.5), "p95": percentile(&lat, 0.95), "p99": percentile(&lat, 0.99)
            });
        }
        let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!(
            "bench/results/cpu-broker-{name}-{}{suffix}.json",
            date.replace('-', "")
        ));
        std::fs::write(&out, serde_json::to_string_pretty(&record).unwrap() + "\n").unwrap();
        eprintln!("{}", serde_json::to_string_pretty(&record).unwrap());
    }
}
