//! Guarantees under wrap-around, stalls and crashes (G1, G3, G4, G7).

use super::*;

/// G3 (hole: tokens wrapped with the word's sequence): a consumer whose
/// claim was lost keeps its token; when the same consumer later holds
/// another claim of the slot at the same word sequence, the old token
/// must still be refused.
#[test]
fn g3_a_late_outcome_never_settles_a_later_claim_after_the_sequence_wraps() {
    let e = engine(1);
    send(&e, 1, b"old").unwrap();
    let stale = e.claim(2, 0).unwrap().unwrap();
    // Its lease runs out: redelivered to another consumer, acked.
    e.repair(0, 2_000_000, &|_| false).unwrap();
    let other = e.claim(3, 2_000_000).unwrap().unwrap();
    e.settle(3, other.token(), &Outcome::Ack, 2_000_000)
        .unwrap();
    // Messages flow until consumer 2 holds a claim of the slot whose
    // word has the stale claim's sequence again (2^SEQ_BITS
    // transitions; an abort now and then shifts the sequence so that
    // every value comes round).
    let mut rounds = 0u64;
    let fresh = loop {
        rounds += 1;
        assert!(rounds < 4 << SEQ_BITS, "the sequence never came round");
        if rounds % 7 == 0 {
            let r = e.reserve(1, 0, 1).unwrap();
            e.abort(1, &r).unwrap();
        }
        send(&e, 1, b"new").unwrap();
        let c = e.claim(2, 0).unwrap().unwrap();
        if c.seq == stale.seq {
            break c;
        }
        e.settle(2, c.token(), &Outcome::Ack, 0).unwrap();
    };
    assert_ne!(fresh.token(), stale.token());
    assert_eq!(
        e.settle(2, stale.token(), &Outcome::Ack, 0)
            .unwrap_err()
            .status(),
        Status::LeaseLost
    );
    let mut buf = [0u8; 32];
    assert_eq!(
        e.read_claimed(2, stale.token(), &mut buf)
            .unwrap_err()
            .status(),
        Status::LeaseLost
    );
    // The fresh claim is untouched and still held.
    assert_eq!(e.slot_word(0).state(), state::CLAIMED);
    assert_eq!(e.read_claimed(2, fresh.token(), &mut buf).unwrap(), 3);
    e.settle(2, fresh.token(), &Outcome::Ack, 0).unwrap();
}

/// G3, G4: a claimer that stalls between its claim CAS and stamping its
/// claim, while its lease runs out and the message is claimed again,
/// cannot take the new claim's token or disturb it when it resumes.
#[test]
fn g3_a_claimer_stalled_before_its_stamp_cannot_stamp_a_lost_claim() {
    let e = engine(2);
    send(&e, 1, b"m").unwrap();
    // Claimer 2 makes its claim CAS by hand and stalls before stamping.
    let w = e.slot_word(0);
    let mine = e.transit(0, w, state::CLAIMED, 2).unwrap();
    // Its lease expires (stamped lazily by the repair), the message is
    // claimed by 3.
    e.repair(0, 0, &|_| false).unwrap();
    e.repair(0, 2_000_000, &|_| false).unwrap();
    let c3 = e.claim(3, 2_000_000).unwrap().unwrap();
    assert_eq!(c3.deliveries, 2);
    // 2 resumes: its claim is gone.
    assert!(e.finish_claim(0, mine, 2_000_000).unwrap().is_none());
    // 3's claim still settles.
    e.settle(3, c3.token(), &Outcome::Ack, 2_000_000).unwrap();
}

