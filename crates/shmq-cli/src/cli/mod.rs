//! The command line grammar: every subcommand, option and help text of
//! `shmq`, declared with clap's derive API, plus the parsers of the value
//! forms the options take (durations such as `250ms`, octal file modes).
//!
//! One file per group of commands: `queue_file` (the commands on one queue
//! file: create, info, stats, serve, send, recv, peek, dlq, verify, recover),
//! `torture`, `bench`, `demo`, and `values` (the parsers of the value forms).
//! This file holds the command line and the list of commands.

mod bench;
mod bridge;
mod demo;
mod migrate;
mod queue_file;
mod torture;
mod values;

use clap::{Parser, Subcommand};

pub use bench::{BenchCmdArgs, BenchLoopArgs, BenchPeerArgs};
pub use bridge::{BridgeArgs, BridgeCommon, BridgeDirection};
pub use demo::{DemoArgs, Role, RoleArgs};
pub use migrate::MigrateArgs;
pub use queue_file::{
    CreateArgs, DlqAction, DlqArgs, InfoArgs, PeekArgs, PurgeArgs, RecoverArgs, RecvArgs, SendArgs,
    ServeArgs, StatsArgs, TopArgs, VerifyArgs,
};
use torture::TORTURE_HELP;
pub use torture::{TortureArgs, TortureWorkerArgs};
pub use values::Wait;

const EXAMPLES: &str = "\
Examples:
  shmq create /dev/shm/orders --capacity 1024 --max-message-size 512
  echo 'order 7' | shmq send /dev/shm/orders
  shmq recv /dev/shm/orders --count 10 --timeout 2s
  shmq stats /dev/shm/orders --watch
  shmq top /dev/shm/orders /dev/shm/events
  shmq serve-metrics /dev/shm/orders /dev/shm/events --listen 127.0.0.1:9464
  shmq verify /dev/shm/orders && echo sound
  shmq migrate /dev/shm/orders /dev/shm/orders.new    # an older file's messages into a new one
  shmq demo
  shmq torture --kills 1000

Exit codes: 0 success, 1 error (the message names the file and the cause),
2 usage error, 3 nothing received (recv; `recv --count 0` asks for nothing
and exits 0) or nothing to do.";

/// shmq: a bounded message queue in a memory-mapped file, shared by
/// processes on one host, with no broker.
#[derive(Parser, Debug)]
#[command(name = "shmq", version, after_help = EXAMPLES)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// The subcommands.
// Parsed once per process: the size of the largest variant (the torture
// options) does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Create a new queue file (fails if the file exists).
    #[command(after_help = "Examples:
  shmq create /dev/shm/orders
  shmq create /dev/shm/menu --keys 4096 --latest-only --lease 10s
  shmq create /var/lib/app/jobs --capacity 65536 --max-message-size 4096 --mode 0640
  shmq create /dev/shm/huge --capacity 1000000 --sparse   # no reservation
  shmq create /dev/shm/quotes --message-ttl 30s --on-expiry drop

The whole file is reserved on its file system first: a queue that does not
fit is refused (IO, \"no space\", the bytes needed and free).")]
    Create(CreateArgs),

    /// Show a queue's layout, options and attached participants.
    #[command(after_help = "Examples:
  shmq info /dev/shm/orders
  shmq info /dev/shm/orders --json | jq .participants")]
    Info(InfoArgs),

    /// Show a queue's metrics: a table, JSON, Prometheus text, or a live view.
    #[command(after_help = "Examples:
  shmq stats /dev/shm/orders
  shmq stats /dev/shm/orders --json
  shmq stats /dev/shm/orders --prometheus > /var/lib/node_exporter/shmq.prom
  shmq stats /dev/shm/orders --watch            # refreshes once a second, Ctrl-C to stop")]
    Stats(StatsArgs),

    /// A live dashboard of one or more queues (rates, depth, latency, claims).
    #[command(after_help = "Examples:
  shmq top /dev/shm/orders
  shmq top /dev/shm/kitchen /dev/shm/pass --interval 500ms
  shmq top /dev/shm/orders --once | tee frame.txt

Per queue: production and consumption rates (sparklines), the slots in use
against the capacity, time in queue and processing time (p50/p99 over the
last interval), dead letters, and who is attached with the claims each holds.
q, Esc or Ctrl-C quits. Without a terminal on stdout (or with --once) it
prints plain-text frames instead of drawing. NO_COLOR turns colours off.")]
    Top(TopArgs),

    /// Serve the metrics of one or more queues to Prometheus over HTTP.
    #[command(after_help = "Examples:
  shmq serve-metrics /dev/shm/orders
  shmq serve-metrics /dev/shm/orders /dev/shm/events --listen 127.0.0.1:9464
  curl -s http://127.0.0.1:9464/metrics

Serves OpenMetrics text; every sample carries the label queue=\"PATH\".
shmq_up{queue} is 0 and shmq_scrape_errors_total{queue} counts up while a
file cannot be read; a file replaced under its path is reopened. Idle or
slow clients do not delay scrapes (at most 64 connections, 3 s to send a
request). The server listens on loopback unless told otherwise; it prints
the address it listens on to stdout.")]
    ServeMetrics(ServeArgs),

    /// Send messages: the MESSAGE arguments, or each line of stdin.
    #[command(after_help = "Examples:
  shmq send /dev/shm/orders 'order 7' 'order 8'
  seq 1000 | shmq send /dev/shm/orders
  shmq send /dev/shm/menu --key 42 --version 7 '{\"price\": 12.5}'
  shmq send /dev/shm/orders --delay 2s 'remind me'
  shmq send /dev/shm/orders --ttl 5s 'worthless after 5 seconds'")]
    Send(SendArgs),

    /// Receive messages: print each one and ack it.
    #[command(after_help = "Examples:
  shmq recv /dev/shm/orders
  shmq recv /dev/shm/orders --count 10 --timeout 2s --json
  shmq recv /dev/shm/orders --follow
  shmq recv /dev/shm/orders --no-ack --count 5     # claims, then nacks: counts deliveries

