//! MQTT 3.1.1 / 5 publisher (rumqttc), QoS 1, pipelined: up to `max-inflight` PUBLISH
//! packets are out at once and each counts as sent when its PUBACK came (a broker sends
//! PUBACKs in the order of the PUBLISH packets: MQTT 3.1.1 section 4.6, MQTT 5 section 4.6).

use super::{tls, Config, MqttVersion, Publisher, Record};
use std::time::{Duration, Instant};

/// One connection; a lost connection is dropped and a new one made (clean session), and
/// what was not acknowledged is sent again.
pub struct Mqtt {
    rt: tokio::runtime::Runtime,
    client: Client,
    topic: String,
    timeout: Duration,
    window: usize,
    /// Publishes sent and not acknowledged yet.
    unacked: usize,
    /// The last acknowledgement, or the first send after none were pending.
    progress: Instant,
}

enum Client {
    V4(rumqttc::AsyncClient, Box<rumqttc::EventLoop>),
    V5(rumqttc::v5::AsyncClient, Box<rumqttc::v5::EventLoop>),
}

fn transport(config: &Config) -> Result<Option<rumqttc::Transport>, String> {
    if !config.tls() {
        return Ok(None);
    }
    let tls = if config.credentials.tls_insecure {
        rumqttc::TlsConfiguration::Rustls(std::sync::Arc::new(tls::insecure_client_config(config)?))
    } else {
        rumqttc::TlsConfiguration::Simple {
            ca: tls::ca_pem(config)?,
            alpn: None,
            client_auth: tls::client_auth_pem(config)?,
        }
    };
    Ok(Some(rumqttc::Transport::tls_with_config(tls)))
}

/// rumqttc writes and flushes each PUBLISH on its own; with Nagle's algorithm on, every
/// publish after the first of a burst would wait for the broker's delayed TCP ACK (40 ms on
/// Linux). PUBACKs are acknowledgements already, so nothing is gained by coalescing.
fn no_delay(mut n: rumqttc::NetworkOptions) -> rumqttc::NetworkOptions {
    n.set_tcp_nodelay(true);
    n
}

const TIMED_OUT: &str = "the broker did not answer in time";

/// Polls `poll` until `done` says so or the deadline passes.
macro_rules! drive {
    ($rt:expr, $el:expr, $deadline:expr, |$ev:ident| $body:expr) => {{
        $rt.block_on(async {
            loop {
                let left = $deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(TIMED_OUT.to_string());
                }
                match tokio::time::timeout(left, $el.poll()).await {
                    Err(_) => return Err(TIMED_OUT.to_string()),
                    Ok(Err(e)) => return Err(format!("MQTT connection failed: {e}")),
                    Ok(Ok($ev)) => {
                        if let Some(r) = $body {
                            return r;
                        }
                    }
                }
            }
        })
    }};
}

