//! Redis Streams publisher (redis crate): one `XADD <stream> * key <key> payload <json>` per
//! message, up to `batch` of them pipelined in one round trip; the replies are the
//! acknowledgement.

use super::{read_pem, tls, Config, Publisher, Record};

pub struct Redis {
    con: redis::Connection,
    stream: String,
    batch: usize,
    /// The XADDs sent since the last round trip.
    pipe: redis::Pipeline,
    pending: usize,
}

impl Redis {
    pub fn connect(config: &Config) -> Result<Self, String> {
        let d = &config.destination;
        let addr = if config.tls() {
            redis::ConnectionAddr::TcpTls {
                host: d.host.clone(),
                port: d.port,
                insecure: config.credentials.tls_insecure,
                tls_params: None,
            }
        } else {
            redis::ConnectionAddr::Tcp(d.host.clone(), d.port)
        };
        let info = redis::ConnectionInfo {
            addr,
            redis: redis::RedisConnectionInfo {
                username: config.username().map(str::to_string),
                password: config.password().map(str::to_string),
                ..Default::default()
            },
        };
        let client = if config.tls() {
            let client_tls =
                tls::client_auth_pem(config)?.map(|(client_cert, client_key)| redis::ClientTlsConfig {
                    client_cert,
                    client_key,
                });
            // Without tls-ca-file the redis crate verifies against the system's CAs.
            let root_cert = match &config.credentials.tls_ca_file {
                Some(ca) => Some(read_pem(ca, "TLS CA file")?),
                None => None,
            };
            redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls,
                    root_cert,
                },
            )
        } else {
            redis::Client::open(info)
        }
        .map_err(|e| format!("invalid Redis settings: {e}"))?;
        let mut con = client
            .get_connection_with_timeout(config.timeout)
            .map_err(|e| format!("could not connect to Redis: {e}"))?;
        con.set_read_timeout(Some(config.timeout))
            .and_then(|_| con.set_write_timeout(Some(config.timeout)))
            .map_err(|e| format!("could not configure the Redis connection: {e}"))?;
        redis::cmd("PING")
            .query::<String>(&mut con)
            .map_err(|e| format!("Redis does not answer: {e}"))?;
        Ok(Redis {
            con,
            stream: d.target.clone(),
            batch: config.batch.max(1),
            pipe: redis::pipe(),
            pending: 0,
        })
    }
}

impl Publisher for Redis {
    fn window(&self) -> usize {
        self.batch
    }

    fn send(&mut self, r: &Record) -> Result<(), String> {
        self.pipe
            .cmd("XADD")
            .arg(&self.stream)
            .arg("*")
            .arg("key")
            .arg(&r.key)
            .arg("payload")
            .arg(&r.payload[..]);
        self.pending += 1;
        Ok(())
    }

    /// Runs the pipeline: every XADD sent is acknowledged by its reply.
    fn acknowledged(&mut self, _wait: std::time::Duration) -> Result<usize, String> {
        if self.pending == 0 {
            return Ok(0);
        }
        let n = std::mem::take(&mut self.pending);
        let result = self.pipe.query::<Vec<String>>(&mut self.con);
        self.pipe.clear();
        result.map(|_| n).map_err(|e| format!("Redis XADD failed: {e}"))
    }
}
