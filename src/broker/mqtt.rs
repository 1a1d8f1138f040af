//! MQTT 3.1.1 / 5 publisher (rumqttc), QoS 1: a batch counts as sent when every PUBACK came.

use super::{tls, Config, MqttVersion, Publisher, Record};
use std::time::{Duration, Instant};

/// One connection; a lost connection is dropped and a new one made (clean session), so a
/// batch is either acknowledged or sent again whole.
pub struct Mqtt {
    rt: tokio::runtime::Runtime,
    client: Client,
    topic: String,
    timeout: Duration,
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
/// publish after the first of a batch waits for the broker's delayed TCP ACK (40 ms on
/// Linux), which capped a batch of 64 at ~1,400 messages/s. PUBACKs are acknowledgements
/// already, so nothing is gained by coalescing.
fn no_delay(mut n: rumqttc::NetworkOptions) -> rumqttc::NetworkOptions {
    n.set_tcp_nodelay(true);
    n
}

/// Polls `poll` until `done` says so or the deadline passes.
macro_rules! drive {
    ($rt:expr, $el:expr, $deadline:expr, |$ev:ident| $body:expr) => {{
        $rt.block_on(async {
            loop {
                let left = $deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err("the broker did not answer in time".to_string());
                }
                match tokio::time::timeout(left, $el.poll()).await {
                    Err(_) => return Err("the broker did not answer in time".to_string()),
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
        let cap = config.batch.max(1) * 2;
        let client = match d.mqtt_version {
            MqttVersion::V311 => {
                let mut o = rumqttc::MqttOptions::new(&config.client_id, &d.host, d.port);
                o.set_keep_alive(Duration::from_secs(5)).set_clean_session(true);
                o.set_inflight(cap.min(u16::MAX as usize) as u16);
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
        })
    }
}

impl Publisher for Mqtt {
    fn publish(&mut self, records: &[Record]) -> Result<(), String> {
        let deadline = Instant::now() + self.timeout;
        let total = records.len();
        let mut acked = 0usize;
        match &mut self.client {
            Client::V4(c, el) => {
                for r in records {
                    c.try_publish(&self.topic, rumqttc::QoS::AtLeastOnce, false, r.payload.clone())
                        .map_err(|e| format!("MQTT publish failed: {e}"))?;
                }
                drive!(self.rt, el, deadline, |ev| match ev {
                    rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)) => {
                        acked += 1;
                        (acked == total).then_some(Ok(()))
                    }
                    _ => None,
                })
            }
            Client::V5(c, el) => {
                use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason};
                for r in records {
                    c.try_publish(
                        &self.topic,
                        rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                        false,
                        r.payload.clone(),
                    )
                    .map_err(|e| format!("MQTT publish failed: {e}"))?;
                }
                drive!(self.rt, el, deadline, |ev| match ev {
                    rumqttc::v5::Event::Incoming(Packet::PubAck(a)) => {
                        if !matches!(
                            a.reason,
                            PubAckReason::Success | PubAckReason::NoMatchingSubscribers
                        ) {
                            Some(Err(format!("the MQTT broker rejected a message: {:?}", a.reason)))
                        } else {
                            acked += 1;
                            (acked == total).then_some(Ok(()))
                        }
                    }
                    _ => None,
                })
            }
        }
    }
}
