//! The comparison of the reference state with the queue file after every
//! step: each slot's state, owner, token, key, version, payload and due
//! time; the dead letters (payload, attempts, key, version, record id);
//! what the model cannot know in advance is taken from the file and
//! checked (a waiting message moved to the dead letters by a maintenance
//! pass inside some call, a stale message a claim completed).

use super::file::{self, due_of, field, word};
use super::payload::payload;
use super::state::{Model, Msg, St};
use shmq::internals::layout::slot;
use shmq::internals::ring::state;
use shmq::Queue;

/// Messages waiting for room in the dead letters that a maintenance pass
/// moved there (their slot left `DLQ_WAIT` and they are listed): the model
/// moves them too and returns them.
pub fn waiting_moves(q: &Queue, m: &mut Model) -> Result<Vec<(u64, Msg)>, String> {
    let waiting: Vec<u64> = m
        .msgs
        .iter()
        .filter(|(_, x)| x.st == St::DlqWait)
        .map(|(id, _)| *id)
        .collect();
    if waiting.is_empty() {
        return Ok(Vec::new());
    }
    let listed = file::dead_letters(q)?;
    let mut moved = Vec::new();
    for id in waiting {
        let slot = m.msgs[&id].slot;
        let left = word(q, slot).state() != state::DLQ_WAIT;
        if left != listed.contains_key(&id) {
            return Err(format!(
                "message {id} waiting for room in the dead letters: its slot {slot} is {:?}, \
                 listed {}",
                word(q, slot),
                listed.contains_key(&id)
            ));
        }
        if left {
            if m.dlq.len() >= m.p.dlq_capacity {
                return Err(format!(
                    "message {id} left DLQ_WAIT although the dead letters are full"
                ));
            }
            moved.push((id, m.waiting_moved(id)));
        }
    }
    Ok(moved)
}

/// Every slot agrees with the model. `owner(h)`: the participant index of
/// handle `h`. Returns the messages the model has claimable, older than
/// their key's last acked version, whose slot is free: a claim completed
/// them without delivery (the caller decides whether that was allowed).
pub fn slots(q: &Queue, m: &Model, owner: impl Fn(usize) -> u64) -> Result<Vec<u64>, String> {
    let mut by_slot = vec![None; m.p.capacity as usize];
    for (id, x) in &m.msgs {
        if let Some(other) = by_slot[x.slot as usize].replace(*id) {
            return Err(format!(
                "model: messages {other} and {id} share slot {}",
                x.slot
            ));
        }
    }
    let mut completed = Vec::new();
    for i in 0..m.p.capacity {
        let w = word(q, i);
        let Some(id) = by_slot[i as usize] else {
            if w.state() != state::FREE {
                return Err(format!("slot {i} is {w:?}, the model has it free"));
            }
            continue;
        };
        let x = &m.msgs[&id];
        if x.st.is_ready() && m.doomed(x) && w.state() == state::FREE {
            completed.push(id);
            continue;
        }
        let ok = match x.st {
            St::Reserved {
                h,
                quarantined: false,
            } => matches!(w.state(), state::RESERVED | state::PASSED) && w.owner() == owner(h),
            St::Reserved {
                h,
                quarantined: true,
            } => w.state() == state::ABANDONED && w.owner() == owner(h),
            St::Fresh => matches!(w.state(), state::READY | state::PENDING),
            St::Redeliver => w.state() == state::PENDING,
            St::Delayed { due } => {
                w.state() == state::DELAYED && due.map_or(true, |d| d == due_of(q, i))
            }
            St::Claimed { h, token, .. } => {
                w.state() == state::CLAIMED
                    && w.owner() == owner(h)
                    && q.engine().claim_token(i) == token
            }
            St::DlqWait => w.state() == state::DLQ_WAIT,
        };
        if !ok {
            return Err(format!(
                "slot {i} is {w:?}, the model has message {id} {x:?}"
            ));
        }
        if matches!(x.st, St::Reserved { .. }) {
            continue;
        }
        let (key, version) = (field(q, i, slot::KEY), field(q, i, slot::VERSION));
        if (key, version) != (x.key, x.version) {
            return Err(format!(
                "slot {i} holds key {key} version {version}, the model has message {id} {x:?}"
            ));
        }
        let data = file::payload_of(q, i, x.len);
        if data != payload(id, x.len) {
            return Err(format!("slot {i} holds {data:?}, not message {id}"));
        }
    }
    Ok(completed)
}

/// The dead-letter area agrees with the model: the same messages, each
/// with its payload, attempts, key and version, and a record id that never
/// changes (learnt the first time it is seen).
pub fn dead_letters(q: &Queue, m: &mut Model) -> Result<(), String> {
    let listed = file::dead_letters(q)?;
    for (id, d) in &listed {
        let Some(want) = m.dlq.get_mut(id) else {
            return Err(format!(
                "dead letter {d:?} (message {id}) is not in the model {:?}",
                m.dlq
            ));
        };
        let got = (d.attempts, d.key, d.version, d.payload.len());
        if got != (want.attempts, want.key, want.version, want.len)
            || d.payload != payload(*id, want.len)
        {
            return Err(format!(
                "dead letter of {id} is {d:?}, the model says {want:?}"
            ));
        }
        if want.record.is_some_and(|r| r != d.id) {
            return Err(format!("dead letter of {id} changed its id"));
        }
        want.record = Some(d.id);
    }
    if listed.len() != m.dlq.len() {
        return Err(format!(
            "dead letters {:?}, the model has {:?}",
            listed.keys().collect::<Vec<_>>(),
            m.dlq.keys().collect::<Vec<_>>()
        ));
    }
    Ok(())
}
