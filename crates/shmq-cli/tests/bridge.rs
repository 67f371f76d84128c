//! `shmq bridge out` and `shmq bridge in` against a real `nats-server -js`
//! on loopback: a round trip across two queue files, each direction
//! SIGKILLed mid-flight many times with a ledger of what must arrive, a
//! full local queue that stops the pull and resumes, and the server
//! restarted mid-flight.
//!
//! Each test starts its own server on a free port with a store directory
//! of its own, and kills it at the end. Without `nats-server` on the PATH
//! the tests say so and pass, unless `SHMQ_REQUIRE_NATS=1` (set by
//! tests/run-all.sh once it installed the server), when they fail.
//! `SHMQ_BRIDGE_KILLS` sets the number of kills (default 100).

use std::collections::{BTreeMap, HashMap};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shmq::{Counter, Queue, SendOptions, Status};
use shmq_testkit::child::{kill, Children};
use shmq_testkit::rng::Rng;
use shmq_testkit::scratch::Scratch;

const BIN: &str = env!("CARGO_BIN_EXE_shmq");

/// A `nats-server -js` of one test: killed (and its store removed with
/// the scratch directory) when dropped.
struct Nats {
    child: Option<Child>,
    port: u16,
    store: PathBuf,
}

impl Nats {
    /// Starts a server, or `None` (after saying why) when there is none to
    /// start and none is required.
    fn start(store: &Path) -> Option<Nats> {
        let found = Command::new("nats-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            if std::env::var("SHMQ_REQUIRE_NATS").as_deref() == Ok("1") {
                panic!("nats-server is not on the PATH, and SHMQ_REQUIRE_NATS=1");
            }
            eprintln!(
                "SKIPPED: nats-server is not installed (Debian: apt-get install nats-server); the bridge tests need a real JetStream server"
            );
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut n = Nats {
            child: None,
            port,
            store: store.to_path_buf(),
        };
        n.launch();
        Some(n)
    }

    fn launch(&mut self) {
        let child = Command::new("nats-server")
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&self.store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (its port and store stay this one's).
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill(&mut c);
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill(&mut c);
        }
    }
}

