//! Latest-only replacement in place, killed or stalled at every step.

use super::*;

// ----------------------------------------------------------------
// Latest-only replacement in place, stopped at every step
// ----------------------------------------------------------------

fn latest_engine(capacity: u64) -> Engine<HeapMemory> {
    let layout = Layout::with_flags(
        Params {
            capacity,
            max_message_size: 32,
            key_capacity: 8,
            dlq_capacity: 2,
            participant_capacity: 4,
        },
        crate::format::flags::LATEST_ONLY,
    )
    .unwrap();
    engine_of(layout)
}

/// The payload of version `v`: two different words, so a torn copy
/// shows.
fn body(v: u64) -> Vec<u8> {
    let mut b = v.to_le_bytes().to_vec();
    b.extend_from_slice(&(!v).to_le_bytes());
    b
}

/// A latest-only keyed send as `Queue::send_with` makes it: replace the
/// waiting message in place, else queue a new one. Whether it replaced.
fn send_latest(e: &Engine<HeapMemory>, me: u64, key: u64, v: u64) -> bool {
    let data = body(v);
    e.keys().find_or_insert(key).unwrap();
    if let Some(r) = e.take_waiting(me, key, v, 0, Some(&data)).unwrap() {
        if e.stage_replacement(me, &r, key, v, data.len() as u64, 0, None) {
            e.commit_replacement(me, &r, 0).unwrap();
            return true;
        }
    }
    let r = e.reserve(me, 0, data.len()).unwrap();
    // SAFETY: a reservation of this test, not yet committed; the payload fits.
    unsafe { e.write_payload(&r, &data) };
    e.commit(me, &r, data.len(), key, v, None, 0).unwrap();
    e.set_waiting(key, r.slot, r.position);
    false
}

fn record_word(e: &Engine<HeapMemory>, p: u64) -> u64 {
    let rec = e.layout.replacement(p).unwrap();
    e.mem.u64_at(rec + replace::WORD).load(Ordering::SeqCst)
}

/// The steps of a replacement at which the replacer is stopped.
const STOPS: [&str; 8] = [
    "record says INTENT, slot not taken yet",
    "slot taken",
    "record written, not yet marked complete",
    "record complete (COPY), slot untouched",
    "half the new payload copied into the slot",
    "payload and metadata copied, no commit CAS",
    "committed, record not cleared",
    "done",
];

/// Participant `P` replaces version 1 of key `K` (waiting in its slot)
/// by version 2, doing the steps of `send_latest` by hand up to
/// `STOPS[stop]`. Returns its reservation once it has one.
fn replace_until(e: &Engine<HeapMemory>, stop: usize) -> Option<Reservation> {
    const P: u64 = 1;
    const K: u64 = 7;
    let data = body(2);
    let rec = e.layout.replacement(P).unwrap();
    if stop == 0 {
        let ent = e.keys().find(K).unwrap();
        let i = WaitingRef::decode(e.keys().field(ent, keyf::WAITING).load(Ordering::SeqCst))
            .unwrap()
            .slot;
        let w = e.slot_word(i);
        e.mem.u64_at(rec + replace::WORD).store(
            ReplaceWord::new(i, w.next_seq(), replace::INTENT).encode(),
            Ordering::SeqCst,
        );
        return None;
    }
    let r = e.take_waiting(P, K, 2, 0, None).unwrap().unwrap();
    if stop == 1 {
        return Some(r);
    }
    if stop == 2 {
        let put = |f: usize, v: u64| e.mem.u64_at(rec + f).store(v, Ordering::SeqCst);
        put(replace::KEY, K);
        put(replace::VERSION, 2);
        put(replace::LEN, data.len() as u64);
        // SAFETY: participant P's own record, in `INTENT`: only P writes it.
        unsafe { e.mem.write_bytes(rec + replace::PAYLOAD, &data) };
        return Some(r);
    }
    assert!(e.stage_replacement(P, &r, K, 2, data.len() as u64, 0, Some(&data)));
    match stop {
        3 => {}
        // SAFETY: the slot is P's reservation; this test is single-threaded.
        4 => unsafe { e.mem.write_bytes(e.payload_offset(r.slot), &data[..8]) },
        5 => {
            e.copy_record(rec, r.slot);
            e.slot_field(r.slot, slot::VERSION)
                .store(2, Ordering::SeqCst);
        }
        6 => {
            e.commit_replacement(P, &r, 0).unwrap();
            e.mem.u64_at(rec + replace::WORD).store(
                ReplaceWord::new(r.slot, r.seq, replace::COPY).encode(),
                Ordering::SeqCst,
            );
        }
        _ => {
            e.commit_replacement(P, &r, 0).unwrap();
        }
    }
    Some(r)
}

