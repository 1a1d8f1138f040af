//! Delivery of encoded messages to a broker without ever blocking the producer on the
//! network.
//!
//! [`Sender::push`] (called on the streaming thread) puts a message into a bounded
//! in-memory queue; a sender thread drains it and publishes with acknowledgement (MQTT QoS 1
//! PUBACK, Redis XADD reply, JetStream publish ack), keeping up to [`Publisher::window`]
//! messages in flight: sent, acknowledgement pending. While the
//! broker is down or slower than the producer, the queue fills and further messages are
//! appended to the on-disk [`Spool`]; once anything is spooled, new messages go behind it, so
//! order is kept: in flight, then queue, then spool (replayed when the queue is empty).
//! Only a full spool (or none configured) drops messages, counted in [`Counters::dropped`].
//! Delivery is at least once: messages whose acknowledgement did not come are sent again
//! (in order, on a new connection), and consumers deduplicate by key.

mod destination;
mod mqtt;
mod nats;
mod redis;
mod spool;
mod tls;

pub use destination::{redact_str, Destination, MqttVersion, Protocol};
pub use spool::Spool;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One message to deliver.
#[derive(Debug, Clone)]
pub struct Record {
    pub key: String,
    pub payload: Vec<u8>,
    /// When it was handed to the sender (latency measurement).
    pub enqueued: Instant,
}

impl Record {
    pub fn new(key: String, payload: Vec<u8>) -> Self {
        Record {
            key,
            payload,
            enqueued: Instant::now(),
        }
    }
}

/// Connection settings besides the URI.
#[derive(Clone, Default)]
pub struct Credentials {
    pub username: Option<String>,
    pub password: Option<String>,
    /// PEM file with the CA certificates that sign the broker's certificate (turns TLS on).
    pub tls_ca_file: Option<PathBuf>,
    /// PEM client certificate and key for brokers that require client authentication.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// Accept any broker certificate (the connection is encrypted but the broker not
    /// identified): for test brokers only.
    pub tls_insecure: bool,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username.as_ref().map(|_| "***"))
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_cert_file", &self.tls_cert_file)
            .field("tls_key_file", &self.tls_key_file)
            .field("tls_insecure", &self.tls_insecure)
            .finish()
    }
}

/// Everything the sender needs.
#[derive(Debug, Clone)]
pub struct Config {
    pub destination: Destination,
    pub credentials: Credentials,
    /// MQTT client id / NATS connection name.
    pub client_id: String,
    /// Messages held in memory before the spool takes them.
    pub queue_size: usize,
    /// Spool directory and file name; `None`: no spool (a full queue drops).
    pub spool: Option<(PathBuf, String)>,
    pub spool_max_bytes: u64,
    /// Messages per publish round trip (Redis, NATS).
    pub batch: usize,
    /// MQTT: QoS 1 publishes sent and not yet acknowledged, at most.
    pub max_inflight: usize,
    /// Limit of one connection attempt, and of waiting for the next acknowledgement while
    /// messages are in flight.
    pub timeout: Duration,
    /// Keep up to this many frame->broker latencies (0: none), for measurements.
    pub latency_samples: usize,
}

impl Config {
    pub fn new(destination: Destination) -> Self {
        Config {
            destination,
            credentials: Credentials::default(),
            client_id: "trtvision".into(),
            queue_size: 1024,
            spool: None,
            spool_max_bytes: 256 << 20,
            batch: 64,
            max_inflight: 256,
            timeout: Duration::from_secs(2),
            latency_samples: 0,
        }
    }

    fn username(&self) -> Option<&str> {
        self.credentials
            .username
            .as_deref()
            .or(self.destination.username.as_deref())
    }

    fn password(&self) -> Option<&str> {
        self.credentials
            .password
            .as_deref()
            .or(self.destination.password.as_deref())
    }

    fn tls(&self) -> bool {
        self.destination.tls || self.credentials.tls_ca_file.is_some()
    }
}

/// Delivery counters (all monotonic).
#[derive(Debug, Default)]
pub struct Counters {
    /// Messages acknowledged by the broker (replayed ones included).
    pub sent: AtomicU64,
    /// Messages written to the spool.
    pub spooled: AtomicU64,
    /// Spooled messages acknowledged by the broker.
    pub replayed: AtomicU64,
    /// Messages lost: spool full or missing.
    pub dropped: AtomicU64,
}

