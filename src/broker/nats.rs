//! NATS JetStream publisher (async-nats): the stream capturing the subject is created when
//! missing; each message carries its key as `Nats-Msg-Id` (JetStream drops duplicates
//! within the stream's duplicate window) and counts as sent when its publish ack came. Up
//! to `batch` publishes go out before their acks are awaited.

use super::{tls, Config, Publisher, Record};
use async_nats::jetstream;
use std::time::Duration;

pub struct Nats {
    rt: tokio::runtime::Runtime,
    js: jetstream::Context,
    subject: String,
    timeout: Duration,
    batch: usize,
    /// Acks of the publishes sent since the last wait, in order.
    acks: Vec<jetstream::context::PublishAckFuture>,
    // Keeps the connection open.
    _client: async_nats::Client,
}

impl Nats {
    pub fn connect(config: &Config) -> Result<Self, String> {
        let d = &config.destination;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("could not start the NATS runtime: {e}"))?;
        let mut opts = async_nats::ConnectOptions::new()
            .name(&config.client_id)
            .connection_timeout(config.timeout)
            .request_timeout(Some(config.timeout))
            .max_reconnects(Some(1));
        if let (Some(u), Some(p)) = (config.username(), config.password()) {
            opts = opts.user_and_password(u.into(), p.into());
        }
        if config.tls() {
            opts = opts.require_tls(true);
            if config.credentials.tls_insecure {
                opts = opts.tls_client_config(tls::insecure_client_config(config)?);
            } else {
                if let Some(ca) = &config.credentials.tls_ca_file {
                    opts = opts.add_root_certificates(ca.clone());
                }
                tls::client_auth_pem(config)?;
                if let (Some(c), Some(k)) = (
                    &config.credentials.tls_cert_file,
                    &config.credentials.tls_key_file,
                ) {
                    opts = opts.add_client_certificate(c.clone(), k.clone());
                }
            }
        }
        let addr = format!("{}:{}", d.host, d.port);
        let stream = d.jetstream_name();
        let subject = d.target.clone();
        let timeout = config.timeout;
        let (client, js) = rt.block_on(async {
            let client = tokio::time::timeout(timeout, opts.connect(addr))
                .await
                .map_err(|_| "the NATS server did not answer in time".to_string())?
                .map_err(|e| format!("could not connect to NATS: {e}"))?;
            let js = jetstream::new(client.clone());
            tokio::time::timeout(
                timeout,
                js.get_or_create_stream(jetstream::stream::Config {
                    name: stream.clone(),
                    subjects: vec![subject.clone()],
                    ..Default::default()
                }),
            )
            .await
            .map_err(|_| "JetStream did not answer in time (is the server started with -js?)".to_string())?
            .map_err(|e| format!("could not create or find the JetStream stream '{stream}': {e}"))?;
            Ok::<_, String>((client, js))
        })?;
        Ok(Nats {
            rt,
            js,
            subject,
            timeout,
            batch: config.batch.max(1),
            acks: Vec::new(),
            _client: client,
        })
    }
}

impl Publisher for Nats {
    fn window(&self) -> usize {
        self.batch
    }

    fn send(&mut self, r: &Record) -> Result<(), String> {
        let p = jetstream::context::Publish::build()
            .payload(r.payload.clone().into())
            .message_id(r.key.as_str());
        let ack = self
            .rt
            .block_on(self.js.send_publish(self.subject.clone(), p))
            .map_err(|e| format!("JetStream publish failed: {e}"))?;
        self.acks.push(ack);
        Ok(())
    }

    /// Waits for every ack of the publishes sent.
    fn acknowledged(&mut self, _wait: Duration) -> Result<usize, String> {
        let acks = std::mem::take(&mut self.acks);
        let (n, timeout) = (acks.len(), self.timeout);
        self.rt.block_on(async {
            for ack in acks {
                tokio::time::timeout(timeout, ack)
                    .await
                    .map_err(|_| "JetStream did not acknowledge in time".to_string())?
                    .map_err(|e| format!("JetStream did not acknowledge: {e}"))?;
            }
            Ok(n)
        })
    }
}
