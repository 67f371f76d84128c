//! Ring order, fullness, leases, repairs and the side path.

use super::*;

#[test]
fn fifo_and_full() {
    let e = engine(4);
    for n in 0..4u8 {
        send(&e, 1, &[n]).unwrap();
    }
    assert_eq!(send(&e, 1, &[9]).unwrap_err().status(), Status::Full);
    for n in 0..4u8 {
        let c = e.claim(2, 0).unwrap().unwrap();
        assert_eq!(payload(&e, &c), vec![n]);
        assert_eq!(c.deliveries, 1);
        e.settle(2, c.token(), &Outcome::Ack, 0).unwrap();
    }
    assert!(e.claim(2, 0).unwrap().is_none());
}

#[test]
fn held_message_blocks_only_its_slot() {
    let e = engine(4);
    send(&e, 1, b"slow").unwrap();
    let slow = e.claim(2, 0).unwrap().unwrap();
    // Many laps pass the held slot.
    for n in 0..100u32 {
        send(&e, 1, &n.to_le_bytes()).unwrap();
        let c = e.claim(3, 0).unwrap().unwrap();
        assert_eq!(payload(&e, &c), n.to_le_bytes());
        e.settle(3, c.token(), &Outcome::Ack, 0).unwrap();
    }
    // Three others fit beside it; the fourth is refused.
    for n in 0..3u8 {
        send(&e, 1, &[n]).unwrap();
    }
    assert_eq!(send(&e, 1, b"x").unwrap_err().status(), Status::Full);
    e.settle(2, slow.token(), &Outcome::Ack, 0).unwrap();
}

#[test]
fn late_outcome_gets_lease_lost() {
    let e = engine(2);
    send(&e, 1, b"a").unwrap();
    let c = e.claim(2, 0).unwrap().unwrap();
    // Lease runs out; a repair makes it claimable again.
    let r = e.repair(0, 2_000_000, &|_| false).unwrap();
    assert_eq!(r.redelivered, 1);
    assert_eq!(
        e.settle(2, c.token(), &Outcome::Ack, 2_000_000)
            .unwrap_err()
            .status(),
        Status::LeaseLost
    );
    let again = e.claim(3, 2_000_000).unwrap().unwrap();
    assert_eq!(again.deliveries, 2);
    assert_eq!(payload(&e, &again), b"a");
    e.settle(3, again.token(), &Outcome::Ack, 0).unwrap();
    assert_eq!(
        e.settle(3, again.token(), &Outcome::Ack, 0)
            .unwrap_err()
            .status(),
        Status::LeaseLost
    );
}

#[test]
fn dead_consumer_claim_is_redelivered_and_dead_producer_abandoned() {
    let e = engine(4);
    let r = e.reserve(1, 0, 1).unwrap();
    send(&e, 2, b"b").unwrap();
    let c = e.claim(3, 0).unwrap().unwrap();
    assert_eq!(payload(&e, &c), b"b");
    let rep = e.repair(0, 0, &|o| o == 1 || o == 3).unwrap();
    assert_eq!((rep.abandoned, rep.redelivered), (1, 1));
    assert_eq!(
        e.commit(1, &r, 1, 0, 0, None, 0).unwrap_err().status(),
        Status::Abandoned
    );
    let again = e.claim(2, 0).unwrap().unwrap();
    assert_eq!((payload(&e, &again), again.deliveries), (b"b".to_vec(), 2));
}