Exits with 3 when nothing was received before the timeout; --count 0
receives nothing and exits 0. --no-ack is a claim (each message counts a
delivery, and may be dead-lettered): to look without touching, use peek.")]
    Recv(RecvArgs),

    /// Show the waiting messages without claiming them (no delivery counted).
    #[command(after_help = "Examples:
  shmq peek /dev/shm/orders
  shmq peek /dev/shm/orders -n 0 --json | jq .state
  shmq peek /dev/shm/orders --read-only

Shows ready, pending (redelivery) and delayed messages in ring order, not
those claimed. Writes nothing to the file. Exits with 3 when none waits.")]
    Peek(PeekArgs),

    /// Dead letters: list, show, redrive (back to the queue) or purge.
    #[command(after_help = "Examples:
  shmq dlq /dev/shm/orders list
  shmq dlq /dev/shm/orders show 3
  shmq dlq /dev/shm/orders redrive --all
  shmq dlq /dev/shm/orders purge 3")]
    Dlq(DlqArgs),

    /// Remove every waiting message (ready, pending, delayed); claims in flight stay.
    #[command(after_help = "Examples:
  shmq purge /dev/shm/orders --yes
  shmq purge /dev/shm/orders --yes --json

Messages claimed by a consumer stay with it (its ack still succeeds), as a
broker's purge leaves unacked messages. From a terminal, --yes is required.
Producers waiting for room are woken.")]
    Purge(PurgeArgs),

    /// Check every invariant of a queue file; exit 0 only when all hold.
    #[command(after_help = "Examples:
  shmq verify /dev/shm/orders
  shmq verify /dev/shm/orders --json")]
    Verify(VerifyArgs),

    /// Move a queue's messages into a new file (of this shmq's format).
    #[command(after_help = "Examples:
  shmq migrate /dev/shm/orders /dev/shm/orders.new && mv /dev/shm/orders.new /dev/shm/orders
  shmq migrate /dev/shm/orders /dev/shm/bigger --capacity 65536
  shmq migrate /dev/shm/quotes /dev/shm/quotes.new --message-ttl 1m --on-expiry drop

Reads OLD (a file of this or an earlier format version) without writing
to it, and refuses while anyone has it open. Moves the messages waiting or
in flight in ring order (a claim of a dead consumer waits again; a delayed
message keeps the rest of its delay, a message with a deadline the rest
of its time to live), their keys and versions, each key's last acked
version (a stale version stays stale), and the dead letters with their
reasons. A message already past its deadline is dead-lettered (\"expired\")
or dropped, as OLD says. NEW gets OLD's options (its default time to live
and expiry choice too) unless given here, and must not exist: it is
written under a temporary name and appears only when whole.
Delivery counts carry over; dead-letter ids, ages and metrics start
again. A
migration killed midway leaves only .NEW.migrating-PID, which can be
removed.")]
    Migrate(MigrateArgs),

    /// Clean up after dead participants and expired leases now.
    #[command(after_help = "Examples:
  shmq recover /dev/shm/orders")]
    Recover(RecoverArgs),

    /// Move messages between a queue file and NATS JetStream (out, in).
    #[command(after_help = "Examples:
  shmq bridge out /dev/shm/orders --nats nats://10.0.0.1:4222 --stream ORDERS --subject orders
  shmq bridge in /dev/shm/orders --nats nats://10.0.0.1:4222 --stream ORDERS --consumer host-b")]
    Bridge(BridgeArgs),

    /// The restaurant: waiters, cooks and a menu service in real processes.
    #[command(after_help = "Examples:
  shmq demo                       # about 15 seconds
  shmq demo --rush                # orders come faster than the kitchen cooks
  shmq demo --orders 20 --cooks 2 --json
  shmq demo --latest-only         # menu changes conflate: only the newest waits")]
    Demo(DemoArgs),

    /// One role of the demo (internal: spawned by `shmq demo`).
    #[command(hide = true)]
    DemoRole(RoleArgs),

    /// Measure shmq against the reference transports (the targets of docs/PERFORMANCE.md).
    #[command(after_help = "Examples:
  shmq bench                      # the full run: a few minutes, prints the table with ratios
  shmq bench --quick              # small counts: checks every scenario runs (CI)
  shmq bench --json bench.json --chart bench.svg
  shmq bench --only ping-pong
  shmq bench --only one-to-one,batched,c-abi,python
  shmq bench --only bare-ring,arrayqueue --runs 5
  shmq bench --instructions       # instructions per message under callgrind (valgrind)

Pins the producer to CPU 0 and the consumer to CPU 1; busy-polls; checks
every message. Compare figures only within one run.")]
    Bench(BenchCmdArgs),

    /// The other side of a bench measurement (internal: spawned by `shmq bench`).
    #[command(hide = true, name = "__bench-peer")]
    BenchPeer(BenchPeerArgs),

    /// One loop of `shmq bench --instructions` (internal: run under callgrind).
    #[command(hide = true, name = "__bench-loop")]
    BenchLoop(BenchLoopArgs),

    /// SIGKILL producers and consumers at random and prove nothing was lost.
    #[command(after_help = TORTURE_HELP)]
    Torture(TortureArgs),

    /// One worker of a torture run (internal: spawned by `shmq torture`).
    #[command(hide = true, name = "__torture-worker")]
    TortureWorker(TortureWorkerArgs),
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
