use super::*;
use std::sync::atomic::AtomicBool;

/// A broker stand-in: stores what it acknowledges; `up` switches it on and off. Each
/// connection acknowledges up to `acks_per_call` of what was sent per call; `break_after`
/// makes a connection fail once that many messages were acknowledged in all (a broker
/// restart with messages in flight).
#[derive(Clone, Default)]
struct Fake {
    up: Arc<AtomicBool>,
    got: Arc<Mutex<Vec<String>>>,
    /// Every message that reached the broker, acknowledged or not.
    received: Arc<Mutex<Vec<String>>>,
    break_after: Arc<Mutex<Option<usize>>>,
    window: usize,
    acks_per_call: usize,
    /// This connection's unacknowledged messages.
    pending: VecDeque<String>,
}

impl Fake {
    fn windowed(window: usize, acks_per_call: usize) -> Self {
        Fake {
            window,
            acks_per_call,
            ..Fake::default()
        }
    }
}

impl Publisher for Fake {
    fn window(&self) -> usize {
        if self.window == 0 {
            4
        } else {
            self.window
        }
    }

    fn send(&mut self, r: &Record) -> Result<(), String> {
        if !self.up.load(Ordering::SeqCst) {
            return Err("down".into());
        }
        assert!(self.pending.len() < self.window(), "the window is respected");
        self.pending.push_back(r.key.clone());
        self.received.lock().unwrap().push(r.key.clone());
        Ok(())
    }

    fn acknowledged(&mut self, _wait: Duration) -> Result<usize, String> {
        if !self.up.load(Ordering::SeqCst) {
            return Err("down".into());
        }
        let mut got = self.got.lock().unwrap();
        let mut brk = self.break_after.lock().unwrap();
        if brk.is_some_and(|n| got.len() >= n) {
            *brk = None;
            return Err("connection reset".into());
        }
        let per_call = if self.acks_per_call == 0 {
            usize::MAX
        } else {
            self.acks_per_call
        };
        let n = self.pending.len().min(per_call);
        got.extend(self.pending.drain(..n));
        Ok(n)
    }
}

fn connector(f: &Fake) -> Connector {
    let f = f.clone();
    Arc::new(move |_: &Config| {
        if f.up.load(Ordering::SeqCst) {
            let mut c = f.clone();
            c.pending.clear();
            Ok(Box::new(c) as Box<dyn Publisher>)
        } else {
            Err("refused".into())
        }
    })
}

