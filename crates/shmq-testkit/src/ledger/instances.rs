//! The worker instances (registered, killed, reaped, what each holds now,
//! how it was killed, its stalls) and the local cache of keyed queues (the
//! version applied and the holder of every key).

use std::sync::atomic::{AtomicU64, Ordering};

use super::{Ledger, INSTANCE_WORDS, KEY_WORDS};

impl Ledger {
    fn inst(&self, instance: u32, w: u64) -> &AtomicU64 {
        assert!(
            (instance as u64) < self.sizes.instances,
            "instance {instance} out of range"
        );
        self.word(self.sizes.instances_at() + instance as u64 * INSTANCE_WORDS + w)
    }

    /// Whether `instance` can be registered.
    pub fn has_instance(&self, instance: u32) -> bool {
        (instance as u64) < self.sizes.instances
    }

    /// Records a started worker.
    pub fn register(&self, instance: u32, producer: bool, index: u32, pid: u32, now_ns: u64) {
        self.inst(instance, 2).store(now_ns, Ordering::SeqCst);
        self.inst(instance, 0).store(
            (producer as u64) << 40 | (index as u64 & 0xff) << 32 | pid as u64,
            Ordering::SeqCst,
        );
    }

    /// Marks `instance` as killed at `now_ns`; done before the signal is
    /// sent.
    pub fn mark_killed(&self, instance: u32, now_ns: u64) {
        self.inst(instance, 1)
            .store(now_ns.max(1), Ordering::SeqCst);
    }

    /// Records when the parent reaped the killed `instance`.
    pub fn mark_reaped(&self, instance: u32, now_ns: u64) {
        self.inst(instance, 3)
            .store(now_ns.max(1), Ordering::SeqCst);
    }

    /// Sets what `instance` holds now (see [`busy`](super::busy)).
    pub fn set_busy(&self, instance: u32, what: u64) {
        // Relaxed: a hint for the supervisor, which checks again after the
        // worker stopped.
        self.inst(instance, 4).store(what, Ordering::Relaxed);
    }

    /// What `instance` holds now (see [`busy`](super::busy)).
    pub fn busy(&self, instance: u32) -> u64 {
        self.inst(instance, 4).load(Ordering::SeqCst)
    }

    /// Counts a stall of `instance` (before its SIGSTOP).
    pub fn add_stall(&self, instance: u32) {
        self.inst(instance, 6).fetch_add(1, Ordering::SeqCst);
    }

    /// How many times `instance` was stalled.
    pub fn stalls_of(&self, instance: u32) -> u64 {
        self.inst(instance, 6).load(Ordering::SeqCst)
    }

    /// Notes how `instance` was killed (see [`kill_how`](super::kill_how)).
    pub fn set_kill_how(&self, instance: u32, how: u64) {
        self.inst(instance, 5).store(how, Ordering::SeqCst);
    }

    /// How `instance` was killed (see [`kill_how`](super::kill_how)).
    pub fn kill_how(&self, instance: u32) -> u64 {
        self.inst(instance, 5).load(Ordering::SeqCst)
    }

    /// (killed at, reaped at) of every killed instance that was reaped.
    pub fn kill_times(&self) -> Vec<(u64, u64)> {
        (0..self.sizes.instances as u32)
            .filter_map(|i| {
                let k = self.inst(i, 1).load(Ordering::SeqCst);
                let r = self.inst(i, 3).load(Ordering::SeqCst);
                (k != 0 && r != 0).then_some((k, r))
            })
            .collect()
    }

    /// When `instance` was reaped after its kill.
    pub fn reaped_at(&self, instance: u32) -> Option<u64> {
        match self.inst(instance, 3).load(Ordering::SeqCst) {
            0 => None,
            t => Some(t),
        }
    }

    /// When `instance` was killed (`None`: it was not, as of now).
    pub fn killed_at(&self, instance: u32) -> Option<u64> {
        if !self.has_instance(instance) {
            return None;
        }
        match self.inst(instance, 1).load(Ordering::SeqCst) {
            0 => None,
            t => Some(t),
        }
    }

    fn key_word(&self, queue: usize, key: u64, w: u64) -> &AtomicU64 {
        assert!(
            (queue as u64) < self.sizes.queues && (1..=self.sizes.keys).contains(&key),
            "key {key} of queue {queue} out of range"
        );
        self.word(
            self.sizes.keys_at() + ((queue as u64) * (self.sizes.keys + 1) + key) * KEY_WORDS + w,
        )
    }

    /// The version of `key` applied last to the cache.
    pub fn cached_version(&self, queue: usize, key: u64) -> &AtomicU64 {
        self.key_word(queue, key, 0)
    }

    /// The holder of `key` now: 0 = nobody, else [`holder_word`](super::holder_word).
    pub fn key_holder(&self, queue: usize, key: u64) -> &AtomicU64 {
        self.key_word(queue, key, 1)
    }
}
