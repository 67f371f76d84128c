//! Per-key versions (G7) under real SIGKILLs of producers and consumers
//! (issue #3).
//!
//! Producer processes send versioned updates for `KEYS` keys; producer `i`
//! owns the keys `k` with `k % PRODUCERS == i`, and its versions mostly come
//! from a clock made strictly increasing, so the versions of one key increase
//! in send order, also across a producer's restarts; a few sends use version
//! 0 (the engine's next version), a version at or below the last acked one
//! (must be `Stale`) or one just below the newest (queued behind a newer one,
//! it must be completed without delivery). The queue runs in FIFO mode and in
//! latest-only mode (one test each). Consumer processes claim the updates and
//! apply them to a "local cache", one version per key, and a "holder" word
//! per key: a consumer takes it after a claim and clears it before the ack,
//! so two consumers holding one key at once are seen (allowed only when the
//! first holder was SIGKILLed: its claim was redelivered).
//!
//! The test binary re-executes itself as helpers (the pattern of
//! `tests/kill.rs`): a child runs only the ignored [`helper`] test, which
//! reads its work from the environment. The cache, the holder words and what
//! producers and consumers saw live in the test kit's SIGKILL ledger, the one
//! `tests/kill.rs` and `shmq torture` write too: a producer records each
//! update's key and version before it sends it and the result after (`Ok`
//! with the version it got, `Stale`, or not sent); consumers are the kit's
//! (`shmq_testkit::consumer`): each claim is checked (payload, key, version,
//! the previous holder of the message and of the key, a version older than
//! the cached one, a first delivery of the version applied last) and
//! recorded, applied to the cache, and acked. At the end the kit's oracle
//! checks every update (nothing lost, acked or superseded) and every key,
//! and this test checks each key's cache against the newest version sent
//! with `Ok` and against the engine's `latest_acked_version`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shmq::{Counter, Options, Queue, SendOptions, Status};
use shmq_testkit::child::{kill, Lifeline, Work};
use shmq_testkit::consumer::Consumer;
use shmq_testkit::crew::{attach, create_ledger, fail, Crew};
use shmq_testkit::ledger::{kind, send_state, Event, Ledger, Sizes, DRAINER};
use shmq_testkit::oracle::Oracle;
use shmq_testkit::rules::{Order, Rules};
use shmq_testkit::{payload, Rng, Scratch};

const KEYS: u64 = 200;
const PRODUCERS: u64 = 3;
const CONSUMERS: u64 = 3;
const CHAOS: Duration = Duration::from_secs(4);
const CHILD_LIFETIME: Duration = Duration::from_secs(60);
/// The largest payload of the queues.
const MAX_MESSAGE: usize = 64;

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}

/// The queue: FIFO (`count` 0) or latest-only (`count` 1).
fn rules(latest_only: bool) -> Rules {
    Rules {
        queues: vec![if latest_only {
            ("latest-only", Order::LatestOnly)
        } else {
            ("fifo", Order::Fifo)
        }],
        keys: KEYS,
        lease_ns: Options::default().lease.as_nanos() as u64,
        max_message_size: MAX_MESSAGE,
        poison_one_in: 0,
        fault: None,
    }
}

shmq_testkit::helper_test!(CHILD_LIFETIME, {
    "producer" => producer,
    "consumer" => consumer,
    "replacer" => replacer,
});