fn create(path: &Path, args: &[&str]) {
    let out = Command::new(BIN)
        .arg("create")
        .arg(path)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn out_cmd(q: &Path, nats: &Nats, extra: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(["bridge", "out"])
        .arg(q)
        .args([
            "--nats",
            &nats.url(),
            "--stream",
            "LEDGER",
            "--subject",
            "ledger",
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

fn in_cmd(q: &Path, nats: &Nats, extra: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(["bridge", "in"])
        .arg(q)
        .args([
            "--nats",
            &nats.url(),
            "--stream",
            "LEDGER",
            "--consumer",
            "far",
        ])
        .args(["--subject", "ledger"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// What was sent on the near side: keyed messages `k<key>v<version>`
/// (versions 1..=versions of each key, interleaved across keys) and
/// keyless ones `u<n>`.
#[derive(Clone, Copy)]
struct Plan {
    keys: u64,
    versions: u64,
    keyless: u64,
}

impl Plan {
    fn send(&self, path: &Path) {
        self.send_paced(path, Duration::ZERO);
    }

    /// Sends the plan spread over `over` (a round of versions at a time),
    /// so that the bridges are mid-flight whenever one is killed.
    fn send_paced(&self, path: &Path, over: Duration) {
        let q = Queue::open(path).unwrap();
        let pause = over / self.versions as u32;
        let mut u = 0;
        for v in 1..=self.versions {
            for k in 1..=self.keys {
                let data = format!("k{k}v{v}");
                q.send_with(data.as_bytes(), &SendOptions::new().key(k).version(v))
                    .unwrap();
            }
            for _ in 0..self.keyless / self.versions {
                q.send(format!("u{u}").as_bytes(), Duration::ZERO).unwrap();
                u += 1;
            }
            std::thread::sleep(pause);
        }
        while u < self.keyless {
            q.send(format!("u{u}").as_bytes(), Duration::ZERO).unwrap();
            u += 1;
        }
    }
}

/// The far side's ledger: what the far queue's consumer saw.
#[derive(Default)]
struct Ledger {
    /// Per key, the versions in the order they were claimed.
    versions: BTreeMap<u64, Vec<u64>>,
    /// Keyless payloads and how often each came.
    keyless: HashMap<String, u64>,
}

impl Ledger {
    /// Claims and acks from the far queue until `done` says so or the time
    /// runs out; checks each message's payload against its key and version.
    fn drain(&mut self, path: &Path, limit: Duration, done: impl Fn(&Ledger) -> bool) {
        let q = Queue::open(path).unwrap();
        let deadline = Instant::now() + limit;
        while !done(self) && Instant::now() < deadline {
            let m = match q.claim(Duration::from_millis(100)) {
                Ok(m) => m,
                Err(e) if matches!(e.status(), Status::Timeout | Status::Empty) => continue,
                Err(e) => panic!("far claim: {e}"),
            };
            self.record(&m);
            m.ack().unwrap();
        }
    }

    /// Claims and acks what waits in the far queue now.
    fn drain_waiting(&mut self, path: &Path) {
        let q = Queue::open(path).unwrap();
        loop {
            let m = match q.claim(Duration::ZERO) {
                Ok(m) => m,
                Err(e) if matches!(e.status(), Status::Timeout | Status::Empty) => return,
                Err(e) => panic!("far claim: {e}"),
            };
            self.record(&m);
            m.ack().unwrap();
        }
    }

    fn record(&mut self, m: &shmq::Message<'_>) {
        let data = String::from_utf8(m.data().unwrap()).unwrap();
        if m.key() != 0 {
            assert_eq!(data, format!("k{}v{}", m.key(), m.version()), "payload");
            self.versions.entry(m.key()).or_default().push(m.version());
        } else {
            assert!(data.starts_with('u'), "keyless payload {data}");
            *self.keyless.entry(data).or_default() += 1;
        }
    }

    /// Every version of each key came, once, in order.
    fn all_versions(&self, plan: &Plan) -> bool {
        self.versions.len() as u64 == plan.keys
            && self
                .versions
                .values()
                .all(|v| v.len() as u64 >= plan.versions)
    }

    /// The last version of each key came.
    fn last_versions(&self, plan: &Plan) -> bool {
        self.versions.len() as u64 == plan.keys
            && self
                .versions
                .values()
                .all(|v| v.last() == Some(&plan.versions))
    }

    fn all_keyless(&self, plan: &Plan) -> bool {
        self.keyless.len() as u64 == plan.keyless
    }

    /// Versions strictly increasing per key: none applied out of order.
    fn check_order(&self) {
        for (k, v) in &self.versions {
            assert!(
                v.windows(2).all(|w| w[0] < w[1]),
                "key {k}: versions out of order or repeated: {v:?}"
            );
        }
    }

    fn count(&self) -> u64 {
        self.keyless.values().sum::<u64>()
            + self.versions.values().map(|v| v.len() as u64).sum::<u64>()
    }

    fn keyless_duplicates(&self) -> u64 {
        self.keyless.values().map(|n| n - 1).sum()
    }
}

fn kills() -> usize {
    std::env::var("SHMQ_BRIDGE_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100)
}

#[test]
fn round_trip_keeps_keys_versions_and_order() {
    let s = Scratch::new("bridge-rt");
    let Some(nats) = Nats::start(&s.file("nats")) else {
        return;
    };
    let far = s.file("far.q");
    create(&s.queue, &["--keys", "128"]);
    create(&far, &["--keys", "128"]);
    let plan = Plan {
        keys: 20,
        versions: 10,
        keyless: 200,
    };
    plan.send(&s.queue);
    let st = out_cmd(&s.queue, &nats, &["--idle-exit", "1s"])
        .status()
        .unwrap();
    assert!(st.success());
    let st = in_cmd(&far, &nats, &["--idle-exit", "1s"])
        .status()
        .unwrap();
    assert!(st.success());
    let mut ledger = Ledger::default();
    ledger.drain(&far, Duration::from_secs(10), |l| {
        l.all_versions(&plan) && l.all_keyless(&plan)
    });
    ledger.check_order();
    assert!(
        ledger.all_versions(&plan),
        "versions: {:?}",
        ledger.versions
    );
    assert!(ledger.all_keyless(&plan));
    assert_eq!(ledger.keyless_duplicates(), 0);
    // The near queue is empty: everything was acked after its publish ack.
    let near = Queue::open(&s.queue).unwrap();
    assert_eq!(
        near.claim(Duration::ZERO).unwrap_err().status(),
        Status::Empty
    );
}

#[test]
fn out_killed_mid_flight_loses_nothing_and_stores_once() {
    let s = Scratch::new("bridge-kill-out");
    let Some(nats) = Nats::start(&s.file("nats")) else {
        return;
    };
    let far = s.file("far.q");
    // Each kill counts a failed delivery of what the bridge held: no
    // dead letters here, this test is about loss and order.
    create(
        &s.queue,
        &[
            "--keys",
            "256",
            "--capacity",
            "4096",
            "--lease",
            "2s",
            "--max-deliveries",
            "0",
        ],
    );
    create(&far, &["--keys", "256", "--capacity", "4096"]);
    let plan = Plan {
        keys: 50,
        versions: 30,
        keyless: 1500,
    };
    let n = kills();
    let mut children = Children::default();
    children.0.push(in_cmd(&far, &nats, &[]).spawn().unwrap());
    let mut rng = Rng::from_clock();
    // Sent while the kills go on (about 45 ms each).
    let producer = {
        let path = s.queue.clone();
        std::thread::spawn(move || plan.send_paced(&path, Duration::from_millis(40) * n as u32))
    };
    for _ in 0..n {
        // A small window: many publishes in flight at each kill, and the
        // queue not drained before the kills run out.
        let mut c = out_cmd(&s.queue, &nats, &["--window", "16"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(10 + rng.below(50)));
        kill(&mut c);
    }
    producer.join().unwrap();
    // The kills landed while claims were held: those came again.
    let redelivered = Queue::inspect(&s.queue)
        .unwrap()
        .stats()
        .counter(shmq::Counter::Redelivered);
    eprintln!("out killed {n} times: {redelivered} redeliveries on the near side");
    children
        .0
        .push(out_cmd(&s.queue, &nats, &[]).spawn().unwrap());
    let mut ledger = Ledger::default();
    ledger.drain(&far, Duration::from_secs(60), |l| {
        l.all_versions(&plan) && l.all_keyless(&plan)
    });
    drop(children);
    ledger.check_order();
    assert!(
        ledger.all_versions(&plan),
        "after {n} kills, versions: {:?}",
        ledger.versions
    );
    assert!(ledger.all_keyless(&plan), "after {n} kills, keyless lost");
    // Republished messages carried the same Nats-Msg-Id: stored once.
    assert_eq!(ledger.keyless_duplicates(), 0, "after {n} kills");
}

#[test]
fn in_killed_mid_flight_loses_nothing_and_keeps_versions_monotonic() {
    let s = Scratch::new("bridge-kill-in");
    let Some(nats) = Nats::start(&s.file("nats")) else {
        return;
    };
    let far = s.file("far.q");
    create(&s.queue, &["--keys", "256", "--capacity", "4096"]);
    // The far lease is the consumer's AckWait: what a killed puller held
    // comes again after it.
    create(
        &far,
        &[
            "--keys",
            "256",
            "--capacity",
            "4096",
            "--lease",
            "1s",
            "--max-deliveries",
            "0",
        ],
    );
    let plan = Plan {
        keys: 50,
        versions: 30,
        keyless: 1500,
    };
    let n = kills();
    let mut children = Children::default();
    children
        .0
        .push(out_cmd(&s.queue, &nats, &[]).spawn().unwrap());
    let producer = {
        let path = s.queue.clone();
        std::thread::spawn(move || plan.send_paced(&path, Duration::from_millis(40) * n as u32))
    };
    let mut rng = Rng::from_clock();
    let mut ledger = Ledger::default();
    for _ in 0..n {
        let mut c = in_cmd(&far, &nats, &["--batch", "16"]).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(10 + rng.below(50)));
        kill(&mut c);
        // Drain a little between kills, so that the far queue never fills.
        ledger.drain_waiting(&far);
    }
    producer.join().unwrap();
    let during = ledger.count();
    children.0.push(in_cmd(&far, &nats, &[]).spawn().unwrap());
    ledger.drain(&far, Duration::from_secs(60), |l| {
        l.last_versions(&plan) && l.all_keyless(&plan)
    });
    drop(children);
    ledger.check_order();
    // A version pulled by a killed process comes again after AckWait,
    // possibly after a newer one was applied: it is then stale, and the
    // newer one stands. The newest version of every key arrives.
    assert!(
        ledger.last_versions(&plan),
        "after {n} kills, versions: {:?}",
        ledger.versions
    );
    assert!(ledger.all_keyless(&plan), "after {n} kills, keyless lost");
    eprintln!(
        "in killed {n} times: {during} of {} messages moved by the killed processes, {} keyless duplicates (at least once into the far queue), {} keyed versions superseded",
        ledger.count(),
        ledger.keyless_duplicates(),
        plan.keys * plan.versions - ledger.versions.values().map(|v| v.len() as u64).sum::<u64>()
    );
}

#[test]
fn a_full_local_queue_stops_the_pull_and_resumes() {
    let s = Scratch::new("bridge-full");
    let Some(nats) = Nats::start(&s.file("nats")) else {
        return;
    };
    let far = s.file("far.q");
    create(&s.queue, &["--keys", "64"]);
    create(&far, &["--keys", "64", "--capacity", "16"]);
    let plan = Plan {
        keys: 10,
        versions: 10,
        keyless: 100,
    };
    plan.send(&s.queue);
    let st = out_cmd(&s.queue, &nats, &["--idle-exit", "1s"])
        .status()
        .unwrap();
    assert!(st.success());
    let mut children = Children::default();
    children.0.push(in_cmd(&far, &nats, &[]).spawn().unwrap());
    // The far queue fills and stays full: nothing is dropped meanwhile.
    let deadline = Instant::now() + Duration::from_secs(10);
    let q = Queue::open(&far).unwrap();
    loop {
        let st = q.stats();
        if st.depth >= 16 {
            break;
        }
        assert!(Instant::now() < deadline, "the far queue never filled");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    drop(q);
    let mut ledger = Ledger::default();
    ledger.drain(&far, Duration::from_secs(30), |l| {
        l.all_versions(&plan) && l.all_keyless(&plan)
    });
    drop(children);
    ledger.check_order();
    assert!(
        ledger.all_versions(&plan),
        "versions: {:?}",
        ledger.versions
    );
    assert!(ledger.all_keyless(&plan));
}

#[test]
fn nats_restarted_mid_flight() {
    let s = Scratch::new("bridge-restart");
    let Some(mut nats) = Nats::start(&s.file("nats")) else {
        return;
    };
    let far = s.file("far.q");
    // A message whose publish fails during the outage is held by the
    // bridge, its claim kept alive, not given back: an outage is not a
    // failed delivery, so a low delivery limit sends nothing to the dead
    // letters (checked at the end). The lease is shorter than the outage.
    let opts = [
        "--keys",
        "256",
        "--capacity",
        "8192",
        "--lease",
        "2s",
        "--max-deliveries",
        "2",
    ];
    create(&s.queue, &opts);
    create(&far, &opts);
    let plan = Plan {
        keys: 50,
        versions: 40,
        keyless: 4000,
    };
    let mut children = Children::default();
    children
        .0
        .push(out_cmd(&s.queue, &nats, &[]).spawn().unwrap());
    children.0.push(in_cmd(&far, &nats, &[]).spawn().unwrap());
    // Sent over three seconds; the server is restarted once a message has
    // crossed (both bridges connected, stream and consumer made; on a
    // loaded machine a fixed sleep did not always cover the start), so
    // mid-flight.
    let producer = {
        let path = s.queue.clone();
        std::thread::spawn(move || plan.send_paced(&path, Duration::from_secs(3)))
    };
    let mut ledger = Ledger::default();
    ledger.drain(&far, Duration::from_secs(60), |l| {
        !l.versions.is_empty() || !l.keyless.is_empty()
    });
    // Down for longer than a lease and than a publish's ack timeout:
    // publishes fail, and held claims must be kept alive.
    nats.stop();
    std::thread::sleep(Duration::from_secs(8));
    nats.launch();
    producer.join().unwrap();
    ledger.drain(&far, Duration::from_secs(60), |l| {
        l.last_versions(&plan) && l.all_keyless(&plan)
    });
    drop(children);
    ledger.check_order();
    assert!(
        ledger.last_versions(&plan),
        "versions: {:?}",
        ledger.versions
    );
    assert!(ledger.all_keyless(&plan));
    for q in [&s.queue, &far] {
        let st = Queue::open(q).unwrap().stats();
        assert_eq!(
            st.dead_letters,
            0,
            "{}: dead letters after the outage",
            q.display()
        );
    }
    // Not one failed delivery on the near side: held, not given back.
    let st = Queue::open(&s.queue).unwrap().stats();
    assert_eq!(
        (
            st.counter(Counter::Nacked),
            st.counter(Counter::Redelivered)
        ),
        (0, 0),
        "near queue: nacked, redelivered"
    );
}

/// Bridges started while their server is down wait for it, as a broker's
/// client does, instead of exiting: both start first, the server comes a
/// second later, and every message crosses.
#[test]
fn bridges_started_before_the_server_wait_for_it() {
    let s = Scratch::new("bridge-late-server");
    let Some(mut nats) = Nats::start(&s.file("nats")) else {
        return;
    };
    nats.stop();
    let far = s.file("far.q");
    create(&s.queue, &["--keys", "64"]);
    create(&far, &["--keys", "64"]);
    let plan = Plan {
        keys: 5,
        versions: 4,
        keyless: 40,
    };
    plan.send(&s.queue);
    let mut children = Children::default();
    children
        .0
        .push(out_cmd(&s.queue, &nats, &[]).spawn().unwrap());
    children.0.push(in_cmd(&far, &nats, &[]).spawn().unwrap());
    std::thread::sleep(Duration::from_secs(1));
    for c in children.0.iter_mut() {
        assert!(
            c.try_wait().unwrap().is_none(),
            "a bridge exited while its server was down"
        );
    }
    nats.launch();
    let mut ledger = Ledger::default();
    ledger.drain(&far, Duration::from_secs(60), |l| {
        l.all_versions(&plan) && l.all_keyless(&plan)
    });
    drop(children);
    ledger.check_order();
    assert!(
        ledger.all_versions(&plan),
        "versions: {:?}",
        ledger.versions
    );
    assert!(ledger.all_keyless(&plan));
}

#[test]
fn competing_in_processes_share_one_durable_consumer() {
    let s = Scratch::new("bridge-compete");
    let Some(nats) = Nats::start(&s.file("nats")) else {
        return;
    };
    let far = s.file("far.q");
    create(&s.queue, &["--keys", "128", "--capacity", "8192"]);
    create(&far, &["--keys", "128", "--capacity", "8192"]);
    let plan = Plan {
        keys: 20,
        versions: 50,
        keyless: 4000,
    };
    plan.send(&s.queue);
    let st = out_cmd(&s.queue, &nats, &["--idle-exit", "1s"])
        .status()
        .unwrap();
    assert!(st.success());
    let ins: Vec<Child> = (0..2)
        .map(|_| {
            in_cmd(
                &far,
                &nats,
                &["--idle-exit", "2s", "--json", "--batch", "32"],
            )
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    let mut sent = Vec::new();
    for c in ins {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success());
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        sent.push(v["sent"].as_u64().unwrap() + v["stale"].as_u64().unwrap());
    }
    assert_eq!(
        sent.iter().sum::<u64>(),
        5000,
        "each message sent once: {sent:?}"
    );
    assert!(sent.iter().all(|&n| n > 0), "both pulled: {sent:?}");
    let mut ledger = Ledger::default();
    ledger.drain(&far, Duration::from_secs(10), |l| {
        l.last_versions(&plan) && l.all_keyless(&plan)
    });
    ledger.check_order();
    assert!(
        ledger.last_versions(&plan),
        "versions: {:?}",
        ledger.versions
    );
    assert!(ledger.all_keyless(&plan));
}

#[test]
fn refusals_name_the_problem() {
    let s = Scratch::new("bridge-refuse");
    let Some(nats) = Nats::start(&s.file("nats")) else {
        return;
    };
    create(&s.queue, &[]);
    // A file made before file ids existed holds 0 there.
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&s.queue)
            .unwrap();
        f.seek(SeekFrom::Start(168)).unwrap();
        f.write_all(&[0; 8]).unwrap();
    }
    let out = out_cmd(&s.queue, &nats, &["--idle-exit", "1s"])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no file id"), "{err}");
    // A stream that does not take the subject.
    let other = s.file("other.q");
    create(&other, &[]);
    let st = out_cmd(&other, &nats, &["--idle-exit", "200ms"])
        .status()
        .unwrap();
    assert!(st.success());
    let out = Command::new(BIN)
        .args(["bridge", "out"])
        .arg(&other)
        .args([
            "--nats",
            &nats.url(),
            "--stream",
            "LEDGER",
            "--subject",
            "elsewhere",
        ])
        .args(["--idle-exit", "200ms"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not take subject elsewhere"), "{err}");
}

#[test]
fn bridge_run_moves_several_queues_from_one_config() {
    let s = Scratch::new("bridge-run");
    let Some(nats) = Nats::start(&s.file("nats")) else {
        return;
    };
    let (a, b, c, d) = (s.file("a.q"), s.file("b.q"), s.file("c.q"), s.file("d.q"));
    for q in [&a, &b, &c, &d] {
        create(q, &["--keys", "64"]);
    }
    let plan = Plan {
        keys: 10,
        versions: 5,
        keyless: 50,
    };
    plan.send(&a);
    plan.send(&c);
    let config = s.file("bridge.toml");
    std::fs::write(
        &config,
        format!(
            "nats = \"{}\"\n\n[[out]]\npath = {:?}\nstream = \"A\"\nsubject = \"a\"\n\n[[out]]\npath = {:?}\nstream = \"C\"\nsubject = \"c\"\n\n[[in]]\npath = {:?}\nstream = \"A\"\nconsumer = \"b\"\n\n[[in]]\npath = {:?}\nstream = \"C\"\nconsumer = \"d\"\n",
            nats.url(),
            a.display().to_string(),
            c.display().to_string(),
            b.display().to_string(),
            d.display().to_string()
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["bridge", "run"])
        .arg(&config)
        .args(["--idle-exit", "1500ms", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 4);
    for far in [&b, &d] {
        let mut ledger = Ledger::default();
        ledger.drain(far, Duration::from_secs(5), |l| {
            l.all_versions(&plan) && l.all_keyless(&plan)
        });
        ledger.check_order();
        assert!(ledger.all_versions(&plan) && ledger.all_keyless(&plan));
    }
}
