//! The command line grammar: every subcommand, option and help text of
//! `shmq`, declared with clap's derive API, plus the parsers of the value
//! forms the options take (durations such as `250ms`, octal file modes).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

const EXAMPLES: &str = "\
Examples:
  shmq create /dev/shm/orders --capacity 1024 --max-message-size 512
  echo 'order 7' | shmq send /dev/shm/orders
  shmq recv /dev/shm/orders --count 10 --timeout 2s
  shmq stats /dev/shm/orders --watch
  shmq serve-metrics /dev/shm/orders /dev/shm/events --listen 127.0.0.1:9464
  shmq verify /dev/shm/orders && echo sound
  shmq demo
  shmq torture --kills 1000

Exit codes: 0 success, 1 error (the message names the file and the cause),
2 usage error, 3 nothing received (recv) or nothing to do.";

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
  shmq create /var/lib/app/jobs --capacity 65536 --max-message-size 4096 --mode 0640")]
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

    /// Serve the metrics of one or more queues to Prometheus over HTTP.
    #[command(after_help = "Examples:
  shmq serve-metrics /dev/shm/orders
  shmq serve-metrics /dev/shm/orders /dev/shm/events --listen 127.0.0.1:9464
  curl -s http://127.0.0.1:9464/metrics

Every sample carries the label queue=\"PATH\". The server listens on loopback
unless told otherwise; it prints the address it listens on to stdout.")]
    ServeMetrics(ServeArgs),

    /// Send messages: the MESSAGE arguments, or each line of stdin.
    #[command(after_help = "Examples:
  shmq send /dev/shm/orders 'order 7' 'order 8'
  seq 1000 | shmq send /dev/shm/orders
  shmq send /dev/shm/menu --key 42 --version 7 '{\"price\": 12.5}'
  shmq send /dev/shm/orders --delay 2s 'remind me'")]
    Send(SendArgs),

    /// Receive messages: print each one and ack it.
    #[command(after_help = "Examples:
  shmq recv /dev/shm/orders
  shmq recv /dev/shm/orders --count 10 --timeout 2s --json
  shmq recv /dev/shm/orders --follow
  shmq recv /dev/shm/orders --no-ack --count 5     # peek: nack instead of ack

Exits with 3 when nothing was received before the timeout.")]
    Recv(RecvArgs),

    /// Dead letters: list, show, redrive (back to the queue) or purge.
    #[command(after_help = "Examples:
  shmq dlq /dev/shm/orders list
  shmq dlq /dev/shm/orders show 3
  shmq dlq /dev/shm/orders redrive --all
  shmq dlq /dev/shm/orders purge 3")]
    Dlq(DlqArgs),

    /// Check every invariant of a queue file; exit 0 only when all hold.
    #[command(after_help = "Examples:
  shmq verify /dev/shm/orders
  shmq verify /dev/shm/orders --json")]
    Verify(VerifyArgs),

    /// Clean up after dead participants and expired leases now.
    #[command(after_help = "Examples:
  shmq recover /dev/shm/orders")]
    Recover(RecoverArgs),

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

Pins the producer to CPU 0 and the consumer to CPU 1; busy-polls; checks
every message. Compare figures only within one run.")]
    Bench(BenchCmdArgs),

    /// The other side of a bench measurement (internal: spawned by `shmq bench`).
    #[command(hide = true, name = "__bench-peer")]
    BenchPeer(BenchPeerArgs),

    /// SIGKILL producers and consumers at random and prove nothing was lost.
    #[command(after_help = TORTURE_HELP)]
    Torture(TortureArgs),

    /// One worker of a torture run (internal: spawned by `shmq torture`).
    #[command(hide = true, name = "__torture-worker")]
    TortureWorker(TortureWorkerArgs),
}

const TORTURE_HELP: &str = "\
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

/// `shmq bench`.
#[derive(Args, Debug)]
pub struct BenchCmdArgs {
    /// Small message counts, one run per figure (for CI: no speed is checked).
    #[arg(long)]
    pub quick: bool,
    /// Write every figure as JSON rows to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Draw throughput and latency per transport as an SVG chart to FILE.
    #[arg(long, value_name = "FILE")]
    pub chart: Option<PathBuf>,
    /// Only the scenarios whose name contains one of these, comma-separated
    /// (e.g. keyed, or one-to-one,c-abi to keep a row's reference).
    #[arg(long)]
    pub only: Option<String>,
}

