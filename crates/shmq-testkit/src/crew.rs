//! The producers and consumers of a SIGKILL test: helper processes, each
//! start a new instance in the [`Ledger`], marked killed there *before* the
//! SIGKILL is sent (so a consumer that finds a message or key still held by
//! another instance can tell a dead holder from a live one), and all killed
//! when the test ends, however it ends.

use std::process::Child;

use shmq::Queue;

use crate::child::{kill, Work};
use crate::ledger::{kind, Ledger, Sizes, DRAINER};
use crate::rng::Rng;
use crate::scratch::Scratch;

/// One running helper.
pub struct Member {
    /// A producer (else a consumer).
    pub producer: bool,
    /// Its index among its role (kept across restarts).
    pub index: u64,
    /// Its ledger instance (new at every start).
    pub instance: u32,
    /// The process.
    pub child: Child,
}

impl Member {
    /// A readable name.
    pub fn name(&self) -> String {
        let role = if self.producer {
            "producer"
        } else {
            "consumer"
        };
        format!("{role} {} (instance {})", self.index, self.instance)
    }
}

/// The helpers of a run.
pub struct Crew<'a> {
    scratch: &'a Scratch,
    ledger: &'a Ledger,
    count: u64,
    next_instance: u32,
    /// Seeds for the helpers (and the test's own choices).
    pub rng: Rng,
    /// The helpers running now.
    pub members: Vec<Member>,
    /// Helpers that had exited when they were to be killed, or failed.
    pub early_exits: Vec<String>,
    /// Producers and consumers killed.
    pub kills: (u64, u64),
}

impl<'a> Crew<'a> {
    /// A crew of helpers on the scratch queue, with `count` handed to
    /// every helper; instances start after [`DRAINER`].
    pub fn new(scratch: &'a Scratch, ledger: &'a Ledger, count: u64, rng: Rng) -> Crew<'a> {
        Crew {
            scratch,
            ledger,
            count,
            next_instance: DRAINER + 1,
            rng,
            members: Vec::new(),
            early_exits: Vec::new(),
            kills: (0, 0),
        }
    }

    fn spawn(&mut self, producer: bool, index: u64) -> Member {
        let instance = self.next_instance;
        self.next_instance += 1;
        let role = if producer { "producer" } else { "consumer" };
        // The work's index is the ledger instance; the role index is for
        // the names only.
        let child = Work::new(role, &self.scratch.queue, &self.scratch.dir)
            .index(instance as u64)
            .gen(index)
            .count(self.count)
            .seed(self.rng.next())
            .spawn();
        let now = shmq::internals::sys::monotonic_ns();
        self.ledger
            .register(instance, producer, index as u32, child.id(), now);
        Member {
            producer,
            index,
            instance,
            child,
        }
    }

    /// Starts a producer or consumer.
    pub fn start(&mut self, producer: bool, index: u64) {
        let m = self.spawn(producer, index);
        self.members.push(m);
    }

    /// Marks member `k` killed in the ledger, then SIGKILLs and reaps it.
    pub fn kill(&mut self, k: usize) {
        let m = &mut self.members[k];
        self.ledger
            .mark_killed(m.instance, shmq::internals::sys::monotonic_ns());
        if let Some(status) = kill(&mut m.child) {
            self.early_exits
                .push(format!("{} exited by itself: {status}", m.name()));
        }
        if m.producer {
            self.kills.0 += 1;
        } else {
            self.kills.1 += 1;
        }
    }

    /// Kills member `k` and starts it again as a new instance.
    pub fn restart(&mut self, k: usize) {
        self.kill(k);
        let (producer, index) = (self.members[k].producer, self.members[k].index);
        self.members[k] = self.spawn(producer, index);
    }

    /// Kills every member that is a producer (`producers`) or a consumer.
    pub fn kill_all(&mut self, producers: bool) {
        for k in 0..self.members.len() {
            if self.members[k].producer == producers {
                self.kill(k);
            }
        }
    }
}

impl Drop for Crew<'_> {
    fn drop(&mut self) {
        for m in &mut self.members {
            kill(&mut m.child);
        }
    }
}

/// The ledger's file in a run's directory.
const LEDGER: &str = "ledger";

/// Creates the ledger of a run in the scratch directory.
pub fn create_ledger(scratch: &Scratch, sizes: Sizes) -> Ledger {
    Ledger::create(&scratch.file(LEDGER), sizes).expect("create the ledger")
}

/// What a member opens: its queue and the run's ledger.
pub fn attach(work: &Work) -> (Queue, Ledger) {
    let q = Queue::open(&work.queue).unwrap_or_else(|e| panic!("{}: open: {e}", work.role));
    let l =
        Ledger::open(&work.file(LEDGER)).unwrap_or_else(|e| panic!("{}: ledger: {e}", work.role));
    (q, l)
}

/// Records a member's failure in the ledger (the oracle reports it) and
/// exits.
pub fn fail(ledger: &Ledger, work: &Work, what: &str) -> ! {
    ledger.violation(
        kind::WORKER,
        &format!("{} (instance {}): {what}", work.role, work.index),
    );
    eprintln!("helper failed: {what}");
    std::process::exit(3);
}