#[test]
fn stalled_producer_is_quarantined_until_it_returns() {
    let e = engine(2);
    let stalled = e.reserve(1, 0, 1).unwrap();
    let rep = e.repair(0, 2_000_000, &|_| false).unwrap();
    assert_eq!(rep.abandoned, 1);
    assert_eq!(e.slot_word(stalled.slot).state(), state::ABANDONED);
    // The other slot keeps flowing, lap after lap, past the quarantined one.
    for n in 0..5u8 {
        send(&e, 2, &[n]).unwrap();
        let c = e.claim(3, 0).unwrap().unwrap();
        assert_eq!(payload(&e, &c), vec![n]);
        e.settle(3, c.token(), &Outcome::Ack, 0).unwrap();
    }
    // Its late writes land in its own quarantined slot; its commit fails
    // and frees the slot.
    // SAFETY: a reservation of this test, not yet committed; the payload fits.
    unsafe { e.write_payload(&stalled, b"late") };
    assert_eq!(
        e.commit(1, &stalled, 4, 0, 0, None, 0)
            .unwrap_err()
            .status(),
        Status::Abandoned
    );
    assert_eq!(e.slot_word(stalled.slot).state(), state::FREE);
    assert_eq!(e.occupied(), 0);
    send(&e, 2, b"a").unwrap();
    send(&e, 2, b"b").unwrap();
}

#[test]
fn nack_delay_and_dead_letters() {
    let e = engine(4);
    send(&e, 1, b"m").unwrap();
    let c = e.claim(2, 0).unwrap().unwrap();
    e.settle(
        2,
        c.token(),
        &Outcome::Nack {
            not_before_ns: 500_000,
        },
        0,
    )
    .unwrap();
    assert!(e.claim(2, 100_000).unwrap().is_none());
    let c = e.claim(2, 600_000).unwrap().unwrap();
    assert_eq!(c.deliveries, 2);
    e.settle(2, c.token(), &Outcome::Nack { not_before_ns: 0 }, 600)
        .unwrap();
    let c = e.claim(2, 600).unwrap().unwrap();
    assert_eq!(c.deliveries, 3);
    assert_eq!(
        e.settle(2, c.token(), &Outcome::Nack { not_before_ns: 0 }, 600)
            .unwrap(),
        Settled::DeadLettered
    );
    assert!(e.claim(2, 10_000).unwrap().is_none());
    // Reject goes straight there; the area holds two, the third waits.
    for want in [Settled::DeadLettered, Settled::DlqWaiting] {
        send(&e, 1, b"r").unwrap();
        let c = e.claim(2, 0).unwrap().unwrap();
        assert_eq!(
            e.settle(2, c.token(), &Outcome::Reject { reason: "bad" }, 0)
                .unwrap(),
            want
        );
    }
    assert_eq!(e.slot_word(c.slot).state(), state::FREE);
    let waiting = (0..4)
        .filter(|i| e.slot_word(*i).state() == state::DLQ_WAIT)
        .count();
    assert_eq!(waiting, 1);
}

#[test]
fn a_head_claim_goes_back_to_the_side_path_when_it_moved_meanwhile() {
    let e = engine(4);
    let slow = e.reserve(1, 0, 1).unwrap();
    // A consumer that looked at the side path before the slow message
    // was passed and committed...
    let seen = e.word(hdr::SIDE_DIRTY).load(Ordering::Acquire);
    send(&e, 2, b"2").unwrap();
    e.pass_reservation(slow.slot, e.slot_word(slow.slot));
    // SAFETY: a reservation of this test, not yet committed; the payload fits.
    unsafe { e.write_payload(&slow, b"1") };
    e.commit(1, &slow, 1, 0, 0, None, 0).unwrap();
    // ...must not take the later message at the head.
    let mut t = Tally {
        side_epoch: Some(seen),
        ..Tally::default()
    };
    assert!(e.claim_head(3, 0, &mut t).unwrap().is_none());
    assert!(t.side_moved);
    // A fresh claim takes them in commit order.
    let c = e.claim(3, 0).unwrap().unwrap();
    assert_eq!(payload(&e, &c), b"1");
    let c = e.claim(3, 0).unwrap().unwrap();
    assert_eq!(payload(&e, &c), b"2");
}

#[test]
fn passed_reservation_is_delivered_by_the_side_path() {
    let e = engine(4);
    let slow = e.reserve(1, 0, 1).unwrap();
    send(&e, 2, b"2").unwrap();
    // The consumer passes the slow reservation and takes the next one.
    let c = e.claim(3, 0).unwrap().unwrap();
    assert_eq!(payload(&e, &c), b"2");
    // SAFETY: a reservation of this test, not yet committed; the payload fits.
    unsafe { e.write_payload(&slow, b"1") };
    e.commit(1, &slow, 1, 0, 0, None, 0).unwrap();
    let c = e.claim(3, 0).unwrap().unwrap();
    assert_eq!(payload(&e, &c), b"1");
}

