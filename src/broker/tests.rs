use super::*;
use std::sync::atomic::AtomicBool;

/// A broker stand-in: stores what it acknowledges; `up` switches it on and off.
#[derive(Clone, Default)]
struct Fake {
    up: Arc<AtomicBool>,
    got: Arc<Mutex<Vec<String>>>,
}

impl Publisher for Fake {
    fn publish(&mut self, records: &[Record]) -> Result<(), String> {
        if !self.up.load(Ordering::SeqCst) {
            return Err("down".into());
        }
        self.got
            .lock()
            .unwrap()
            .extend(records.iter().map(|r| r.key.clone()));
        Ok(())
    }
}

fn connector(f: &Fake) -> Connector {
    let f = f.clone();
    Arc::new(move |_: &Config| {
        if f.up.load(Ordering::SeqCst) {
            Ok(Box::new(f.clone()) as Box<dyn Publisher>)
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
