//! The grammar of the commands on one queue file: `create`, `info`,
//! `stats`, `serve`, `send`, `recv`, `peek`, `dlq`, `verify` and `recover`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::values::{
    parse_capacity, parse_dead_letters, parse_duration, parse_keys, parse_max_deliveries,
    parse_max_message_size, parse_mode, parse_participants, parse_recv_count, parse_timeout, Wait,
};

/// `shmq create`.
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// The queue file to create (e.g. /dev/shm/NAME).
    pub path: PathBuf,
    /// Number of slots: the most messages queued, delayed or in flight.
    // Negative numbers reach the parser, which refuses them in a sentence
    // (clap would suggest `-- -5`).
    #[arg(long, default_value_t = 1024, allow_negative_numbers = true, value_parser = parse_capacity)]
    pub capacity: u64,
    /// Largest payload, in bytes.
    #[arg(long, default_value_t = 256, allow_negative_numbers = true, value_parser = parse_max_message_size)]
    pub max_message_size: u32,
    /// Entries of the key table (0 = keyed messages are refused).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true, value_parser = parse_keys)]
    pub keys: u64,
    /// How long a claim is held before it is redelivered (e.g. 30s, 500ms, 2m).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub lease: Duration,
    /// Failed deliveries before a message is dead-lettered (0 = unlimited).
    #[arg(long, default_value_t = 10, allow_negative_numbers = true, value_parser = parse_max_deliveries)]
    pub max_deliveries: u32,
    /// Latest-only mode: a newer message of a key replaces the waiting one.
    #[arg(long)]
    pub latest_only: bool,
    /// Records of the dead-letter area (0 = same as the capacity).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true, value_parser = parse_dead_letters)]
    pub dead_letters: u64,
    /// Most handles attached at once.
    #[arg(long, default_value_t = 64, allow_negative_numbers = true, value_parser = parse_participants)]
    pub participants: u32,
    /// File mode, in octal (0660 for a queue shared with a group; others
    /// then open it with --group-shared).
    #[arg(long, default_value = "0600", value_parser = parse_mode)]
    pub mode: u32,
    /// Give the file to this group (a name or a number; the creator must
    /// belong to it unless root).
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
    /// Do not reserve the file's space: create it sparse, at once whatever
    /// its size, its pages taken when first written. By default every
    /// block is allocated now and a file system too small is refused here;
    /// with --sparse a full file system fails a later send instead ("the
    /// file system is full") and the queue must be recreated.
    #[arg(long)]
    pub sparse: bool,
    /// Default time to live of a message (e.g. 30s; none by default): past
    /// its commit time plus this (or its own `send --ttl`) a message is
    /// never delivered.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub message_ttl: Option<Duration>,
    /// What becomes of an expired message: moved to the dead letters with
    /// the reason "expired", or dropped (counted in `expired` either way).
    #[arg(long, value_enum, default_value = "dead-letter")]
    pub on_expiry: OnExpiry,
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

/// `shmq top`.
#[derive(Args, Debug)]
pub struct TopArgs {
    /// The queue files.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Map the files read-only and write nothing to them (automatic when a
    /// file is not writable).
    #[arg(long)]
    pub read_only: bool,
    #[command(flatten)]
    pub trust: TrustArgs,
    /// Time between frames (rates and percentiles are over this interval).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Print a single plain-text frame (after one interval) and exit.
    #[arg(long)]
    pub once: bool,
    /// Stop after this many frames (default: until q or Ctrl-C).
    #[arg(long, conflicts_with = "once")]
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
    /// Messages to send, as bytes (need not be UTF-8); without any, each
    /// line of stdin is one message.
    pub messages: Vec<OsString>,
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
    /// Time to live of the message (e.g. 5s; default: the queue's): past
    /// its commit time plus this it is never delivered.
    #[arg(long, value_parser = parse_duration)]
    pub ttl: Option<Duration>,
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
    /// How many messages to receive (default 1; with --follow: no limit;
    /// 0 receives nothing and exits 0).
    #[arg(long, short = 'n', allow_negative_numbers = true, value_parser = parse_recv_count)]
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
    /// Claim without acking: every message is given back with a nack at
    /// the end. This is still a claim: each counts a delivery, and a
    /// message at --max-deliveries is dead-lettered. To look without
    /// touching, use `shmq peek`.
    #[arg(long)]
    pub no_ack: bool,
    #[command(flatten)]
    pub trust: TrustArgs,
}

/// `shmq peek`.
#[derive(Args, Debug)]
pub struct PeekArgs {
    /// The queue file.
    pub path: PathBuf,
    /// How many messages to show, oldest position first (0 = all waiting).
    #[arg(long, short = 'n', default_value_t = 10)]
    pub count: usize,
    /// One JSON object per line: data, state, key, version, deliveries,
    /// position, age.
    #[arg(long)]
    pub json: bool,
    /// Map the file read-only and write nothing to it (automatic when the
    /// file is not writable).
    #[arg(long)]
    pub read_only: bool,
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

/// What `create --on-expiry` does with an expired message.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnExpiry {
    /// Move it to the dead letters with the reason "expired".
    DeadLetter,
    /// Drop it.
    Drop,
}

impl From<OnExpiry> for shmq::Expiry {
    fn from(e: OnExpiry) -> shmq::Expiry {
        match e {
            OnExpiry::DeadLetter => shmq::Expiry::DeadLetter,
            OnExpiry::Drop => shmq::Expiry::Drop,
        }
    }
}

/// `shmq purge`.
#[derive(Args, Debug)]
pub struct PurgeArgs {
    /// The queue file.
    pub path: PathBuf,
    /// Do it: without this flag, a purge from a terminal is refused.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Machine output: {"path", "purged"}.
    #[arg(long)]
    pub json: bool,
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