/// `shmq __bench-peer ROLE ARGS...`.
#[derive(Args, Debug)]
pub struct BenchPeerArgs {
    /// The role and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// `shmq create`.
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// The queue file to create (e.g. /dev/shm/NAME).
    pub path: PathBuf,
    /// Number of slots: the most messages queued, delayed or in flight.
    #[arg(long, default_value_t = 1024)]
    pub capacity: u64,
    /// Largest payload, in bytes.
    #[arg(long, default_value_t = 256)]
    pub max_message_size: u32,
    /// Entries of the key table (0 = keyed messages are refused).
    #[arg(long, default_value_t = 0)]
    pub keys: u64,
    /// How long a claim is held before it is redelivered (e.g. 30s, 500ms, 2m).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub lease: Duration,
    /// Failed deliveries before a message is dead-lettered (0 = unlimited).
    #[arg(long, default_value_t = 10)]
    pub max_deliveries: u32,
    /// Latest-only mode: a newer message of a key replaces the waiting one.
    #[arg(long)]
    pub latest_only: bool,
    /// Records of the dead-letter area (0 = same as the capacity).
    #[arg(long, default_value_t = 0)]
    pub dead_letters: u64,
    /// Most handles attached at once.
    #[arg(long, default_value_t = 64)]
    pub participants: u32,
    /// File mode, in octal (0660 for a queue shared with a group; others
    /// then open it with --group-shared).
    #[arg(long, default_value = "0600", value_parser = parse_mode)]
    pub mode: u32,
    /// Give the file to this group (a name or a number; the creator must
    /// belong to it unless root).
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
    /// Print what was created as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Which queue files a command accepts. By default only a regular file
/// owned by this user and writable by nobody else is opened.
#[derive(Args, Debug, Clone, Copy, Default)]
pub struct TrustArgs {
    /// Accept a queue its group may write (created with --mode 0660), and
    /// one owned by another user when the file's group is one of ours.
    #[arg(long)]
    pub group_shared: bool,
    /// Accept a file whatever its owner and mode (it must still be a
    /// regular file): only for files in a directory no untrusted user can
    /// write.
    #[arg(long)]
    pub trust_any_owner: bool,
}

impl TrustArgs {
    /// The open options for `access`.
    pub fn options(&self, access: shmq::Access) -> shmq::OpenOptions {
        shmq::OpenOptions {
            access,
            group_shared: self.group_shared,
            trust_any_owner: self.trust_any_owner,
        }
    }

    /// Options of a command that only reads: read-only when asked (and
    /// automatically when the file is not writable), else inspection.
    pub fn reading(&self, read_only: bool) -> shmq::OpenOptions {
        self.options(if read_only {
            shmq::Access::ReadOnly
        } else {
            shmq::Access::Inspect
        })
    }
}

/// `shmq info`.
#[derive(Args, Debug)]
pub struct InfoArgs {
    /// The queue file.
    pub path: PathBuf,
    /// Map the file read-only and write nothing to it (automatic when the
    /// file is not writable).
    #[arg(long)]
    pub read_only: bool,
    #[command(flatten)]
    pub trust: TrustArgs,
    /// Machine output.
    #[arg(long)]
    pub json: bool,
}

/// `shmq stats`.
#[derive(Args, Debug)]
pub struct StatsArgs {
    /// The queue file.
    pub path: PathBuf,
    /// Map the file read-only and write nothing to it (automatic when the
    /// file is not writable).
    #[arg(long)]
    pub read_only: bool,
    #[command(flatten)]
    pub trust: TrustArgs,
    /// Machine output: one JSON object (durations in nanoseconds).
    #[arg(long, conflicts_with_all = ["prometheus", "watch"])]
    pub json: bool,
    /// Prometheus text exposition format (durations in seconds).
    #[arg(long, conflicts_with = "watch")]
    pub prometheus: bool,
    /// A live view refreshing every --interval, with rates between refreshes.
    #[arg(long)]
    pub watch: bool,
    /// Refresh interval of --watch.
    #[arg(long, default_value = "1s", value_parser = parse_duration, requires = "watch")]
    pub interval: Duration,
    /// Stop --watch after this many refreshes (default: until interrupted).
    #[arg(long, requires = "watch")]
    pub count: Option<u64>,
}

/// `shmq serve-metrics`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The queue files.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub listen: String,
    /// Map the files read-only and write nothing to them (automatic for a
    /// file that is not writable).
    #[arg(long)]
    pub read_only: bool,
    #[command(flatten)]
    pub trust: TrustArgs,
}