/// Claims and acks everything; checks each payload whole and of its
/// version. Returns `(version, position, deliveries)` in claim order.
fn drain_checked(e: &Engine<HeapMemory>, now: u64) -> Vec<(u64, u64, u32)> {
    let mut got = Vec::new();
    while let Some(c) = e.claim(3, now).unwrap() {
        assert_eq!(payload(e, &c), body(c.version), "torn or foreign: {c:?}");
        got.push((c.version, c.position, c.deliveries));
        e.settle(3, c.token(), &Outcome::Ack, now).unwrap();
        assert!(got.len() <= 4, "{got:?}");
    }
    for i in 0..e.capacity() {
        assert_eq!(
            e.slot_word(i).state(),
            state::FREE,
            "slot {i} after {got:?}"
        );
    }
    got
}

/// G4, G7 (hole: a latest-only replacement killed midway lost the
/// waiting message): the replacer dies after each step of a replacement
/// in place; its cleaner leaves the old message (before the record was
/// complete) or the new one (after), whole, at the old one's position,
/// never neither.
#[test]
fn g4_latest_only_replacement_killed_midway_keeps_a_message() {
    for (stop, what) in STOPS.iter().enumerate() {
        let e = latest_engine(4);
        send_keyed(&e, 2, 9, 1, &body(1)); // another key, first in line
        assert!(!send_latest(&e, 2, 7, 1));
        let pos = e.claim(3, 0).unwrap().map(|c| {
            e.settle(3, c.token(), &Outcome::Ack, 0).unwrap();
            c.position + 1
        });
        replace_until(&e, stop);
        let rep = e.repair(0, 0, &|o| o == 1).unwrap();
        assert_eq!(record_word(&e, 1), 0, "{what}: record left");
        let got = drain_checked(&e, 0);
        let want = if stop < 3 { 1 } else { 2 };
        assert_eq!(got, vec![(want, pos.unwrap(), 1)], "{what}: {rep:?}");
        // The key works on: a newer send replaces, once.
        assert!(!send_latest(&e, 2, 7, 3));
        assert!(send_latest(&e, 2, 7, 4));
        assert_eq!(drain_checked(&e, 0).len(), 1, "{what}");
    }
}

