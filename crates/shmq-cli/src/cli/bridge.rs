//! The grammar of `shmq bridge`: `out` (queue file to JetStream) and `in`
//! (JetStream to queue file).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::values::parse_duration;

/// `shmq bridge`.
#[derive(Args, Debug)]
pub struct BridgeArgs {
    /// Which direction.
    #[command(subcommand)]
    pub direction: BridgeDirection,
}

/// The directions of `shmq bridge`.
#[derive(Subcommand, Debug)]
pub enum BridgeDirection {
    /// Claim from a queue file and publish to a JetStream stream; each
    /// message is acked locally once JetStream acked its publish.
    #[command(after_help = "Examples:
  shmq bridge out /dev/shm/orders --nats nats://127.0.0.1:4222 --stream ORDERS --subject orders

Keyed messages go to SUBJECT.<key>, keyless ones to SUBJECT, with the
headers Shmq-Key, Shmq-Version and Nats-Msg-Id (stable across redeliveries:
JetStream stores a message once however often it is republished). The
stream is created when absent (work-queue retention, subjects SUBJECT and
SUBJECT.>, one message per subject for a latest-only queue); an existing
stream that would drop messages is refused. Runs until SIGINT or SIGTERM
(or --idle-exit); see docs/BRIDGE.md.")]
    Out(BridgeOutArgs),
    /// Pull from a durable JetStream consumer into a queue file; each
    /// message is acked upstream once the local send committed.
    #[command(after_help = "Examples:
  shmq bridge in --nats nats://10.0.0.1:4222 --stream ORDERS --consumer host-b /dev/shm/orders

The durable pull consumer is created when absent (explicit acks, AckWait
the queue's lease, MaxDeliver its max deliveries). A version the local
queue refuses as stale is acked and counted; a full queue stops pulling
until there is room. Several processes on one consumer compete.")]
    In(BridgeInArgs),
    /// Run several bridges, both directions, from a TOML file.
    #[command(after_help = "Examples:
  shmq bridge run /etc/shmq/bridge.toml --metrics 127.0.0.1:9465

The file:
  nats = \"nats://10.0.0.5:4222\"      # every bridge's server unless it names one

  [[out]]
  path = \"/dev/shm/orders\"
  stream = \"ORDERS\"
  subject = \"orders\"
  window = 512                        # optional

  [[in]]
  path = \"/dev/shm/invoices\"
  stream = \"INVOICES\"
  consumer = \"host-a\"
  batch = 256                         # optional

The first bridge that fails stops them all.")]
    Run(BridgeRunArgs),
}

/// `shmq bridge run`.
#[derive(Args, Debug)]
pub struct BridgeRunArgs {
    /// The TOML file.
    pub config: PathBuf,
    /// Stop each bridge after this long with nothing to move.
    #[arg(long, value_parser = parse_duration)]
    pub idle_exit: Option<Duration>,
    /// Print every bridge's figures as JSON lines at the end (and with --stats-every).
    #[arg(long)]
    pub json: bool,
    /// Print every bridge's figures as JSON lines this often.
    #[arg(long, value_parser = parse_duration)]
    pub stats_every: Option<Duration>,
    /// Serve the figures to Prometheus as text on this address.
    #[arg(long)]
    pub metrics: Option<std::net::SocketAddr>,
}

/// What both directions take.
#[derive(Args, Debug)]
pub struct BridgeCommon {
    /// The NATS server, e.g. nats://127.0.0.1:4222.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    pub nats: String,
    /// The JetStream stream.
    #[arg(long)]
    pub stream: String,
    /// Stop after this long with nothing to move (default: run until SIGINT or SIGTERM).
    #[arg(long, value_parser = parse_duration)]
    pub idle_exit: Option<Duration>,
    /// Print the run's figures as JSON at the end (and with --stats-every).
    #[arg(long)]
    pub json: bool,
    /// Print the figures (in flight, lag, redeliveries, de-duplicated,
    /// stale, rate...) as a JSON line this often.
    #[arg(long, value_parser = parse_duration)]
    pub stats_every: Option<Duration>,
    /// Serve the figures to Prometheus as text on this address (e.g.
    /// 127.0.0.1:9465; any path).
    #[arg(long)]
    pub metrics: Option<std::net::SocketAddr>,
}

/// `shmq bridge out`.
#[derive(Args, Debug)]
pub struct BridgeOutArgs {
    /// The queue file to drain.
    pub path: PathBuf,
    #[command(flatten)]
    pub common: BridgeCommon,
    /// The subject prefix: keyed messages go to SUBJECT.KEY (the key in decimal).
    #[arg(long)]
    pub subject: String,
    /// Most messages claimed and awaiting their publish ack at once.
    #[arg(long, default_value_t = 512)]
    pub window: usize,
}

/// `shmq bridge in`.
#[derive(Args, Debug)]
pub struct BridgeInArgs {
    /// The queue file to fill.
    pub path: PathBuf,
    #[command(flatten)]
    pub common: BridgeCommon,
    /// The durable pull consumer.
    #[arg(long)]
    pub consumer: String,
    /// The subject prefix the stream gets if this command creates it.
    #[arg(long)]
    pub subject: Option<String>,
    /// Most messages pulled at once.
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
}