impl Mqtt {
    pub fn connect(config: &Config) -> Result<Self, String> {
        let d = &config.destination;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("could not start the MQTT runtime: {e}"))?;
        let transport = transport(config)?;
        let deadline = Instant::now() + config.timeout;
        // rumqttc's packet ids run up to its inflight limit, so the window is that limit;
        // the request channel never holds more than the window.
        let window = config.max_inflight.clamp(1, u16::MAX as usize);
        let cap = window;
        let client = match d.mqtt_version {
            MqttVersion::V311 => {
                let mut o = rumqttc::MqttOptions::new(&config.client_id, &d.host, d.port);
                o.set_keep_alive(Duration::from_secs(5)).set_clean_session(true);
                o.set_inflight(window as u16);
                o.set_max_packet_size(1 << 20, 64 << 20);
                if let Some(u) = config.username() {
                    o.set_credentials(u, config.password().unwrap_or_default());
                }
                if let Some(t) = transport {
                    o.set_transport(t);
                }
                let (c, mut el) = rumqttc::AsyncClient::new(o, cap);
                el.set_network_options(no_delay(el.network_options()));
                drive!(rt, el, deadline, |ev| match ev {
                    rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(a)) =>
                        Some(if a.code == rumqttc::ConnectReturnCode::Success {
                            Ok(())
                        } else {
                            Err(format!("the MQTT broker refused the connection: {:?}", a.code))
                        }),
                    _ => None,
                })?;
                Client::V4(c, Box::new(el))
            }
            MqttVersion::V5 => {
                use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Packet};
                let mut o = rumqttc::v5::MqttOptions::new(&config.client_id, &d.host, d.port);
                o.set_keep_alive(Duration::from_secs(5)).set_clean_start(true);
                o.set_max_packet_size(Some(64 << 20));
                // The broker's Receive Maximum lowers it further when smaller.
                o.set_outgoing_inflight_upper_limit(window as u16);
                if let Some(u) = config.username() {
                    o.set_credentials(u, config.password().unwrap_or_default());
                }
                if let Some(t) = transport {
                    o.set_transport(t);
                }
                o.set_network_options(no_delay(o.network_options()));
                let (c, mut el) = rumqttc::v5::AsyncClient::new(o, cap);
                drive!(rt, el, deadline, |ev| match ev {
                    rumqttc::v5::Event::Incoming(Packet::ConnAck(a)) =>
                        Some(if a.code == ConnectReturnCode::Success {
                            Ok(())
                        } else {
                            Err(format!("the MQTT broker refused the connection: {:?}", a.code))
                        }),
                    _ => None,
                })?;
                Client::V5(c, Box::new(el))
            }
        };
        Ok(Mqtt {
            rt,
            client,
            topic: d.target.clone(),
            timeout: config.timeout,
            window,
            unacked: 0,
            progress: Instant::now(),
        })
    }
}

impl Publisher for Mqtt {
    fn window(&self) -> usize {
        self.window
    }

    fn send(&mut self, r: &Record) -> Result<(), String> {
        let sent = match &self.client {
            Client::V4(c, _) => c
                .try_publish(&self.topic, rumqttc::QoS::AtLeastOnce, false, r.payload.clone())
                .map_err(|e| e.to_string()),
            Client::V5(c, _) => c
                .try_publish(
                    &self.topic,
                    rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                    false,
                    r.payload.clone(),
                )
                .map_err(|e| e.to_string()),
        };
        sent.map_err(|e| format!("MQTT publish failed: {e}"))?;
        if self.unacked == 0 {
            self.progress = Instant::now();
        }
        self.unacked += 1;
        Ok(())
    }

    /// Drives the connection (writing what was sent, reading PUBACKs) until at least one
    /// PUBACK came or `wait` passed; an error once nothing was acknowledged for `timeout`.
    fn acknowledged(&mut self, wait: Duration) -> Result<usize, String> {
        if self.unacked == 0 {
            return Ok(0);
        }
        let stall = self.progress + self.timeout;
        let until = (Instant::now() + wait).min(stall);
        let mut acked = 0usize;
        let polled: Result<(), String> = match &mut self.client {
            Client::V4(_, el) => drive!(self.rt, el, until, |ev| match ev {
                rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)) => {
                    acked += 1;
                    Some(Ok(()))
                }
                _ => None,
            }),
            Client::V5(_, el) => {
                use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason};
                drive!(self.rt, el, until, |ev| match ev {
                    rumqttc::v5::Event::Incoming(Packet::PubAck(a)) => Some(
                        if matches!(
                            a.reason,
                            PubAckReason::Success | PubAckReason::NoMatchingSubscribers
                        ) {
                            acked += 1;
                            Ok(())
                        } else {
                            Err(format!("the MQTT broker rejected a message: {:?}", a.reason))
                        }
                    ),
                    _ => None,
                })
            }
        };
        match polled {
            Err(e) if e != TIMED_OUT => return Err(e),
            Err(_) if acked == 0 && Instant::now() >= stall => return Err(TIMED_OUT.to_string()),
            _ => {}
        }
        if acked > 0 {
            self.unacked = self.unacked.saturating_sub(acked);
            self.progress = Instant::now();
        }
        Ok(acked)
    }
}
