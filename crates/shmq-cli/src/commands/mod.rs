//! The subcommands that act on one queue file: `create`, `info`, `send`,
//! `recv`, `peek`, `dlq`, `verify` and `recover`. Each prints human output by
//! default and JSON on request, and returns its exit code.
//!
//! One file per group: `create`, `info` (the queue, its layout and its
//! participants), `messages` (`send`, `recv` and `peek`), `dlq` (the dead
//! letters, and `purge` of the queue's waiting messages), `upkeep`
//! (`verify` and `recover`) and `migrate` (an old file's messages into a
//! new file). This file holds what they share.

mod create;
mod dlq;
mod info;
mod messages;
mod migrate;
mod upkeep;

use serde_json::Value;

pub use create::create;
pub use dlq::{dlq, purge};
pub use info::{info, participants, ParticipantRow};
pub use messages::{peek, recv, send};
pub use migrate::migrate;
pub use upkeep::{recover, verify};

/// Prints a JSON value on one line.
pub fn print_json(v: &Value) {
    println!("{v}");
}