fn producer(work: &Work, life: &Lifeline) {
    let (q, ledger) = attach(work);
    let me = work.index as u32;
    // The producer's index among producers (its keys).
    let index = work.gen;
    let mut rng = Rng::new(work.seed);
    let mut last = 0u64;
    let mut history: HashMap<u64, HashSet<u64>> = HashMap::new();
    let owned = KEYS / PRODUCERS;
    for round in 0u64.. {
        if round % 32 == 0 {
            life.check();
        }
        // Keys 1..=KEYS; producer i owns those with k % PRODUCERS == i.
        let mut key = rng.below(owned + 1) * PRODUCERS + index;
        if key == 0 || key > KEYS {
            key = PRODUCERS + index;
        }
        // Mostly a fresh explicit version; sometimes version 0 (the engine
        // gives the next one); sometimes a version at or below the key's
        // last acked one (must be `Stale`); sometimes a version just below
        // the newest one sent, never used before for the key (`Ok` queues it
        // behind the newer one, and it must then be completed without
        // delivery; or `Stale`). No version of a key is sent twice: a
        // duplicate of an acked version is delivered by the engine (see the
        // report of issue #3), which this test would flag.
        let used = history.entry(key).or_default();
        let mix = rng.below(16);
        let acked = q.latest_acked_version(key);
        let stale_probe = used.iter().copied().filter(|v| *v <= acked).max();
        let newest = used.iter().copied().max().unwrap_or(0);
        let (version, must_be_stale) = if mix == 0 {
            (0, false)
        } else if mix == 1 && stale_probe.is_some() {
            (stale_probe.unwrap_or(0), true)
        } else if mix == 2 && newest > 1 && !used.contains(&(newest - 1)) {
            (newest - 1, false)
        } else {
            let v = now_ns().max(last + 1);
            last = v;
            (v, false)
        };
        if version != 0 {
            used.insert(version);
        }
        let Some(id) = ledger.alloc(1) else {
            // The ledger is full: nothing more to send.
            life.idle();
        };
        ledger.intent(id, 0, me, key, version);
        let opts = SendOptions::new().key(key).version(version);
        match q.send_with(&payload::encode(id, key, version, MAX_MESSAGE), &opts) {
            Ok(s) if must_be_stale => {
                ledger.violation(
                    kind::STALE_ACCEPTED,
                    &format!(
                        "send {key}/{version} (last acked {acked}) returned Ok {s:?}, not Stale"
                    ),
                );
                fail(&ledger, work, "a stale send returned Ok");
            }
            Ok(s) if s.version == version || (version == 0 && s.version > acked) => {
                last = last.max(s.version);
                used.insert(s.version);
                ledger.sent(id, send_state::SENT, s.version);
            }
            Ok(s) => {
                ledger.violation(
                    kind::STALE_ACCEPTED,
                    &format!("sent {key}/{version} as version {}", s.version),
                );
                fail(&ledger, work, "a send returned another version");
            }
            Err(e) if e.status() == Status::Stale => ledger.sent(id, send_state::REFUSED, version),
            Err(e) if matches!(e.status(), Status::Full | Status::Timeout) => {
                ledger.sent(id, send_state::NOT_SENT, version)
            }
            Err(e) => fail(&ledger, work, &format!("send {key}/{version}: {e}")),
        }
        if rng.below(4) == 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

/// Claims one message at a time, and hands it to the kit's consumer, which
/// checks it, applies it to the cache and acks it (holding one in eight for
/// a millisecond).
fn consumer(work: &Work, life: &Lifeline) {
    let (q, ledger) = attach(work);
    let rules = rules(work.count != 0);
    let c = Consumer::new(&rules, &ledger, work.index as u32, false);
    let mut rng = Rng::new(work.seed);
    for round in 0u64.. {
        if round % 32 == 0 {
            life.check();
        }
        let hold = rng.below(8) == 0;
        if let Err(what) = claim_one(&q, &c, Duration::from_millis(50), hold) {
            fail(&ledger, work, &what);
        }
    }
}

/// Claims one message and has `c` check, apply and ack it. `Ok(false)` when
/// nothing came within `wait`.
fn claim_one(q: &Queue, c: &Consumer<'_>, wait: Duration, hold: bool) -> Result<bool, String> {
    let called = shmq::internals::sys::monotonic_ns();
    let m = match q.claim(wait) {
        Ok(m) => m,
        Err(e) if matches!(e.status(), Status::Timeout | Status::Empty) => return Ok(false),
        Err(e) => return Err(format!("claim: {e}")),
    };
    let claimed = shmq::internals::sys::monotonic_ns();
    c.handle(q, 0, vec![m], called, claimed, hold)?;
    Ok(true)
}

fn run(name: &str, latest_only: bool) {
    let s = Scratch::new(name);
    let q = Queue::create(
        &s.queue,
        &Options {
            capacity: 256,
            max_message_size: MAX_MESSAGE as u32,
            key_capacity: 256,
            max_deliveries: 0,
            latest_only,
            ..Options::default()
        },
    )
    .expect("create");
    let ledger = create_ledger(
        &s,
        Sizes {
            // Sparse: only the records written take memory.
            records: 4_000_000,
            instances: 256,
            queues: 1,
            keys: KEYS,
            samples: 1 << 16,
        },
    );
    let rules = rules(latest_only);
    let mut crew = Crew::new(&s, &ledger, latest_only as u64, Rng::from_clock());
    for i in 0..PRODUCERS {
        crew.start(true, i);
    }
    for i in 0..CONSUMERS {
        crew.start(false, i);
    }
    let start = Instant::now();
    while start.elapsed() < CHAOS {
        std::thread::sleep(Duration::from_millis(100 + crew.rng.below(200)));
        let k = crew.rng.below(crew.members.len() as u64) as usize;
        crew.restart(k);
    }
    // Stop: every child dies by SIGKILL (its claims are redelivered).
    crew.kill_all(true);
    crew.kill_all(false);
    let mut problems = std::mem::take(&mut crew.early_exits);

    // Drain in this process.
    let drainer = Consumer::new(&rules, &ledger, DRAINER, false);
    let mut drained = 0usize;
    let drain_start = Instant::now();
    loop {
        match claim_one(&q, &drainer, Duration::from_millis(200), false) {
            Ok(true) => drained += 1,
            Ok(false) => {
                let st = q.stats();
                if st.depth + st.delayed + st.in_flight == 0 {
                    break;
                }
            }
            Err(what) => panic!("drain: {what}"),
        }
        assert!(
            drain_start.elapsed() < Duration::from_secs(15),
            "the drain did not finish: {:?}",
            q.stats()
        );
    }

    // The kit's oracle: every update and key.
    let queues = [q];
    let oracle = Oracle {
        rules: &rules,
        ledger: &ledger,
        queues: &queues,
        drained: &[true],
    };
    let (outcomes, _) = oracle.verdict();
    let q = &queues[0];
    // Every key's cache holds the newest version sent with Ok, or a newer
    // one whose producer was killed before it could record the Ok, and the
    // engine's last acked version.
    let mut max_ok: HashMap<u64, u64> = HashMap::new();
    let mut allowed: HashMap<u64, HashSet<u64>> = HashMap::new();
    for id in 0..ledger.next_id() {
        let (state, _, _, producer) = ledger.send_of(id);
        let (key, version) = ledger.key_version_of(id);
        if state == send_state::SENT {
            let e = max_ok.entry(key).or_default();
            *e = (*e).max(version);
        } else if state == send_state::INTENT && ledger.killed_at(producer).is_some() {
            allowed.entry(key).or_default().insert(version);
        }
    }
    for key in 1..=KEYS {
        let cached = ledger.cached_version(0, key).load(Ordering::SeqCst);
        let newest = max_ok.get(&key).copied().unwrap_or(0);
        let ok = cached == newest
            || (cached > newest
                && allowed
                    .get(&key)
                    .is_some_and(|a| a.contains(&cached) || a.contains(&0)));
        if !ok {
            problems.push(format!(
                "key {key}: cached version {cached}, newest sent with Ok {newest}"
            ));
        }
        let acked = q.latest_acked_version(key);
        if acked != cached {
            problems.push(format!(
                "key {key}: latest_acked_version {acked}, cached version {cached}"
            ));
        }
    }
    problems.extend(ledger.problems());
    let o = outcomes[0];
    let events = ledger.events();
    let st = q.stats();
    println!(
        "keys_kill {name} (latest_only {latest_only}): {KEYS} keys, {} kills ({} producers), \
         {o:?}, {} keys taken over from killed consumers, {drained} drained, \
         engine stale {} conflated {} dead participants {}",
        crew.kills.0 + crew.kills.1,
        crew.kills.0,
        events[Event::KeyFromKilled as usize],
        st.counter(Counter::Stale),
        st.counter(Counter::Conflated),
        st.counter(Counter::DeadParticipants)
    );
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems[..problems.len().min(30)].join("\n")
    );
    assert!(o.sent > 0 && o.acked > 0, "{o:?}");
}

#[test]
fn versions_survive_killed_producers_and_consumers() {
    run("fifo", false);
}

#[test]
fn latest_only_versions_survive_killed_producers_and_consumers() {
    run("latest", true);
}

// ---------------------------------------------------------------------
// Latest-only replacements in place under SIGKILL (G4, G7)
// ---------------------------------------------------------------------

/// The key the replacer updates.
const RKEY: u64 = 7;
/// Replacers killed (one after the other) in
/// `g4_latest_only_replacements_survive_sigkill`.
const REPLACER_KILLS: u64 = 220;

/// Sends newer and newer versions of `RKEY` as fast as it can (each
/// replaces the waiting one in place, unless the consumer holds it), one in
/// four through `reserve` and `commit_with`, recording each in the ledger:
/// the intent before the send, `SENT` after it returned `Ok`.
fn replacer(work: &Work, life: &Lifeline) {
    let (q, ledger) = attach(work);
    let me = work.index as u32;
    let mut rng = Rng::from_clock();
    let mut last = 0u64;
    for round in 0u64.. {
        if round % 64 == 0 {
            life.check();
        }
        let v = now_ns().max(last + 1);
        last = v;
        let Some(id) = ledger.alloc(1) else {
            life.idle();
        };
        ledger.intent(id, 0, me, RKEY, v);
        let data = payload::encode(id, RKEY, v, MAX_MESSAGE);
        let opts = SendOptions::new()
            .key(RKEY)
            .version(v)
            .timeout(Duration::from_secs(5));
        // One send in four is zero-copy: its reservation's payload goes
        // into the replacement record and then into the waiting slot.
        let sent = if rng.below(4) == 0 {
            q.reserve(data.len(), Duration::from_secs(5))
                .and_then(|mut r| {
                    r.write(&data)?;
                    r.commit_with(&opts)
                })
        } else {
            q.send_with(&data, &opts)
        };
        match sent {
            Ok(s) if s.version == v => ledger.sent(id, send_state::SENT, v),
            Ok(s) => fail(&ledger, work, &format!("sent {v} as version {}", s.version)),
            Err(e) => fail(&ledger, work, &format!("send {v}: {e}")),
        }
    }
}

/// The newest version the ledger's ids `from..` say was sent `Ok`, and the
/// newest one begun.
fn replacer_ledger(ledger: &Ledger, from: u64) -> (u64, u64) {
    let (mut ok, mut began) = (0, 0);
    for id in from..ledger.next_id() {
        let (state, ..) = ledger.send_of(id);
        let (_, version) = ledger.key_version_of(id);
        began = began.max(version);
        if state == send_state::SENT {
            ok = ok.max(version);
        }
    }
    (ok, began)
}

/// G4, G7 (hole: a latest-only replacement killed midway lost the waiting
/// message): a replacer process sends newer and newer versions of one key
/// while a consumer (a thread here) claims them, holding each a little, so
/// that most sends replace the waiting message in place; the replacer is
/// SIGKILLed at a random point of its send loop, `REPLACER_KILLS` times,
/// one process after the other. After each kill, before the next replacer
/// starts, the consumer must reach the newest version whose send returned
/// `Ok` (the survivors' repair finishes or undoes the dead one's
/// replacement): nothing is ever missing. The versions the consumer acks
/// never go back, every payload is whole, and the file verifies at the end.
#[test]
fn g4_latest_only_replacements_survive_sigkill() {
    let s = Scratch::new("replace");
    let q = Queue::create(
        &s.queue,
        &Options {
            capacity: 8,
            max_message_size: MAX_MESSAGE as u32,
            key_capacity: 4,
            max_deliveries: 0,
            latest_only: true,
            ..Options::default()
        },
    )
    .expect("create");
    let stop = Arc::new(AtomicBool::new(false));
    let last_acked = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(Mutex::new(Vec::<u64>::new()));
    let consumer = {
        let (path, stop, last_acked, acked) = (
            s.queue.clone(),
            stop.clone(),
            last_acked.clone(),
            acked.clone(),
        );
        std::thread::spawn(move || -> Result<(), String> {
            let q = Queue::open(&path).map_err(|e| format!("consumer: open: {e}"))?;
            let mut rng = Rng::from_clock();
            while !stop.load(Ordering::SeqCst) {
                let m = match q.claim(Duration::from_millis(20)) {
                    Ok(m) => m,
                    Err(e) if matches!(e.status(), Status::Timeout | Status::Empty) => continue,
                    Err(e) => return Err(format!("claim: {e}")),
                };
                let data = m.data().map_err(|e| format!("data: {e}"))?;
                let got = payload::decode(&data, MAX_MESSAGE).map(|p| (p.key, p.version));
                if got != Some((m.key(), m.version())) || m.key() != RKEY {
                    return Err(format!(
                        "torn or foreign payload {data:?} in key {} version {}",
                        m.key(),
                        m.version()
                    ));
                }
                let v = m.version();
                let before = last_acked.load(Ordering::SeqCst);
                if v <= before {
                    return Err(format!("version {v} delivered after {before} was acked"));
                }
                // Hold it a little: meanwhile the replacer queues one
                // newer message and replaces it in place, again and again.
                std::thread::sleep(Duration::from_micros(100 + rng.below(400)));
                m.ack().map_err(|e| format!("ack {v}: {e}"))?;
                acked.lock().unwrap().push(v);
                last_acked.store(v, Ordering::SeqCst);
            }
            Ok(())
        })
    };
    let mut rng = Rng::from_clock();
    let mut missing = Vec::new();
    let mut kills = 0u64;
    let ledger = create_ledger(
        &s,
        Sizes {
            records: 4_000_000,
            instances: REPLACER_KILLS + 8,
            queues: 1,
            keys: RKEY,
            samples: 0,
        },
    );
    for gen in 0..REPLACER_KILLS {
        let from = ledger.next_id();
        let instance = DRAINER as u64 + 1 + gen;
        let mut child = Work::new("replacer", &s.queue, &s.dir)
            .index(instance)
            .gen(gen)
            .spawn();
        // Kill it in its send loop: once it has begun sending, after a
        // random pause.
        let started = Instant::now();
        while ledger.next_id() == from {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "replacer {gen} never began"
            );
            if let Ok(Some(status)) = child.try_wait() {
                panic!("replacer {gen} exited by itself: {status}");
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        std::thread::sleep(Duration::from_micros(rng.below(3000)));
        ledger.mark_killed(instance as u32, shmq::internals::sys::monotonic_ns());
        if let Some(status) = kill(&mut child) {
            panic!("replacer {gen} exited by itself: {status}");
        }
        kills += 1;
        let (ok, began) = replacer_ledger(&ledger, from);
        if let Some((k, d)) = ledger.violations().first() {
            panic!("replacer {gen}: {k} {d}");
        }
        // Nobody sends now: the newest version sent Ok must come (or the
        // one begun after it, whose send may have returned unrecorded).
        let waited = Instant::now();
        while last_acked.load(Ordering::SeqCst) < ok {
            if consumer.is_finished() || waited.elapsed() > Duration::from_secs(3) {
                let st = q.stats();
                missing.push(format!(
                    "kill {gen}: version {ok} was sent Ok (then {began} begun), the consumer \
                     is at {} and nothing more comes (depth {}, in flight {}, reserved {})",
                    last_acked.load(Ordering::SeqCst),
                    st.depth,
                    st.in_flight,
                    st.reserved
                ));
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        if consumer.is_finished() {
            break;
        }
    }
    // The last replacer's last send may have gone through unrecorded: let
    // the consumer drain what is left.
    let drain = Instant::now();
    loop {
        let st = q.stats();
        if st.depth + st.delayed + st.in_flight == 0 || consumer.is_finished() {
            break;
        }
        assert!(
            drain.elapsed() < Duration::from_secs(10),
            "the drain did not finish: {st:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::SeqCst);
    let consumed = consumer.join().expect("the consumer thread");
    let acked = acked.lock().unwrap().clone();
    let report = q.verify();
    let st = q.stats();
    println!(
        "latest-only replacements under SIGKILL: {kills} replacers killed, {} versions acked, \
         {} replaced in place, {} dead participants cleaned up, {} messages missing",
        acked.len(),
        st.counter(Counter::Conflated),
        st.counter(Counter::DeadParticipants),
        missing.len()
    );
    assert_eq!(consumed, Ok(()), "the consumer failed");
    assert!(
        missing.is_empty(),
        "{} of {kills} kills lost the key's message:\n{}",
        missing.len(),
        missing.join("\n")
    );
    assert!(report.problems.is_empty(), "verify: {:?}", report.problems);
    assert!(
        acked.windows(2).all(|w| w[0] < w[1]),
        "acked versions went back"
    );
    assert!(
        st.counter(Counter::Conflated) > 0,
        "nothing was replaced in place"
    );
}
