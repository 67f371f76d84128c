//! The grammar of `shmq torture` and of its worker processes.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::values::parse_duration;

pub(super) const TORTURE_HELP: &str = "\
Examples:
  shmq torture                                  # 10 s, 2 producers + 3 consumers, 3 queues
  shmq torture --kills 10000 --json torture.json
  shmq torture --events 100000 --json torture.json   # kills and stalls
  shmq torture --secs 60 --queues fifo --keys 100 --producers 3 --consumers 3
  shmq torture --kills 200 --rate 0 --capacity 16    # unpaced, small queues: often full

Producer and consumer processes share a keyless queue, a keyed FIFO queue and
a keyed latest-only queue. Every --min-interval..--max-interval one of them,
chosen at random, is SIGKILLed and started again (one kill in
--double-kill-one-in takes a second victim while the survivors repair after
the first), or, one event in --stall-one-in, SIGSTOPped past the lease (a
consumer holding claims) or the reservation timeout (a producer holding a
reservation) and SIGCONTed: its late ack must get LeaseLost, its late commit
Abandoned. A ledger outside the queues
records every send that returned Ok and every claim and ack; at the end the
workers are killed, the queues drained, and the run checks that every sent
message was acked or dead-lettered (or, keyed, superseded by a newer version),
that nothing was torn or delivered fresh twice, that no two consumers held a
key at once, that per-key versions never went backwards and end at the newest
acked, that no late outcome was accepted, that the engine's ack counter lies
between the recorded acks and those plus the acks under way at a kill, that
queued, in-flight and reserved messages never exceed the capacity and that
exactly the capacity fits once drained, that the time from a consumer's
SIGKILL to the next claim of a message it held stays under --max-death-p50
and --max-death-p99, and that `verify` passes. It reports the events, the
messages, the redeliveries, the late outcomes and that latency.

Exits 0 when every check passed, 1 naming the violations otherwise (the run's
files are then kept for a post-mortem).";

/// `shmq torture`.
#[derive(Args, Debug, Clone)]
pub struct TortureArgs {
    /// Producer processes.
    #[arg(long, default_value_t = 2)]
    pub producers: u32,
    /// Consumer processes (at least 3 when there are stalls: one may be
    /// stalled, and a second is never killed while it is).
    #[arg(long, default_value_t = 3)]
    pub consumers: u32,
    /// Run this long (e.g. 60, 90s, 10m); 10s when neither this nor --kills
    /// is given.
    #[arg(long, value_parser = parse_duration)]
    pub secs: Option<Duration>,
    /// Stop after this many kills.
    #[arg(long)]
    pub kills: Option<u64>,
    /// Stop after this many events (kills and stalls).
    #[arg(long)]
    pub events: Option<u64>,
    /// One event in N is a stall (SIGSTOP past the lease or the reservation
    /// timeout, then SIGCONT) instead of a kill (0 = no stalls).
    #[arg(long, default_value_t = 6)]
    pub stall_one_in: u64,
    /// One kill in N is a double kill: a second victim 0-3 ms after the
    /// first died, while the survivors repair after it (0 = none).
    #[arg(long, default_value_t = 8)]
    pub double_kill_one_in: u64,
    /// The queues' lease (stalled consumers' claims are taken back after
    /// it).
    #[arg(long, default_value = "200ms", value_parser = parse_duration)]
    pub lease: Duration,
    /// The queues' reservation timeout (stalled producers' reservations are
    /// abandoned after it).
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    pub reservation_timeout: Duration,
    /// Fail when the median time from a consumer's SIGKILL to the next claim
    /// of a message it held is longer.
    #[arg(long, default_value = "10ms", value_parser = parse_duration)]
    pub max_death_p50: Duration,
    /// Fail when the 99th percentile of that time is longer (it must stay
    /// well under the lease: deaths are detected, not waited out).
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    pub max_death_p99: Duration,
    /// Shortest pause between two kills.
    #[arg(long, default_value = "5ms", value_parser = parse_duration)]
    pub min_interval: Duration,
    /// Longest pause between two kills.
    #[arg(long, default_value = "50ms", value_parser = parse_duration)]
    pub max_interval: Duration,
    /// How long a killed worker stays dead before it is started again.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub restart_delay: Duration,
    /// The queues: keyless, fifo (keyed), latest-only (keyed).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "keyless,fifo,latest-only"
    )]
    pub queues: Vec<crate::torture::QueueKind>,
    /// Keys of each keyed queue.
    #[arg(long, default_value_t = 1000)]
    pub keys: u64,
    /// Slots of each queue.
    #[arg(long, default_value_t = 64)]
    pub capacity: u64,
    /// Failed deliveries before a message is dead-lettered.
    #[arg(long, default_value_t = 5)]
    pub max_deliveries: u32,
    /// One message in N is poison: always nacked, so it ends in the dead
    /// letters (0 = none).
    #[arg(long, default_value_t = 256)]
    pub poison_one_in: u64,
    /// Messages per second per producer (0 = as fast as they can).
    #[arg(long, default_value_t = 5000)]
    pub rate: u64,
    /// Most message ids the ledger records (32 bytes each, taken as used);
    /// producers stop sending when they run out.
    #[arg(long, default_value_t = 100_000_000)]
    pub max_messages: u64,
    /// Where the run's directory is made (default /dev/shm, else the
    /// temporary directory).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Keep the run's directory (queues, ledger, violations.log).
    #[arg(long)]
    pub keep: bool,
    /// Seed of the victims, pauses and operation mixes.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Write the report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Inject a fault, to show that the checks catch it (tests).
    #[arg(long, hide = true)]
    pub inject: Option<crate::torture::Fault>,
}

/// `shmq __torture-worker`.
#[derive(Args, Debug)]
pub struct TortureWorkerArgs {
    /// The run directory.
    #[arg(long)]
    pub dir: PathBuf,
    /// A producer (else a consumer).
    #[arg(long)]
    pub producer: bool,
    /// Index among its role.
    #[arg(long)]
    pub index: u32,
    /// Instance number in the ledger.
    #[arg(long)]
    pub instance: u32,
    /// Random seed.
    #[arg(long)]
    pub seed: u64,
    /// The parent's pid.
    #[arg(long)]
    pub parent: u32,
}