fn config(spool: Option<&str>, queue: usize, max: u64) -> Config {
    let mut c = Config::new(Destination::parse("mqtt://127.0.0.1:1/t").unwrap());
    c.queue_size = queue;
    c.batch = 4;
    c.spool_max_bytes = max;
    c.spool = spool.map(|tag| {
        let d = std::env::temp_dir().join(format!("trtvision-sender-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        (d, "s".to_string())
    });
    c
}

fn keys(n: std::ops::Range<usize>) -> Vec<String> {
    n.map(|i| format!("k{i:04}")).collect()
}

#[test]
fn outage_spools_and_replays_in_order() {
    let fake = Fake::default();
    let notices = Arc::new(Mutex::new(Vec::new()));
    let n2 = notices.clone();
    let s = Sender::start_with(config(Some("outage"), 8, 1 << 20), connector(&fake), move |n| {
        n2.lock().unwrap().push(n)
    })
    .unwrap();
    // Broker down: every push returns at once; beyond the queue, messages are spooled.
    let t = Instant::now();
    for k in keys(0..100) {
        s.push(k, vec![b'x'; 10]);
    }
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "push never waits for the broker"
    );
    assert!(!s.flush(Duration::from_millis(300)));
    let (_, spooled, _, dropped) = s.counters().get();
    assert!(spooled >= 88, "spooled {spooled}");
    assert_eq!(dropped, 0);
    // Broker back: everything arrives, in order.
    fake.up.store(true, Ordering::SeqCst);
    assert!(s.flush(Duration::from_secs(10)), "drained");
    for k in keys(100..110) {
        s.push(k, vec![b'x'; 10]);
    }
    assert!(s.flush(Duration::from_secs(10)));
    assert_eq!(*fake.got.lock().unwrap(), keys(0..110));
    let (sent, spooled, replayed, _) = s.counters().get();
    assert_eq!((sent, replayed), (110, spooled));
    let notices = notices.lock().unwrap();
    assert!(matches!(notices[0], Notice::Disconnected(_)), "{notices:?}");
    assert!(notices.contains(&Notice::Connected));
}

#[test]
fn full_spool_drops_and_counts() {
    let fake = Fake::default();
    let notices = Arc::new(Mutex::new(Vec::new()));
    let n2 = notices.clone();
    // 8 in memory, 10 records of 8 + 5 + 10 bytes on disk.
    let s = Sender::start_with(config(Some("full"), 8, 230), connector(&fake), move |n| {
        n2.lock().unwrap().push(n)
    })
    .unwrap();
    for k in keys(0..50) {
        s.push(k, vec![b'x'; 10]);
    }
    let (_, spooled, _, dropped) = s.counters().get();
    assert_eq!(spooled, 10);
    assert!(dropped >= 50 - 8 - 10 - 4, "dropped {dropped}");
    assert!(notices
        .lock()
        .unwrap()
        .iter()
        .any(|n| matches!(n, Notice::Dropped(_))));
    fake.up.store(true, Ordering::SeqCst);
    assert!(s.flush(Duration::from_secs(10)));
    let got = fake.got.lock().unwrap().clone();
    assert_eq!(got.len() as u64 + dropped, 50);
    let mut sorted = got.clone();
    sorted.sort();
    assert_eq!(got, sorted, "order kept");
}

#[test]
fn no_spool_drops_when_the_queue_is_full() {
    let fake = Fake::default();
    let s = Sender::start_with(config(None, 4, 0), connector(&fake), |_| {}).unwrap();
    for k in keys(0..20) {
        s.push(k, vec![]);
    }
    let (_, spooled, _, dropped) = s.counters().get();
    assert_eq!(spooled, 0);
    assert!(dropped >= 12, "dropped {dropped}");
    drop(s);
}

#[test]
fn stop_keeps_unsent_messages_in_the_spool_for_the_next_run() {
    let fake = Fake::default();
    let c = config(Some("restart"), 8, 1 << 20);
    let s = Sender::start_with(c.clone(), connector(&fake), |_| {}).unwrap();
    for k in keys(0..30) {
        s.push(k, vec![b'y'; 3]);
    }
    assert_eq!(s.stop().0, 30);
    // Next run: broker up, the spool is replayed first, in order.
    fake.up.store(true, Ordering::SeqCst);
    let s = Sender::start_with(c, connector(&fake), |_| {}).unwrap();
    for k in keys(30..35) {
        s.push(k, vec![b'y'; 3]);
    }
    assert!(s.flush(Duration::from_secs(10)));
    assert_eq!(*fake.got.lock().unwrap(), keys(0..35));
}

#[test]
fn a_window_of_messages_in_flight_and_a_lost_connection_loses_none() {
    let fake = Fake::windowed(16, 3);
    fake.up.store(true, Ordering::SeqCst);
    *fake.break_after.lock().unwrap() = Some(40);
    let mut c = config(Some("window"), 64, 1 << 20);
    c.max_inflight = 16;
    let s = Sender::start_with(c, connector(&fake), |_| {}).unwrap();
    for k in keys(0..200) {
        s.push(k, vec![b'z'; 5]);
    }
    assert!(s.flush(Duration::from_secs(10)));
    // The window filled (several sends before the first acknowledgement), never beyond.
    assert_eq!(s.peak_in_flight(), 16);
    assert_eq!(s.in_flight(), 0);
    // Every message acknowledged exactly once, in order; the broker saw the ones in
    // flight at the reset twice (at least once), and nothing else was repeated.
    assert_eq!(*fake.got.lock().unwrap(), keys(0..200));
    let received = fake.received.lock().unwrap().clone();
    let mut first_seen = Vec::new();
    for k in &received {
        if !first_seen.contains(k) {
            first_seen.push(k.clone());
        }
    }
    assert_eq!(first_seen, keys(0..200), "order of first arrival");
    let repeated = received.len() - 200;
    assert!((1..=16).contains(&repeated), "{repeated} sent again");
    let (sent, spooled, replayed, dropped) = s.counters().get();
    assert_eq!(sent, 200);
    assert_eq!(replayed, spooled);
    assert_eq!(dropped, 0);
}

#[test]
fn spooled_messages_are_replayed_through_the_window_in_order() {
    let fake = Fake::windowed(5, 2);
    let mut c = config(Some("window-spool"), 4, 1 << 20);
    c.max_inflight = 5;
    let s = Sender::start_with(c, connector(&fake), |_| {}).unwrap();
    for k in keys(0..60) {
        s.push(k, vec![b'w'; 7]);
    }
    assert!(s.counters().get().1 >= 50, "spooled while down");
    fake.up.store(true, Ordering::SeqCst);
    *fake.break_after.lock().unwrap() = Some(23);
    assert!(s.flush(Duration::from_secs(10)));
    assert_eq!(*fake.got.lock().unwrap(), keys(0..60));
    let (sent, spooled, replayed, dropped) = s.counters().get();
    assert_eq!((sent, replayed, dropped), (60, spooled, 0));
    assert_eq!(s.peak_in_flight(), 5);
}