/// G4, G5, G7 (hole: a replacer that stalled past the reservation
/// timeout had its slot quarantined and its late commit freed it, old
/// message and all): the replacer stalls after each step, a repair runs
/// past its deadline, then the replacer comes back and finishes its
/// send (as a new message if the repair undid its take). Both its
/// message and, if it was not replaced, the old one are delivered,
/// whole, each once; a stall before the record was complete gives the
/// old message back at once. Then the same with the replacer dying
/// instead of coming back.
#[test]
fn g4_latest_only_replacement_stalled_midway_keeps_a_message() {
    for (stop, what) in STOPS.iter().enumerate() {
        for comes_back in [true, false] {
            let e = latest_engine(4);
            assert!(!send_latest(&e, 2, 7, 1));
            let pos = e.slot_field(0, slot::POSITION).load(Ordering::SeqCst);
            let r = replace_until(&e, stop);
            e.repair(0, 2_000_000, &|_| false).unwrap();
            if (1..3).contains(&stop) {
                // Undone at once: the old message is claimable now.
                assert_eq!(e.slot_word(0).state(), state::READY, "{what}");
            } else if (3..6).contains(&stop) {
                // Stalled in the copy: quarantined for the replacer.
                assert_eq!(e.slot_word(0).state(), state::ABANDONED, "{what}");
            }
            let got = if comes_back {
                // The replacer resumes where it stopped.
                let data = body(2);
                match (stop, r) {
                    (0, _) => {
                        assert!(send_latest(&e, 1, 7, 2), "{what}");
                    }
                    (1 | 2, Some(r)) => {
                        assert!(!e.stage_replacement(1, &r, 7, 2, 16, 0, Some(&data)));
                        let n = e.reserve(1, 0, 16).unwrap();
                        // SAFETY: a reservation of this test, not yet committed; the payload fits.
                        unsafe { e.write_payload(&n, &data) };
                        e.commit(1, &n, 16, 7, 2, None, 0).unwrap();
                    }
                    (3..=5, Some(r)) => {
                        e.commit_replacement(1, &r, 0).unwrap();
                    }
                    (6, Some(_)) => {
                        let rec = e.layout.replacement(1).unwrap();
                        e.mem.u64_at(rec + replace::WORD).store(0, Ordering::SeqCst);
                    }
                    _ => {}
                }
                assert_eq!(record_word(&e, 1), 0, "{what}");
                drain_checked(&e, 2_000_000)
            } else {
                e.repair(0, 2_000_000, &|o| o == 1).unwrap();
                assert_eq!(record_word(&e, 1), 0, "{what}: record left");
                drain_checked(&e, 2_000_000)
            };
            let versions: Vec<u64> = got.iter().map(|g| g.0).collect();
            let why = format!("{what}, comes back {comes_back}: {got:?}");
            match (comes_back, stop) {
                (true, 1 | 2) => assert_eq!(versions, vec![1, 2], "{why}"),
                (true, _) | (false, 3..) => {
                    assert_eq!(got, vec![(2, pos, 1)], "{why}")
                }
                (false, _) => assert_eq!(got, vec![(1, pos, 1)], "{why}"),
            }
        }
    }
}

/// G7 (hole: a nacked message could not be replaced in latest-only
/// mode): a waiting message back from a failed delivery is replaced in
/// place like a fresh one; the replacement's deliveries count from 1,
/// and the old claim's token stays dead.
#[test]
fn g7_latest_only_replaces_a_nacked_waiting_message() {
    let e = latest_engine(4);
    assert!(!send_latest(&e, 2, 7, 1));
    let c = e.claim(3, 0).unwrap().unwrap();
    e.settle(3, c.token(), &Outcome::Nack { not_before_ns: 0 }, 0)
        .unwrap();
    assert!(
        send_latest(&e, 2, 7, 2),
        "the nacked message was not replaced"
    );
    let again = e.claim(3, 0).unwrap().unwrap();
    assert_eq!(
        (payload(&e, &again), again.position, again.deliveries),
        (body(2), c.position, 1)
    );
    assert_ne!(again.token(), c.token());
    assert_eq!(
        e.settle(3, c.token(), &Outcome::Ack, 0)
            .unwrap_err()
            .status(),
        Status::LeaseLost
    );
    e.settle(3, again.token(), &Outcome::Ack, 0).unwrap();
    assert!(e.claim(3, 0).unwrap().is_none());
    // A nack with a delay keeps it delayed: a newer send queues.
    assert!(!send_latest(&e, 2, 7, 3));
    let c = e.claim(3, 0).unwrap().unwrap();
    e.settle(3, c.token(), &Outcome::Nack { not_before_ns: 10 }, 0)
        .unwrap();
    assert!(!send_latest(&e, 2, 7, 4));
}