impl Counters {
    pub fn get(&self) -> (u64, u64, u64, u64) {
        (
            self.sent.load(Ordering::Relaxed),
            self.spooled.load(Ordering::Relaxed),
            self.replayed.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
        )
    }
}

/// What the sender tells its owner (the element posts them as element messages).
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    Connected,
    /// Connection lost or refused, with the reason.
    Disconnected(String),
    /// Messages dropped so far (posted at most once a second).
    Dropped(u64),
    /// The spool could not be read or written.
    SpoolError(String),
}

/// A connected broker client. The sender keeps at most [`Publisher::window`] messages sent
/// and not yet acknowledged; after an error it drops the client and sends every
/// unacknowledged message again, in order, on a new connection.
pub trait Publisher: Send {
    /// How many messages may be in flight at once.
    fn window(&self) -> usize;
    /// Sends `record` after those sent before; its acknowledgement comes through
    /// [`Publisher::acknowledged`].
    fn send(&mut self, record: &Record) -> Result<(), String>;
    /// Waits at most `wait` for acknowledgements and returns how many of the oldest
    /// unacknowledged messages the broker acknowledged since the last call (0: none yet).
    /// An error when the connection failed or nothing was acknowledged within the
    /// configured timeout.
    fn acknowledged(&mut self, wait: Duration) -> Result<usize, String>;
}

/// Connects to the configured broker.
pub fn connect(config: &Config) -> Result<Box<dyn Publisher>, String> {
    install_crypto_provider();
    match config.destination.protocol {
        Protocol::Mqtt => Ok(Box::new(mqtt::Mqtt::connect(config)?)),
        Protocol::Redis => Ok(Box::new(redis::Redis::connect(config)?)),
        Protocol::Nats => Ok(Box::new(nats::Nats::connect(config)?)),
    }
}

/// rustls with *ring* (aws-lc-rs would need CMake and NASM to build); rustls deprecates the
/// ring provider only for lacking post-quantum key exchange, which brokers do not offer yet.
#[allow(deprecated)]
fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // Another part of the process may have installed one already; either is fine.
    ONCE.call_once(|| drop(rustls::crypto::ring::default_provider().install_default()));
}

/// Reads a PEM file named by a property, with a sentence on failure.
fn read_pem(path: &std::path::Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("could not read the {what} '{}': {e}", path.display()))
}

type Notify = Arc<dyn Fn(Notice) + Send + Sync>;
/// Makes a publisher ([`connect`], or a stand-in in tests).
pub type Connector = Arc<dyn Fn(&Config) -> Result<Box<dyn Publisher>, String> + Send + Sync>;

struct Shared {
    queue: VecDeque<Record>,
    spool: Option<Spool>,
    /// The sender thread holds no message (queue and spool may still hold some).
    idle: bool,
    stop: bool,
    last_drop_notice: Option<Instant>,
}

struct Inner {
    state: Mutex<Shared>,
    cond: Condvar,
    counters: Counters,
    /// Messages sent and not acknowledged yet, now and at most so far.
    in_flight: AtomicUsize,
    peak_in_flight: AtomicUsize,
    latencies: Mutex<Vec<Duration>>,
    config: Config,
    notify: Notify,
    connector: Connector,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The delivery machinery of one element: queue, spool and sender thread.
pub struct Sender {
    inner: Arc<Inner>,
    thread: Option<std::thread::JoinHandle<Vec<Record>>>,
}

impl Sender {
    /// Opens the spool (replaying what an earlier run left there) and starts the sender
    /// thread. `notify` is called from the sender thread and from [`Sender::push`].
    pub fn start(config: Config, notify: impl Fn(Notice) + Send + Sync + 'static) -> Result<Self, String> {
        Self::start_with(config, Arc::new(connect), notify)
    }

