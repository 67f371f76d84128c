//! The grammar of `shmq migrate`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::queue_file::{OnExpiry, TrustArgs};
use super::values::{
    parse_capacity, parse_dead_letters, parse_duration, parse_keys, parse_max_deliveries,
    parse_max_message_size, parse_mode, parse_participants,
};

/// `shmq migrate`: every option of the new file defaults to the old one's.
#[derive(Args, Debug)]
pub struct MigrateArgs {
    /// The old queue file (read only, never written; nobody may have it open).
    pub old: PathBuf,
    /// The new queue file (must not exist).
    pub new: PathBuf,
    /// Number of slots of the new file (default: the old one's).
    #[arg(long, allow_negative_numbers = true, value_parser = parse_capacity)]
    pub capacity: Option<u64>,
    /// Largest payload of the new file, in bytes.
    #[arg(long, allow_negative_numbers = true, value_parser = parse_max_message_size)]
    pub max_message_size: Option<u32>,
    /// Entries of the new key table.
    #[arg(long, allow_negative_numbers = true, value_parser = parse_keys)]
    pub keys: Option<u64>,
    /// Lease of the new file (e.g. 30s).
    #[arg(long, value_parser = parse_duration)]
    pub lease: Option<Duration>,
    /// Failed deliveries before a message is dead-lettered (0 = unlimited).
    #[arg(long, allow_negative_numbers = true, value_parser = parse_max_deliveries)]
    pub max_deliveries: Option<u32>,
    /// Make the new queue latest-only (an old latest-only queue stays so).
    #[arg(long)]
    pub latest_only: bool,
    /// Records of the new dead-letter area.
    #[arg(long, allow_negative_numbers = true, value_parser = parse_dead_letters)]
    pub dead_letters: Option<u64>,
    /// Participant entries of the new file.
    #[arg(long, allow_negative_numbers = true, value_parser = parse_participants)]
    pub participants: Option<u32>,
    /// File mode of the new file, in octal (default: the old file's).
    #[arg(long, value_parser = parse_mode)]
    pub mode: Option<u32>,
    /// Give the new file to this group (a name or a number).
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
    /// Default time to live of a message in the new file (e.g. 30s, 0 =
    /// none; default: the old one's). A message that has its own deadline
    /// keeps the rest of it.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub message_ttl: Option<Duration>,
    /// What becomes of an expired message in the new file (default: the
    /// old one's choice). A message already past its deadline in the old
    /// file is disposed of as the old file says.
    #[arg(long, value_enum)]
    pub on_expiry: Option<OnExpiry>,
    /// Do not reserve the new file's space (see `shmq create --sparse`).
    #[arg(long)]
    pub sparse: bool,
    #[command(flatten)]
    pub trust: TrustArgs,
    /// Print what was moved as JSON.
    #[arg(long)]
    pub json: bool,
}
