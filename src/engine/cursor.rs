//! Where a handle starts its walks: its private views of the shared
//! cursors ([`LazyCursor`]), and how often a producer on a full queue
//! searches it anyway ([`FullSearch`]).

use crate::sync::{AtomicU64, Ordering};

/// How often a producer polling a full queue searches it anyway.
///
/// A producer whose tail slot still holds a message looks ahead for a slot
/// freed out of ring order (G2: a held message costs its own slot only).
/// On a full queue whose consumer works in order there is none, and reading
/// a lap of slot words for every message cost the producer most of its time
/// and the consumer a cache-line invalidation for every slot it then wrote
/// (`perf`: 20% of a one-to-one run in that search). So the producer first
/// sums the participants' tallies ([`Engine::occupied`]): when every slot
/// is taken, there is nothing to find. A crash between a slot CAS and its
/// tally can only leave the tallies too low (see [`Engine::transit_free`]),
/// which costs a search; should they ever read too high (a scribbled
/// entry), every this many answers from the tallies the producer searches
/// the slots themselves, and searches every time while that finds room.
#[derive(Default)]
pub(super) struct FullSearch {
    /// Answers given from the tallies since the last search.
    pub(super) uses: std::sync::atomic::AtomicU64,
    /// The last search found a free slot while the tallies said every slot
    /// was taken (a crash left them one too high): search every time until
    /// a search agrees with them again, instead of answering `Full` from
    /// them with a slot free.
    pub(super) tallies_wrong: std::sync::atomic::AtomicBool,
}

/// How many polls the tallies answer before the search runs again.
pub(super) const FULL_SEARCH_EVERY: u64 = 256;

/// A handle's private view of a shared cursor (`TAIL` or `HEAD`), so that a
/// lone producer or consumer does not pay a locked CAS on the shared cursor
/// line for every message.
///
/// Every position below a cursor is decided; the shared cursor is only a
/// lower bound of the true one (readers walk on from it, slot by slot, over
/// decided positions: that is how a crash between a slot CAS and the cursor
/// move is tolerated already). The position after the last one this handle
/// decided is a lower bound too, so a walk starts at the larger of the two.
/// The shared cursor is moved on (never back: one CAS from the value read,
/// only forward) after every decision while others move it too, and every
/// [`LAZY_CURSOR_EVERY`] positions while this handle is alone on it, so
/// that it lags the truth by less than that and readers that come and go
/// walk only a few decided slots.
///
/// Process memory, one per handle; std atomics only because `Engine` is
/// shared between the threads of the loom models.
#[derive(Default)]
pub(super) struct LazyCursor {
    /// The next position after the last one this handle decided.
    pub(super) next: std::sync::atomic::AtomicU64,
    /// The value this handle last stored into the shared cursor.
    pub(super) published: std::sync::atomic::AtomicU64,
}

/// How many positions a lone handle decides between two moves of the
/// shared cursor (fewer for tiny rings, where `verify` expects the cursor
/// within a lap of the slots).
pub(super) const LAZY_CURSOR_EVERY: u64 = 16;

impl LazyCursor {
    /// Where a walk starts: the shared cursor or this handle's next
    /// position, whichever is further.
    #[inline]
    pub(super) fn start(&self, shared: &AtomicU64) -> u64 {
        // Relaxed (both): lower bounds; the slot words decide.
        let mine = self.next.load(std::sync::atomic::Ordering::Relaxed);
        shared.load(Ordering::Relaxed).max(mine)
    }

    /// Records that every position below `p` is decided and moves the
    /// shared cursor on when due.
    #[inline]
    pub(super) fn leave(&self, shared: &AtomicU64, p: u64, every: u64) {
        use std::sync::atomic::Ordering as O;
        // Relaxed: private to this handle.
        self.next.store(p, O::Relaxed);
        // Relaxed: the shared cursor is a hint (see above).
        let cur = shared.load(Ordering::Relaxed);
        if cur >= p {
            return;
        }
        let alone = cur == self.published.load(O::Relaxed);
        if !alone || p - cur >= every {
            // One try: if it fails, someone else moved the cursor on.
            // Release: a reader that sees the cursor past a position and
            // then reads its slot sees the decision (see `below_tail`).
            if shared
                .compare_exchange(cur, p, Ordering::Release, Ordering::Relaxed)
                .is_ok()
            {
                self.published.store(p, O::Relaxed);
            }
        }
    }
}

/// The reservation at the head that stopped this handle's last patient
/// claim, and since when (see [`Engine::claim_patiently`]).
///
/// Process memory, one per handle, as [`LazyCursor`]; threads of one
/// engine racing on it (the loom models) only restart or shorten a wait,
/// which a pass tolerates anyway (any consumer may pass any reservation).
#[derive(Default)]
pub(super) struct HeadWait {
    /// The slot + 1 (0: none).
    pub(super) slot_plus_one: std::sync::atomic::AtomicU64,
    /// Its word when first seen.
    pub(super) word: std::sync::atomic::AtomicU64,
    /// When it was first seen (precise time).
    pub(super) since: std::sync::atomic::AtomicU64,
}