/// G4 (hole: two crashes in one dead-letter move wrote it twice): the
/// mover dies after publishing the record and before freeing the slot,
/// a second mover takes the move over and dies at once; the third
/// finds the record and only frees the slot.
#[test]
fn g4_two_crashes_in_one_dead_letter_move_write_it_once() {
    let e = engine(2);
    send(&e, 1, b"poison").unwrap();
    let c = e.claim(2, 0).unwrap().unwrap();
    let w = e.slot_word(c.slot);
    // Mover 2: to DLQ_WAIT, record written and published...
    let moving = e.transit(c.slot, w, state::DLQ_WAIT, 2).unwrap();
    assert!(e.finish_dead_letter(2, c.slot, moving, "bad", 0).unwrap());
    // ...but (as if it died before its free CAS) the slot still shows it.
    let freed = e.slot_word(c.slot);
    let before_free = SlotWord::new(state::DLQ_WAIT, 2, moving.seq(), freed.lap());
    e.slot_field(c.slot, slot::WORD)
        .store(before_free.0, Ordering::SeqCst);
    // Mover 3 takes the move over and dies right after its CAS.
    e.transit(c.slot, before_free, state::DLQ_WAIT, 3).unwrap();
    // Participant 1 repairs after both.
    let r = e.repair(1, 0, &|o| o == 2 || o == 3).unwrap();
    assert_eq!(r.dead_lettered, 1);
    assert_eq!(e.slot_word(c.slot).state(), state::FREE);
    let full = (0..e.layout.params.dlq_capacity)
        .filter(|&rec| e.dead_letter_word(rec).is_full())
        .count();
    assert_eq!(full, 1, "the dead letter was written twice");
}

/// G1 (hole: room fell to the lookahead): with most slots freed out of
/// ring order and a run of unclaimed messages at the tail longer than
/// the lookahead, a send still finds room.
#[test]
fn g1_full_only_when_every_slot_is_taken() {
    let cap = 64;
    let e = engine(cap);
    // 24 messages, then 40 slots reserved and given back.
    for _ in 0..24 {
        send(&e, 1, b"x").unwrap();
    }
    let rs: Vec<_> = (0..40).map(|_| e.reserve(1, 0, 1).unwrap()).collect();
    for r in &rs {
        e.abort(1, r).unwrap();
    }
    // The tail is now at the 24 unclaimed messages (a lap on): 40 more
    // sends must succeed, and only the 41st is `Full`.
    for n in 0..40 {
        assert!(send(&e, 1, b"y").is_ok(), "send {n} refused with room");
    }
    assert_eq!(send(&e, 1, b"z").unwrap_err().status(), Status::Full);
    // Nothing was lost or reordered: 24 x then 40 y.
    let mut got = Vec::new();
    while let Some(c) = e.claim(2, 0).unwrap() {
        got.push(payload(&e, &c)[0]);
        e.settle(2, c.token(), &Outcome::Ack, 0).unwrap();
    }
    let mut want = vec![b'x'; 24];
    want.extend(vec![b'y'; 40]);
    assert_eq!(got, want);
}

/// G2, G7 (hole: a stalled key taker wedged its key): a consumer that
/// took a key and stopped before its claim CAS holds it for a lease at
/// most; then another consumer gets the message, and the staller's
/// late CAS fails.
#[test]
fn g7_a_stalled_key_taker_holds_its_key_for_a_lease_at_most() {
    let e = keyed_engine(4, 2);
    send_keyed(&e, 1, 7, 1, b"v1");
    // A first delivery fails: the message waits on the side path.
    let c = e.claim(2, 0).unwrap().unwrap();
    e.settle(2, c.token(), &Outcome::Nack { not_before_ns: 0 }, 0)
        .unwrap();
    let (i, w) = (c.slot, e.slot_word(c.slot));
    assert_eq!(w.state(), state::PENDING);
    // Consumer 2 takes the key for it and stalls before its claim CAS.
    assert_eq!(e.acquire_key(2, 7, i, w, 0), KeyTake::Taken);
    // Within its lease the key is in transit: nobody else claims.
    assert!(e.claim(3, 500_000).unwrap().is_none());
    // After it, 3 takes the key over and the message.
    let c = e
        .claim(3, 2_000_000)
        .unwrap()
        .expect("the stalled taker wedged its key");
    assert_eq!((payload(&e, &c), c.deliveries), (b"v1".to_vec(), 2));
    // 2 resumes: its claim CAS fails, and giving the key back does not
    // release 3's hold.
    let held = e.slot_word(c.slot);
    assert!(e.transit(i, w, state::CLAIMED, 2).is_none());
    e.key_claimed(2, 7, i, w, false);
    assert_eq!(e.slot_word(c.slot), held);
    send_keyed(&e, 1, 7, 2, b"v2");
    assert!(e.claim(2, 2_000_000).unwrap().is_none(), "key held by 3");
    e.settle(3, c.token(), &Outcome::Ack, 2_000_000).unwrap();
    let c = e.claim(2, 2_000_000).unwrap().unwrap();
    assert_eq!(payload(&e, &c), b"v2");
}