/// `shmq send`.
#[derive(Args, Debug)]
pub struct SendArgs {
    /// The queue file.
    pub path: PathBuf,
    /// Messages to send; without any, each line of stdin is one message.
    pub messages: Vec<String>,
    /// Key of the messages (0 = none; needs a queue created with --keys).
    #[arg(long, default_value_t = 0)]
    pub key: u64,
    /// Version of the first message (then +1 for each next one); 0 = the
    /// key's next version.
    #[arg(long, default_value_t = 0, requires = "key")]
    pub version: u64,
    /// Claimable only after this delay (e.g. 2s).
    #[arg(long, value_parser = parse_duration)]
    pub delay: Option<Duration>,
    /// How long to wait for room when the queue is full (0 = do not wait,
    /// `forever`).
    #[arg(long, default_value = "5s", value_parser = parse_timeout)]
    pub timeout: Wait,
    /// Print one JSON line per message sent (position and version).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub trust: TrustArgs,
}

/// `shmq recv`.
#[derive(Args, Debug)]
pub struct RecvArgs {
    /// The queue file.
    pub path: PathBuf,
    /// How many messages to receive (default 1; with --follow: no limit).
    #[arg(long, short = 'n')]
    pub count: Option<u64>,
    /// How long to wait for each message (0 = do not wait, `forever`).
    #[arg(long, default_value = "1s", value_parser = parse_timeout)]
    pub timeout: Wait,
    /// Keep receiving, waiting as long as it takes, until interrupted.
    #[arg(long)]
    pub follow: bool,
    /// One JSON object per line: data, key, version, deliveries, ages.
    #[arg(long)]
    pub json: bool,
    /// Peek: give every message back with a nack instead of acking it (a
    /// nack counts as a failed delivery attempt).
    #[arg(long)]
    pub no_ack: bool,
    #[command(flatten)]
    pub trust: TrustArgs,
}

/// `shmq dlq`.
#[derive(Args, Debug)]
pub struct DlqArgs {
    /// The queue file.
    pub path: PathBuf,
    /// Map the file read-only for list and show (automatic when the file
    /// is not writable).
    #[arg(long)]
    pub read_only: bool,
    #[command(flatten)]
    pub trust: TrustArgs,
    /// What to do with the dead letters.
    #[command(subcommand)]
    pub action: DlqAction,
}

/// What `shmq dlq` does.
#[derive(Subcommand, Debug)]
pub enum DlqAction {
    /// List the dead letters, oldest first.
    List {
        /// Machine output.
        #[arg(long)]
        json: bool,
    },
    /// Show one dead letter with its payload.
    Show {
        /// The dead letter's id (from `list`).
        id: u64,
        /// Machine output.
        #[arg(long)]
        json: bool,
    },
    /// Send dead letters back to the queue with their attempts reset.
    Redrive {
        /// The dead letter's id.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<u64>,
        /// Every dead letter.
        #[arg(long)]
        all: bool,
    },
    /// Delete dead letters.
    Purge {
        /// The dead letter's id.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<u64>,
        /// Every dead letter.
        #[arg(long)]
        all: bool,
    },
}

/// `shmq verify`.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The queue file.
    pub path: PathBuf,
    /// Machine output: {"ok", "problems", "notes"}.
    #[arg(long)]
    pub json: bool,
    /// Map the file read-only and write nothing to it (automatic when the
    /// file is not writable).
    #[arg(long)]
    pub read_only: bool,
    #[command(flatten)]
    pub trust: TrustArgs,
}

/// `shmq recover`.
#[derive(Args, Debug)]
pub struct RecoverArgs {
    /// The queue file.
    pub path: PathBuf,
    /// Machine output.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub trust: TrustArgs,
}

