//! Broker URIs: `mqtt://host:port/topic`, `redis://host:port/stream`,
//! `nats://host:port/subject` (TLS: `mqtts://`, `rediss://`, `nats+tls://`).

use std::fmt;

/// Broker protocol of a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// MQTT, QoS 1.
    Mqtt,
    /// Redis Streams (XADD).
    Redis,
    /// NATS JetStream (publish with acknowledgement).
    Nats,
}

/// MQTT protocol version (`?version=5` in the URI; 3.1.1 by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MqttVersion {
    V311,
    V5,
}

/// Where messages go: broker address, destination name and credentials.
#[derive(Clone, PartialEq)]
pub struct Destination {
    pub protocol: Protocol,
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// MQTT topic, Redis stream key or NATS subject.
    pub target: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub mqtt_version: MqttVersion,
    /// JetStream stream that captures the subject (`?stream=NAME`); derived from the
    /// subject when not given.
    pub nats_stream: Option<String>,
}

impl Destination {
    /// Parses a broker URI; the error is a sentence naming what is wrong.
    pub fn parse(uri: &str) -> Result<Self, String> {
        let url =
            url::Url::parse(uri).map_err(|e| format!("'{}' is not a valid URI: {e}", redact_str(uri)))?;
        let (protocol, tls, default_port) = match url.scheme() {
            "mqtt" => (Protocol::Mqtt, false, 1883),
            "mqtts" => (Protocol::Mqtt, true, 8883),
            "redis" => (Protocol::Redis, false, 6379),
            "rediss" => (Protocol::Redis, true, 6379),
            "nats" => (Protocol::Nats, false, 4222),
            "nats+tls" | "tls" => (Protocol::Nats, true, 4222),
            "kafka" => {
                return Err(
                    "kafka:// is not supported: no Kafka-protocol broker can be tested with this \
                            plugin; use mqtt://, redis:// or nats://"
                        .into(),
                )
            }
            other => {
                return Err(format!(
                    "unknown broker scheme '{other}://': use mqtt://, mqtts://, redis://, rediss://, nats:// \
                     or nats+tls://"
                ))
            }
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("'{}' names no broker host", redact_str(uri)))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let target = percent_decode(url.path().trim_start_matches('/'))?;
        if target.is_empty() {
            let what = match protocol {
                Protocol::Mqtt => "an MQTT topic",
                Protocol::Redis => "a Redis stream key",
                Protocol::Nats => "a NATS subject",
            };
            return Err(format!(
                "'{}' names no destination: add {what} as the path, e.g. {}://{host}:{default_port}/trtvision",
                redact_str(uri),
                url.scheme()
            ));
        }
        let mut d = Destination {
            protocol,
            tls,
            host,
            port: url.port().unwrap_or(default_port),
            target,
            username: (!url.username().is_empty())
                .then(|| percent_decode(url.username()))
                .transpose()?,
            password: url.password().map(percent_decode).transpose()?,
            mqtt_version: MqttVersion::V311,
            nats_stream: None,
        };
        for (k, v) in url.query_pairs() {
            match (protocol, &*k) {
                (Protocol::Mqtt, "version") => {
                    d.mqtt_version = match &*v {
                        "3" | "3.1.1" | "4" => MqttVersion::V311,
                        "5" => MqttVersion::V5,
                        _ => {
                            return Err(format!(
                                "MQTT version '{v}' is not supported: use version=3.1.1 or version=5"
                            ))
                        }
                    }
                }
                (Protocol::Nats, "stream") => d.nats_stream = Some(v.into_owned()),
                _ => return Err(format!("unknown URI parameter '{k}' for {}://", url.scheme())),
            }
        }
        Ok(d)
    }

    /// The URI without credentials, for logs and messages.
    pub fn redacted(&self) -> String {
        let scheme = match (self.protocol, self.tls) {
            (Protocol::Mqtt, false) => "mqtt",
            (Protocol::Mqtt, true) => "mqtts",
            (Protocol::Redis, false) => "redis",
            (Protocol::Redis, true) => "rediss",
            (Protocol::Nats, false) => "nats",
            (Protocol::Nats, true) => "nats+tls",
        };
        let creds = if self.username.is_some() || self.password.is_some() {
            "***@"
        } else {
            ""
        };
        format!("{scheme}://{creds}{}:{}/{}", self.host, self.port, self.target)
    }

    /// JetStream stream name: `?stream=` or the subject in upper case with every character
    /// that a stream name cannot hold replaced by `_`.
    pub fn jetstream_name(&self) -> String {
        self.nats_stream.clone().unwrap_or_else(|| {
            self.target
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c.to_ascii_uppercase()
                    } else {
                        '_'
                    }
                })
                .collect()
        })
    }
}

impl fmt::Debug for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

fn percent_decode(s: &str) -> Result<String, String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| "the URI holds percent-encoded bytes that are not UTF-8".to_string())
}

/// `uri` with any `user:password@` replaced by `***@` (for messages about URIs that do not
/// parse).
pub fn redact_str(uri: &str) -> String {
    match (uri.find("://"), uri.rfind('@')) {
        (Some(s), Some(a)) if a > s => format!("{}***{}", &uri[..s + 3], &uri[a..]),
        _ => uri.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_brokers() {
        let m = Destination::parse("mqtt://127.0.0.1:1884/cams/out?version=5").unwrap();
        assert_eq!(
            (m.protocol, m.port, &*m.target, m.mqtt_version),
            (Protocol::Mqtt, 1884, "cams/out", MqttVersion::V5)
        );
        let r = Destination::parse("rediss://u:p%40ss@redis.local/trt").unwrap();
        assert_eq!((r.protocol, r.tls, r.port), (Protocol::Redis, true, 6379));
        assert_eq!(
            (r.username.as_deref(), r.password.as_deref()),
            (Some("u"), Some("p@ss"))
        );
        let n = Destination::parse("nats://h/trt.frames").unwrap();
        assert_eq!(
            (n.protocol, n.port, n.jetstream_name()),
            (Protocol::Nats, 4222, "TRT_FRAMES".to_string())
        );
        let s = Destination::parse("nats://h/a?stream=S1").unwrap();
        assert_eq!(s.jetstream_name(), "S1");
    }

    #[test]
    fn credentials_never_show() {
        let d = Destination::parse("mqtt://alice:secret@h:1/t").unwrap();
        assert_eq!(d.redacted(), "mqtt://***@h:1/t");
        assert!(!format!("{d:?} {d}").contains("secret"));
        let e = Destination::parse("mqtt://alice:secret@h:1/").unwrap_err();
        assert!(!e.contains("secret"), "{e}");
        assert_eq!(redact_str("x://a:b@c/d"), "x://***@c/d");
    }

    #[test]
    fn bad_uris_say_why() {
        assert!(Destination::parse("kafka://h/t")
            .unwrap_err()
            .contains("not supported"));
        assert!(Destination::parse("amqp://h/t")
            .unwrap_err()
            .contains("unknown broker scheme"));
        assert!(Destination::parse("mqtt://h:1883")
            .unwrap_err()
            .contains("MQTT topic"));
        assert!(Destination::parse("mqtt://h/t?version=7")
            .unwrap_err()
            .contains("version"));
        assert!(Destination::parse("mqtt://h/t?qos=2")
            .unwrap_err()
            .contains("unknown URI parameter"));
        assert!(Destination::parse("not a uri").is_err());
    }
}