    /// [`Sender::start`] with another way to make publishers.
    pub fn start_with(
        config: Config,
        connector: Connector,
        notify: impl Fn(Notice) + Send + Sync + 'static,
    ) -> Result<Self, String> {
        let spool = match &config.spool {
            Some((dir, name)) => Some(
                Spool::open(dir, name, config.spool_max_bytes)
                    .map_err(|e| format!("could not open the spool in '{}': {e}", dir.display()))?,
            ),
            None => None,
        };
        let inner = Arc::new(Inner {
            state: Mutex::new(Shared {
                queue: VecDeque::with_capacity(config.queue_size),
                spool,
                idle: true,
                stop: false,
                last_drop_notice: None,
            }),
            cond: Condvar::new(),
            counters: Counters::default(),
            in_flight: AtomicUsize::new(0),
            peak_in_flight: AtomicUsize::new(0),
            latencies: Mutex::new(Vec::new()),
            config,
            notify: Arc::new(notify),
            connector,
        });
        let thread_inner = inner.clone();
        let thread = std::thread::Builder::new()
            .name("trtmsgbroker".into())
            .spawn(move || run(&thread_inner))
            .map_err(|e| format!("could not start the sender thread: {e}"))?;
        Ok(Sender {
            inner,
            thread: Some(thread),
        })
    }

    /// Hands a message over; never waits for the network (at most a local disk append).
    pub fn push(&self, key: String, payload: Vec<u8>) {
        let inner = &self.inner;
        let mut s = inner.lock();
        let spooling = s.spool.as_ref().is_some_and(|sp| !sp.is_empty());
        if !spooling && s.queue.len() < inner.config.queue_size {
            s.queue.push_back(Record::new(key, payload));
            drop(s);
            inner.cond.notify_all();
            return;
        }
        let mut error = None;
        let kept = match s.spool.as_mut() {
            Some(sp) => match sp.append(&key, &payload) {
                Ok(kept) => kept,
                Err(e) => {
                    error = Some(format!(
                        "could not write to the spool '{}': {e}",
                        sp.path().display()
                    ));
                    false
                }
            },
            None => false,
        };
        let mut notice = None;
        if kept {
            inner.counters.spooled.fetch_add(1, Ordering::Relaxed);
        } else {
            let dropped = inner.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            let now = Instant::now();
            if s.last_drop_notice
                .is_none_or(|t| now - t >= Duration::from_secs(1))
            {
                s.last_drop_notice = Some(now);
                notice = Some(Notice::Dropped(dropped));
            }
        }
        drop(s);
        inner.cond.notify_all();
        if let Some(e) = error {
            (inner.notify)(Notice::SpoolError(e));
        }
        if let Some(n) = notice {
            (inner.notify)(n);
        }
    }

    pub fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    /// Messages waiting: in memory (queue) and in the spool.
    pub fn pending(&self) -> (usize, usize) {
        let s = self.inner.lock();
        (s.queue.len(), s.spool.as_ref().map_or(0, |sp| sp.records()))
    }

