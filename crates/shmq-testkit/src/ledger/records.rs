//! The message ids and their records: the producer's intent and send, the
//! consumer's claims, phases and outcomes.

use std::sync::atomic::{AtomicU64, Ordering};

use super::words::{
    phase, send_state, ClaimWord, OutcomeCounts, OutcomeKind, SEND_DEAD, SEND_STATE_MASK,
};
use super::{Ledger, H_NEXT_ID, RECORD_WORDS};

impl Ledger {
    /// Allocates `n` consecutive ids; `None` when the ledger is full.
    pub fn alloc(&self, n: u64) -> Option<u64> {
        // Relaxed: the counter only hands out distinct numbers; what is
        // written to the records is published by their own stores.
        let first = self.word(H_NEXT_ID).fetch_add(n, Ordering::Relaxed);
        (first + n <= self.sizes.records).then_some(first)
    }

    /// Ids handed out so far (capped at the capacity).
    pub fn next_id(&self) -> u64 {
        self.word(H_NEXT_ID)
            .load(Ordering::SeqCst)
            .min(self.sizes.records)
    }

    fn rec(&self, id: u64, w: u64) -> &AtomicU64 {
        assert!(id < self.sizes.records, "message id {id} out of range");
        self.word(self.sizes.records_at() + id * RECORD_WORDS + w)
    }

    /// Before the first try to send `id`: its queue, key and version (0 when
    /// the engine chooses it).
    pub fn intent(&self, id: u64, queue: usize, producer: u32, key: u64, version: u64) {
        self.rec(id, 1).store(key, Ordering::SeqCst);
        self.rec(id, 2).store(version, Ordering::SeqCst);
        self.rec(id, 0).store(
            send_state::INTENT | (queue as u64 & 0xf) << 4 | (producer as u64) << 32,
            Ordering::SeqCst,
        );
    }

    /// The send of `id` ended: `state` is SENT, REFUSED or NOT_SENT;
    /// `version` is the one the message carries.
    pub fn sent(&self, id: u64, state: u64, version: u64) {
        self.rec(id, 2).store(version, Ordering::SeqCst);
        let w = self.rec(id, 0);
        let old = w.load(Ordering::SeqCst);
        w.store((old & !SEND_STATE_MASK) | state, Ordering::SeqCst);
    }

    /// Records the version the engine gave `id` (learnt from its delivery).
    pub fn sent_version(&self, id: u64, version: u64) {
        self.rec(id, 2).store(version, Ordering::SeqCst);
    }

    /// (state, queue, dead-lettered, producer instance) of `id`.
    pub fn send_of(&self, id: u64) -> (u64, usize, bool, u32) {
        let w = self.rec(id, 0).load(Ordering::SeqCst);
        (
            w & SEND_STATE_MASK,
            ((w >> 4) & 0xf) as usize,
            w & SEND_DEAD != 0,
            (w >> 32) as u32,
        )
    }

    /// (key, version) of `id`.
    pub fn key_version_of(&self, id: u64) -> (u64, u64) {
        (
            self.rec(id, 1).load(Ordering::SeqCst),
            self.rec(id, 2).load(Ordering::SeqCst),
        )
    }

    /// Marks `id` dead-lettered; `false` if it already was.
    pub fn mark_dead_lettered(&self, id: u64) -> bool {
        self.rec(id, 0).fetch_or(SEND_DEAD, Ordering::SeqCst) & SEND_DEAD == 0
    }

    /// The claim word of `id`.
    pub fn claim_of(&self, id: u64) -> ClaimWord {
        ClaimWord::decode(self.rec(id, 3).load(Ordering::SeqCst))
    }

    /// Records a claim of `id` (made by a claim call that started at
    /// `called_ns` and returned at `claimed_ns`) and returns the word it
    /// replaced with the call time of that older claim.
    pub fn record_claim(
        &self,
        id: u64,
        delivery: u32,
        instance: u32,
        called_ns: u64,
        claimed_ns: u64,
    ) -> (ClaimWord, u64) {
        let w = self.rec(id, 3);
        let t = self.rec(id, 4);
        let mut cur = w.load(Ordering::SeqCst);
        loop {
            // The time of the claim we replace: written before its claim
            // word, so it is the one of `cur` (two claimers of one message
            // at once are a violation in themselves).
            let old_t = t.load(Ordering::SeqCst);
            let old = ClaimWord::decode(cur);
            let new = ClaimWord {
                delivery,
                phase: phase::CLAIMED,
                fresh: old.fresh + (delivery == 1) as u32,
                instance,
            };
            t.store(called_ns, Ordering::SeqCst);
            match w.compare_exchange(cur, new.encode(), Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => {
                    self.rec(id, 6).store(claimed_ns, Ordering::SeqCst);
                    return (old, old_t);
                }
                Err(x) => {
                    t.store(old_t, Ordering::SeqCst);
                    cur = x;
                }
            }
        }
    }

    /// When the claim call of the latest recorded claim of `id` started.
    pub fn claim_time_of(&self, id: u64) -> u64 {
        self.rec(id, 4).load(Ordering::SeqCst)
    }

    /// When the claim call of the latest recorded claim of `id` returned
    /// (0 while its claimer has not written it yet).
    pub fn claim_return_of(&self, id: u64) -> u64 {
        self.rec(id, 6).load(Ordering::SeqCst)
    }

    /// Moves the claim of `id` recorded by `instance` with `delivery` to
    /// phase `to`; leaves the word alone (and returns it) when somebody
    /// else's claim replaced ours meanwhile.
    pub fn record_phase(
        &self,
        id: u64,
        instance: u32,
        delivery: u32,
        to: u8,
    ) -> Result<(), ClaimWord> {
        let w = self.rec(id, 3);
        let mut cur = w.load(Ordering::SeqCst);
        loop {
            let old = ClaimWord::decode(cur);
            if old.instance != instance || old.delivery != delivery.min(0xffff) {
                return Err(old);
            }
            let new = ClaimWord { phase: to, ..old };
            match w.compare_exchange(cur, new.encode(), Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return Ok(()),
                Err(x) => cur = x,
            }
        }
    }

    /// Counts an outcome of `id` (saturating at 0xffff).
    pub fn add_outcome(&self, id: u64, k: OutcomeKind) {
        let shift = k as u64;
        let w = self.rec(id, 5);
        let _ = w.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
            ((v >> shift) & 0xffff < 0xffff).then_some(v + (1 << shift))
        });
    }

    /// The outcome counts of `id`.
    pub fn outcomes_of(&self, id: u64) -> OutcomeCounts {
        let v = self.rec(id, 5).load(Ordering::SeqCst);
        OutcomeCounts {
            acks: v & 0xffff,
            nacks: (v >> 16) & 0xffff,
            lease_lost: (v >> 32) & 0xffff,
        }
    }
}
