//! When this handle's claims were made, by token: a small table read when
//! a claim is settled, for the processing-time histogram.

/// Claim times kept per handle (for the processing-time histogram): twice
/// the queue's capacity, rounded up to a power of two, at most this.
const CLAIM_TABLE_MAX: u64 = 8192;
/// Entries of the claim-time table a token may be kept in (from its hash on).
const CLAIM_PROBES: usize = 4;

/// A claim this handle handed out: when, for the processing-time histogram.
#[derive(Clone, Copy, Default)]
pub(crate) struct ClaimTime {
    pub token: u64,
    pub claimed_ns: u64,
    pub enqueued_ns: u64,
}

/// The claims a handle handed out, by token: when each was made and its
/// message enqueued, for the processing-time histogram. A small hash table
/// of [`CLAIM_PROBES`]-entry buckets; losing an entry loses one sample.
pub(crate) struct ClaimTable {
    entries: Vec<ClaimTime>,
    /// `64 - log2(entries.len())`: the hash's top bits index `entries`.
    shift: u32,
    /// Entries in use: with none (the usual case, only sampled claims are
    /// kept), a settle looks nothing up.
    live: usize,
}

impl ClaimTable {
    /// A table for a queue of `capacity` slots: twice that many entries,
    /// a power of two, between [`CLAIM_PROBES`] and [`CLAIM_TABLE_MAX`].
    pub(super) fn new(capacity: u64) -> ClaimTable {
        let len = (capacity.clamp(1, CLAIM_TABLE_MAX / 2) * 2)
            .next_power_of_two()
            .clamp(CLAIM_PROBES as u64, CLAIM_TABLE_MAX);
        ClaimTable {
            entries: vec![ClaimTime::default(); len as usize],
            shift: 64 - len.trailing_zeros(),
            live: 0,
        }
    }

    /// Where `token`'s entries begin. The token is opaque (its encoding
    /// belongs to the engine), so all of it is mixed: the high half folded
    /// onto the low one, then a multiplicative (Fibonacci) hash, whose top
    /// bits (the index) depend on every bit below them.
    fn home(&self, token: u64) -> usize {
        let folded = token ^ (token >> 32);
        (folded.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    /// Remembers when `token` was claimed (and its message enqueued), in
    /// the first free one of its entries, else over the oldest of them (a
    /// claim never settled through this handle, most likely).
    pub(super) fn note(&mut self, token: u64, claimed_ns: u64, enqueued_ns: u64) {
        let mask = self.entries.len() - 1;
        let home = self.home(token);
        let mut at = home;
        for k in 0..CLAIM_PROBES {
            let i = (home + k) & mask;
            let c = &self.entries[i];
            if c.claimed_ns == 0 || c.token == token {
                at = i;
                break;
            }
            if c.claimed_ns < self.entries[at].claimed_ns {
                at = i;
            }
        }
        if self.entries[at].claimed_ns == 0 {
            self.live += 1;
        }
        self.entries[at] = ClaimTime {
            token,
            claimed_ns,
            enqueued_ns,
        };
    }

    /// The claim and enqueue times of `token`, if remembered; forgets them.
    /// In line up to the usual answer (no entry in use: nothing to look up).
    #[inline(always)]
    pub(super) fn take(&mut self, token: u64) -> (Option<u64>, Option<u64>) {
        if self.live == 0 {
            return (None, None);
        }
        self.take_kept(token)
    }

    /// [`ClaimTable::take`] when some entry is in use.
    #[inline(never)]
    fn take_kept(&mut self, token: u64) -> (Option<u64>, Option<u64>) {
        let mask = self.entries.len() - 1;
        let home = self.home(token);
        for k in 0..CLAIM_PROBES {
            let i = (home + k) & mask;
            let c = self.entries[i];
            if c.token == token && c.claimed_ns != 0 {
                self.entries[i] = ClaimTime::default();
                self.live -= 1;
                return (Some(c.claimed_ns), Some(c.enqueued_ns));
            }
        }
        (None, None)
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    /// Every claim in flight is found again, whatever the token's encoding:
    /// the old `slot << 32 | seq`, a generation over a slot index in the
    /// low bits, and tokens that differ only in their top bits.
    #[test]
    fn claim_times_are_found_whatever_the_token_encoding() {
        type Encode = fn(u64, u64) -> u64;
        let encodings: [(&str, Encode); 3] = [
            ("slot<<32|seq", |slot, gen| slot << 32 | gen),
            ("gen<<20|slot", |slot, gen| gen << 20 | slot),
            ("top bits only", |slot, gen| (slot << 48) ^ (gen << 60)),
        ];
        for cap in [1u64, 4, 1000, 4096, 1 << 20] {
            for (name, token) in encodings {
                let mut t = ClaimTable::new(cap);
                let in_flight = cap.min(CLAIM_TABLE_MAX / 2);
                for gen in 1..4u64 {
                    for slot in 0..in_flight {
                        t.note(token(slot, gen), 10 + slot, 5);
                    }
                    let mut found = 0u64;
                    for slot in 0..in_flight {
                        if t.take(token(slot, gen)) == (Some(10 + slot), Some(5)) {
                            found += 1;
                        }
                    }
                    // A few may share a crowded bucket; nearly all are kept.
                    assert!(
                        found * 100 >= in_flight * 97,
                        "{name}, capacity {cap}: {found} of {in_flight} found"
                    );
                    assert_eq!(t.take(token(0, gen)), (None, None), "{name}: taken twice");
                }
            }
        }
    }

    #[test]
    fn a_full_bucket_gives_up_its_oldest_entry() {
        let mut t = ClaimTable::new(1);
        assert_eq!(t.entries.len(), CLAIM_PROBES);
        for k in 0..CLAIM_PROBES as u64 {
            t.note(100 + k, 1000 + k, 1);
        }
        t.note(7, 5000, 1);
        assert_eq!(t.take(100), (None, None), "the oldest was replaced");
        assert_eq!(t.take(7), (Some(5000), Some(1)));
        assert_eq!(t.take(101), (Some(1001), Some(1)));
        // The same token noted again keeps one entry.
        t.note(9, 6000, 2);
        t.note(9, 6001, 2);
        assert_eq!(t.take(9), (Some(6001), Some(2)));
        assert_eq!(t.take(9), (None, None));
    }
}
