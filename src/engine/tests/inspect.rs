//! The typed snapshots report what the protocol wrote.

use super::*;

#[test]
fn snapshots_read_slots_dead_letters_keys_and_the_header() {
    let e = engine_with(4, 4, 2);
    send_keyed(&e, 1, 7, 3, b"hello");
    let c = e.claim(2, 0).unwrap().unwrap();
    let s = e.slot_snapshot(c.slot);
    assert_eq!((s.state(), s.word.owner()), (state::CLAIMED, 2));
    assert_eq!((s.key, s.version, s.len.length()), (7, 3, 5));
    assert_eq!(s.attempts.count_for(c.seq), Some(1));
    assert_eq!(s.lease.time_for(c.seq), Some(s.lease_time_ns()));
    assert!(s.lease_time_ns() >= 1_000_000);
    assert_eq!(e.token_of(c.slot, s.claim.generation()), c.token());

    let k = e.key_entry_snapshot(e.keys().find(7).unwrap()).unwrap();
    assert_eq!(k.key, 7);
    assert_eq!(k.holder().map(|h| (h.slot, h.owner)), Some((c.slot, 2)));
    let other = (0..e.keys().capacity())
        .find(|&n| Some(n) != e.keys().find(7))
        .unwrap();
    assert!(e.key_entry_snapshot(other).is_none());

    e.settle(2, c.token(), &Outcome::Reject { reason: "bad" }, 5)
        .unwrap();
    let d = (0..2).find_map(|r| e.dead_letter_record(r)).unwrap();
    assert_eq!((d.key, d.version, d.dead_ns, d.attempts), (7, 3, 5, 1));
    assert_eq!(
        (d.payload.as_slice(), d.reason.as_slice()),
        (&b"hello"[..], &b"bad"[..])
    );
    assert_eq!(d.source, c.token());
    assert!(d.word.is_full());
    // Taken for redriving, the record is no longer listed; set back, it is.
    assert!(e.dead_letter_take(d.index, d.word, 1, dlq::REDRIVING));
    assert!(e.dead_letter_record(d.index).is_none());
    assert!(!e.dead_letter_take(d.index, d.word, 1, dlq::REDRIVING));
    e.dead_letter_set(d.index, dlq::FULL);
    assert_eq!(e.dead_letter_record(d.index).map(|r| r.id), Some(d.id));

    let h = e.header_counters();
    // The shared tail is a hint that lags a lone producer's own view.
    assert!(h.tail <= 1 && h.head <= 1);
    assert_eq!(h.dlq_seq, 1);
    assert_eq!(h.tail_lap(4), 0);
    assert!(h.lap_near_tail(e.slot_word(0).lap(), 4));
    let p = e.participant_snapshot(1);
    assert_eq!((p.took, p.freed), (1, 0));
    assert_eq!(e.participant_snapshot(2).freed, 1);
}
