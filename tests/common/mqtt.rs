//! A mosquitto broker on a free loopback port (Debian's, installed by `scripts/setup.sh`)
//! and a subscriber that keeps every payload.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// mosquitto on 127.0.0.1, killed on drop.
pub struct Mosquitto {
    pub port: u16,
    child: Child,
}

impl Mosquitto {
    /// Starts mosquitto, or `None` (the caller skips) when it is not installed outside CI;
    /// in CI (`CI=true`) a missing mosquitto fails.
    pub fn start(dir: &Path) -> Option<Self> {
        let path = std::env::var("PATH").unwrap_or_default();
        let bin: Option<PathBuf> = path
            .split(':')
            .chain(["/usr/sbin", "/usr/bin"])
            .map(|d| Path::new(d).join("mosquitto"))
            .find(|p| p.is_file());
        let Some(bin) = bin else {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("mosquitto is not installed: scripts/setup.sh installs it");
            }
            eprintln!("SKIPPED: mosquitto is not installed (scripts/setup.sh installs it)");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        std::fs::create_dir_all(dir).expect("broker dir");
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nset_tcp_nodelay true\n"
            ),
        )
        .expect("mosquitto config");
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Mosquitto { port, child })
    }

    /// `mqtt://127.0.0.1:<port>/<topic>`.
    pub fn uri(&self, topic: &str) -> String {
        format!("mqtt://127.0.0.1:{}/{topic}", self.port)
    }

    /// Subscribes to `topic` (QoS 1); returns the payloads received so far, growing.
    pub fn subscribe(&self, topic: &str) -> Arc<Mutex<Vec<Vec<u8>>>> {
        let mut o =
            rumqttc::MqttOptions::new(format!("test-sub-{}", std::process::id()), "127.0.0.1", self.port);
        o.set_keep_alive(Duration::from_secs(5));
        o.set_max_packet_size(64 << 20, 64 << 20);
        subscribe_with(o, topic)
    }
}

/// Connects with `options`, subscribes to `topic` (QoS 1) and returns the payloads received
/// so far, growing; returns once the broker acknowledged the subscription. With a persistent
/// session (clean session off) it reconnects after the connection is lost (a broker
/// restart: the broker kept what it queued for the session), giving up after 30 s without
/// a connection; otherwise it stops at the first error.
pub fn subscribe_with(options: rumqttc::MqttOptions, topic: &str) -> Arc<Mutex<Vec<Vec<u8>>>> {
    let persistent = !options.clean_session();
    let (client, mut conn) = rumqttc::Client::new(options, 100);
    client
        .subscribe(topic, rumqttc::QoS::AtLeastOnce)
        .expect("subscribe");
    let got: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let (g, (tx, rx)) = (got.clone(), std::sync::mpsc::channel());
    std::thread::spawn(move || {
        let _keep = client;
        let mut last_ok = Instant::now();
        for ev in conn.iter() {
            if ev.is_ok() {
                last_ok = Instant::now();
            }
            match ev {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                    let _ = tx.send(());
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                    g.lock().unwrap().push(p.payload.to_vec())
                }
                Ok(_) => {}
                Err(_) if persistent && last_ok.elapsed() < Duration::from_secs(30) => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Err(_) => break,
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(10)).expect("subscribed");
    got
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
