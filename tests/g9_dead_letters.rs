//! G9: `verify` tells a sound file from a broken one. A message waiting for
//! room in a full dead-letter area is a valid state, whoever moved it there
//! and whether or not that participant is still attached.

use shmq::{Options, Queue, Timeout};
use shmq_testkit::{unique_path, TempFile};

fn sound(q: &Queue, when: &str) {
    let report = q.verify();
    assert!(report.problems.is_empty(), "{when}: {:?}", report.problems);
}

#[test]
fn g9_a_message_waiting_for_dead_letter_room_is_sound_after_its_mover_closes() {
    let p = unique_path("g9-dlq");
    let _cleanup = TempFile(p.clone());
    drop(
        Queue::create(
            &p,
            &Options {
                capacity: 4,
                max_message_size: 64,
                dlq_capacity: 1,
                ..Options::default()
            },
        )
        .unwrap(),
    );
    let consumer = Queue::open(&p).unwrap();
    consumer.send(b"first", Timeout::TryOnce).unwrap();
    consumer.send(b"second", Timeout::TryOnce).unwrap();
    // The first fills the dead-letter area; the second waits for room.
    consumer
        .claim(Timeout::TryOnce)
        .unwrap()
        .reject("bad")
        .unwrap();
    consumer
        .claim(Timeout::TryOnce)
        .unwrap()
        .reject("bad too")
        .unwrap();
    let tool = Queue::inspect(&p).unwrap();
    let st = tool.stats();
    assert_eq!((st.dead_letters, st.dlq_waiting), (1, 1));
    sound(&tool, "while its mover is attached");

    consumer.close().unwrap();
    assert_eq!(tool.stats().dlq_waiting, 1);
    sound(&tool, "after its mover closed");

    // `shmq recover` through an inspection handle: the move is tried again,
    // finds no room, and the message goes on waiting.
    tool.recover().unwrap();
    assert_eq!(tool.stats().dlq_waiting, 1);
    sound(&tool, "after recover");

    // Room appears: the next repair moves it.
    assert_eq!(tool.dlq_purge(None).unwrap(), 1);
    tool.recover().unwrap();
    let st = tool.stats();
    assert_eq!((st.dead_letters, st.dlq_waiting), (1, 0));
    assert_eq!(tool.dlq_list()[0].payload, b"second");
    sound(&tool, "after the move");
}