/// G6, G10 (laps alias): producers passing an unclaimed message lap
/// after lap (a reserve/abort loop while no consumer comes) run its
/// slot's lap more than half the lap space ahead of the head, where it
/// reads as behind: the head must still find the message. Only the
/// narrow build (`--cfg shmq_narrow`, 4-bit laps) gets there in a test's
/// time; with 28-bit laps it takes 2^27 laps.
#[test]
fn g6_laps_that_alias_do_not_hide_a_message() {
    if LAP_BITS > 8 {
        return;
    }
    for laps in (1u64 << (LAP_BITS - 1))..(1 << LAP_BITS) {
        let e = engine(2);
        send(&e, 1, b"old").unwrap();
        for _ in 0..laps {
            let r = e.reserve(1, 0, 1).unwrap();
            e.abort(1, &r).unwrap();
        }
        let c = e
            .claim(2, 0)
            .unwrap_or_else(|err| panic!("after {laps} laps: {err}"))
            .unwrap_or_else(|| panic!("after {laps} laps the message is hidden"));
        assert_eq!(payload(&e, &c), b"old");
        e.settle(2, c.token(), &Outcome::Ack, 0).unwrap();
    }
}

/// What a consumer about to sleep learns from the slots: a reservation, a
/// waiting message or a claim keeps it on the short beat (found where the
/// scan starts, or further on); delayed messages alone let it sleep until
/// the first is due.
#[test]
fn quiet_until_tells_what_a_death_could_orphan_from_delayed_messages() {
    let e = engine(4);
    assert_eq!(e.quiet_until(0), Quiet::Until(u64::MAX), "nothing taken");
    let r = e.reserve(1, 0, 1).unwrap();
    assert_eq!(
        e.quiet_until(r.slot + 1),
        Quiet::Busy(r.slot),
        "a reservation"
    );
    e.abort(1, &r).unwrap();
    send(&e, 1, b"m").unwrap();
    assert!(
        matches!(e.quiet_until(0), Quiet::Busy(_)),
        "a waiting message"
    );
    let c = e.claim(2, 0).unwrap().unwrap();
    assert_eq!(e.quiet_until(c.slot), Quiet::Busy(c.slot), "a claim");
    let nack = |c: &Claim, due| {
        e.settle(2, c.token(), &Outcome::Nack { not_before_ns: due }, 0)
            .unwrap()
    };
    // A due time is stored rounded up to the lease word's unit.
    let due_of = |q| match q {
        Quiet::Until(due) => due,
        busy => panic!("{busy:?}: only delayed messages are left"),
    };
    nack(&c, 500_000);
    let first = due_of(e.quiet_until(0));
    assert!(
        (500_000..1_500_000).contains(&first),
        "one delayed: {first}"
    );
    send(&e, 1, b"n").unwrap();
    let d = e.claim(2, 0).unwrap().unwrap();
    assert_eq!(e.quiet_until(0), Quiet::Busy(d.slot), "a claim beside it");
    nack(&d, 100_000);
    let earliest = due_of(e.quiet_until(3));
    assert!(
        earliest >= 100_000 && earliest < first,
        "the earliest due: {earliest}"
    );
    // Claimable at the time said, not before.
    assert!(e.claim(2, earliest - 1).unwrap().is_none());
    let d = e.claim(2, earliest).unwrap().unwrap();
    e.settle(2, d.token(), &Outcome::Ack, earliest).unwrap();
    assert_eq!(due_of(e.quiet_until(0)), first, "the other one");
    let c = e.claim(2, first).unwrap().unwrap();
    e.settle(2, c.token(), &Outcome::Ack, first).unwrap();
    assert_eq!(e.quiet_until(1), Quiet::Until(u64::MAX), "all acked");
}