    /// Messages sent to the broker and not acknowledged yet.
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::Relaxed)
    }

    /// The most messages that were in flight at once so far.
    pub fn peak_in_flight(&self) -> usize {
        self.inner.peak_in_flight.load(Ordering::Relaxed)
    }

    /// Frame->broker latencies recorded so far (with `latency_samples`), emptied.
    pub fn take_latencies(&self) -> Vec<Duration> {
        std::mem::take(&mut *self.inner.latencies.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Waits until every message was acknowledged, at most `timeout`; whether it was.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = self.inner.lock();
        loop {
            let empty = s.queue.is_empty() && s.idle && s.spool.as_ref().is_none_or(|sp| sp.is_empty());
            let now = Instant::now();
            if empty || now >= deadline {
                return empty;
            }
            s = self
                .inner
                .cond
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Stops the sender thread (within the connection/ack timeout). What was not sent goes
    /// to the spool in order, or is dropped (counted) without one. Returns how many
    /// messages were left unsent, and the final counters (sent, spooled, replayed, dropped).
    pub fn stop(mut self) -> (usize, (u64, u64, u64, u64)) {
        let unsent = self.shutdown();
        (unsent, self.inner.counters.get())
    }

    fn shutdown(&mut self) -> usize {
        let Some(thread) = self.thread.take() else {
            return 0;
        };
        self.inner.lock().stop = true;
        self.inner.cond.notify_all();
        let inflight = thread.join().unwrap_or_default();
        let mut s = self.inner.lock();
        let mut left: Vec<Record> = inflight;
        left.extend(s.queue.drain(..));
        let unsent = left.len() + s.spool.as_ref().map_or(0, |sp| sp.records());
        match s.spool.as_mut() {
            Some(sp) => {
                let n = left.len() as u64;
                match sp.prepend(&left).and_then(|_| sp.sync()) {
                    Ok(()) => {
                        self.inner.counters.spooled.fetch_add(n, Ordering::Relaxed);
                    }
                    Err(e) => {
                        self.inner.counters.dropped.fetch_add(n, Ordering::Relaxed);
                        let msg = format!("could not write to the spool '{}': {e}", sp.path().display());
                        drop(s);
                        (self.inner.notify)(Notice::SpoolError(msg));
                    }
                }
            }
            None => {
                let n = left.len() as u64;
                if n > 0 {
                    let dropped = self.inner.counters.dropped.fetch_add(n, Ordering::Relaxed) + n;
                    drop(s);
                    (self.inner.notify)(Notice::Dropped(dropped));
                }
            }
        }
        unsent
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// One message the sender thread holds until the broker acknowledged it.
struct InFlight {
    record: Record,
    /// `Some(bytes)` when the record is in the spool (still stored there, `bytes` long).
    from_spool: Option<u64>,
}

/// The messages in flight, oldest first: in-memory ones, then spooled ones (the queue is
/// older than the spool, and nothing enters the queue while the spool holds messages).
#[derive(Default)]
struct Window {
    flights: VecDeque<InFlight>,
    /// How many of `flights` were sent on the current connection.
    sent: usize,
    /// Spool bytes taken by `flights` (where the next spool read starts).
    spool_bytes: u64,
}

impl Window {
    /// Takes messages until `limit` are in flight: from the queue first, then the spool.
    /// Returns a spool read error.
    fn refill(&mut self, s: &mut Shared, limit: usize) -> Result<(), String> {
        let room = limit.saturating_sub(self.flights.len());
        if room == 0 {
            return Ok(());
        }
        if !s.queue.is_empty() {
            let n = s.queue.len().min(room);
            self.flights.extend(s.queue.drain(..n).map(|record| InFlight {
                record,
                from_spool: None,
            }));
            return Ok(());
        }
        if let Some(sp) = s.spool.as_ref().filter(|sp| !sp.is_empty()) {
            let more = sp
                .peek_after(self.spool_bytes, room)
                .map_err(|e| format!("could not read the spool '{}': {e}", sp.path().display()))?;
            for (record, bytes) in more {
                self.spool_bytes += bytes;
                self.flights.push_back(InFlight {
                    record,
                    from_spool: Some(bytes),
                });
            }
        }
        Ok(())
    }

    /// The in-memory records still in flight (spooled ones stay in the spool).
    fn into_memory(self) -> Vec<Record> {
        self.flights
            .into_iter()
            .filter(|f| f.from_spool.is_none())
            .map(|f| f.record)
            .collect()
    }
}

/// The sender thread; returns the in-memory messages it still held when stopped.
fn run(inner: &Inner) -> Vec<Record> {
    let config = &inner.config;
    let mut publisher: Option<Box<dyn Publisher>> = None;
    let mut connected: Option<bool> = None;
    let mut backoff = Duration::from_millis(100);
    let mut w = Window::default();
    loop {
        // 1. Something to send: the queue first (older), then the spool. At stop, only what
        //    is in flight is finished.
        let limit = publisher
            .as_ref()
            .map_or(config.max_inflight.max(1), |p| p.window().max(1));
        {
            let mut s = inner.lock();
            loop {
                if s.stop && w.flights.is_empty() {
                    s.idle = true;
                    return Vec::new();
                }
                if !s.stop {
                    if let Err(msg) = w.refill(&mut s, limit) {
                        drop(s);
                        (inner.notify)(Notice::SpoolError(msg));
                        s = inner.lock();
                        if w.flights.is_empty() {
                            s = inner
                                .cond
                                .wait_timeout(s, Duration::from_secs(1))
                                .unwrap_or_else(|e| e.into_inner())
                                .0;
                            continue;
                        }
                    }
                }
                if !w.flights.is_empty() {
                    break;
                }
                s.idle = true;
                inner.cond.notify_all();
                s = inner
                    .cond
                    .wait_timeout(s, Duration::from_millis(200))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            s.idle = false;
        }

        // 2. A connection.
        if publisher.is_none() {
            match (inner.connector)(config) {
                Ok(p) => {
                    publisher = Some(p);
                    w.sent = 0;
                    backoff = Duration::from_millis(100);
                    if connected != Some(true) {
                        connected = Some(true);
                        (inner.notify)(Notice::Connected);
                    }
                }
                Err(e) => {
                    if connected != Some(false) {
                        connected = Some(false);
                        (inner.notify)(Notice::Disconnected(e));
                    }
                    if wait_or_stop(inner, backoff) {
                        return w.into_memory();
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            }
        }
        let Some(p) = publisher.as_mut() else { continue };

        // 3. Send what is not sent yet, then take the acknowledgements that came. With room
        //    in the window, look at the queue again soon; with a full one, wait longer.
        let upto = w.flights.len().min(p.window().max(1));
        let mut result = w
            .flights
            .range(w.sent.min(upto)..upto)
            .try_for_each(|f| p.send(&f.record));
        if result.is_ok() {
            w.sent = upto;
        }
        inner.in_flight.store(w.sent, Ordering::Relaxed);
        inner.peak_in_flight.fetch_max(w.sent, Ordering::Relaxed);
        let wait = if w.sent < p.window() {
            Duration::from_millis(1)
        } else {
            Duration::from_millis(100)
        };
        let acked = match result {
            Ok(()) => p.acknowledged(wait),
            Err(e) => Err(e),
        };
        result = acked.map(|n| acknowledge(inner, &mut w, n));
        if let Err(e) = result {
            publisher = None;
            inner.in_flight.store(0, Ordering::Relaxed);
            if connected != Some(false) {
                connected = Some(false);
                (inner.notify)(Notice::Disconnected(e));
            }
            if wait_or_stop(inner, backoff) {
                return w.into_memory();
            }
        }
    }
}

/// Counts the `n` oldest messages in flight as sent and lets go of them (out of the spool
/// for spooled ones).
fn acknowledge(inner: &Inner, w: &mut Window, n: usize) {
    if n == 0 {
        return;
    }
    let n = n.min(w.flights.len());
    let config = &inner.config;
    let done: Vec<InFlight> = w.flights.drain(..n).collect();
    w.sent = w.sent.saturating_sub(n);
    inner.in_flight.store(w.sent, Ordering::Relaxed);
    inner.counters.sent.fetch_add(n as u64, Ordering::Relaxed);
    let now = Instant::now();
    if config.latency_samples > 0 {
        let mut l = inner.latencies.lock().unwrap_or_else(|e| e.into_inner());
        for f in done.iter().filter(|f| f.from_spool.is_none()) {
            if l.len() < config.latency_samples {
                l.push(now - f.record.enqueued);
            }
        }
    }
    let (replayed, bytes) = done
        .iter()
        .filter_map(|f| f.from_spool)
        .fold((0usize, 0u64), |(n, b), bytes| (n + 1, b + bytes));
    if replayed == 0 {
        return;
    }
    w.spool_bytes = w.spool_bytes.saturating_sub(bytes);
    let mut s = inner.lock();
    if let Some(sp) = s.spool.as_mut() {
        if let Err(e) = sp.consume(replayed, bytes) {
            let msg = format!("could not update the spool '{}': {e}", sp.path().display());
            drop(s);
            (inner.notify)(Notice::SpoolError(msg));
        }
    }
    inner
        .counters
        .replayed
        .fetch_add(replayed as u64, Ordering::Relaxed);
}

/// Waits `d` unless asked to stop; whether it was.
fn wait_or_stop(inner: &Inner, d: Duration) -> bool {
    let deadline = Instant::now() + d;
    let mut s = inner.lock();
    while !s.stop {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        s = inner
            .cond
            .wait_timeout(s, deadline - now)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    true
}

#[cfg(test)]
mod tests;