/// `shmq demo`.
#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Waiter processes (they place orders and serve ready dishes).
    #[arg(long, default_value_t = 3)]
    pub waiters: u32,
    /// Cook processes competing for orders (one of them is killed).
    #[arg(long, default_value_t = 4)]
    pub cooks: u32,
    /// Orders to place in all.
    #[arg(long, default_value_t = 100)]
    pub orders: u32,
    /// Menu items whose versioned price changes the menu service publishes
    /// (0 = no menu stream).
    #[arg(long, default_value_t = 12)]
    pub menu_items: u32,
    /// Competing consumers applying menu changes to the shared cache.
    #[arg(long, default_value_t = 2)]
    pub menu_consumers: u32,
    /// Slots of the kitchen queue.
    #[arg(long, default_value_t = 16)]
    pub kitchen_capacity: u64,
    /// Orders come as fast as waiters can place them, into a small kitchen:
    /// shows back-pressure (refused when full, waiting producers).
    #[arg(long)]
    pub rush: bool,
    /// Average cooking time of one order.
    #[arg(long, default_value = "350ms", value_parser = parse_duration)]
    pub cook_time: Duration,
    /// Time between two orders of one waiter (ignored with --rush).
    #[arg(long, default_value = "300ms", value_parser = parse_duration)]
    pub order_every: Duration,
    /// Do not kill a cook.
    #[arg(long)]
    pub no_kill: bool,
    /// Make the menu queue latest-only: a newer change of an item replaces
    /// its waiting one in place (conflation).
    #[arg(long)]
    pub latest_only: bool,
    /// Give up (and fail) after this long.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub max_time: Duration,
    /// Directory for the queue files (default: a new one under /dev/shm or
    /// the temporary directory, removed at the end).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Print the summary as JSON on stdout (the live view goes to stderr).
    #[arg(long)]
    pub json: bool,
}

/// The roles of the demo's processes.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Places orders on the kitchen queue, serves food-ready events.
    Waiter,
    /// Claims orders, cooks, publishes food-ready.
    Cook,
    /// Publishes versioned menu changes.
    Menu,
    /// Applies menu changes to the shared cache.
    MenuCache,
}

/// `shmq demo-role` (hidden).
#[derive(Args, Debug, Clone)]
pub struct RoleArgs {
    /// Which role.
    #[arg(long, value_enum)]
    pub role: Role,
    /// The demo directory.
    #[arg(long)]
    pub dir: PathBuf,
    /// This process's number within its role.
    #[arg(long, default_value_t = 0)]
    pub id: u32,
    /// Orders (waiter: to place) or menu items (menu, menu-cache).
    #[arg(long, default_value_t = 0)]
    pub count: u32,
    /// Average cooking time (cook) or time between orders (waiter).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub pace: Duration,
    /// Cook: after this many orders, the next one takes forever (the demo
    /// kills the cook while it cooks it).
    #[arg(long)]
    pub doomed_after: Option<u32>,
}

/// A wait: up to a duration, or forever.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Up to this long (zero = try once).
    For(Duration),
    /// As long as it takes.
    Forever,
}

impl From<Wait> for shmq::Timeout {
    fn from(w: Wait) -> shmq::Timeout {
        match w {
            Wait::For(d) => shmq::Timeout::from(d),
            Wait::Forever => shmq::Timeout::Forever,
        }
    }
}

/// Parses `30s`, `250ms`, `2m`, `1h`, `10us`, `5ns`, `1.5s`; a bare
/// number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (try 30s, 250ms, 2m)"))?;
    let scale = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "ns" => 1e-9,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "`{s}`: unknown unit `{other}` (use ns, us, ms, s, m or h)"
            ))
        }
    };
    let secs = value * scale;
    if !secs.is_finite() || !(0.0..=1e10).contains(&secs) {
        return Err(format!("`{s}` is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A duration, or `forever` / `inf` / `-1`.
pub fn parse_timeout(s: &str) -> Result<Wait, String> {
    match s.trim() {
        "forever" | "inf" | "infinite" | "-1" => Ok(Wait::Forever),
        _ => parse_duration(s).map(Wait::For),
    }
}

/// An octal file mode such as `0600` or `640`.
pub fn parse_mode(s: &str) -> Result<u32, String> {
    let t = s.trim().trim_start_matches("0o");
    let m = u32::from_str_radix(t, 8).map_err(|_| format!("`{s}` is not an octal mode"))?;
    if m > 0o777 {
        return Err(format!(
            "`{s}`: only permission bits (up to 0777) are allowed"
        ));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("10us"), Ok(Duration::from_micros(10)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
        assert_eq!(parse_timeout("forever"), Ok(Wait::Forever));
        assert_eq!(parse_mode("0640"), Ok(0o640));
        assert!(parse_mode("0999").is_err());
        assert!(parse_mode("04777").is_err());
    }
}
