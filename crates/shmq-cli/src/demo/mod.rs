//! `shmq demo`: the restaurant of the README's quick start (waiters, competing
//! cooks, one of them killed, a menu cache), in real processes on real queue
//! files.
//!
//! The orchestrator (`run`) creates three queues in a fresh directory and
//! spawns this same binary once per role (`shmq demo-role --role ...`):
//!
//! ```text
//!  waiters ──orders──► kitchen ──► cooks (competing; one is SIGKILLed mid-order)
//!     ▲                                 │
//!     └────────── food-ready ◄──────────┘
//!  menu service ──MenuItemChanged(key = item, version)──► menu ──► cache consumers
//!                                                                   └─► menu-cache.bin
//! ```
//!
//! Every role reports what it does as one line on its stdout (`placed 7`,
//! `cooking 7 1`, `served 7`, `applied 3 5`, ...). The orchestrator reads
//! those lines, kills the cook that announces a `long` order (the cook that
//! won the `doom` file: exactly one), draws the live metrics of the three
//! queues, and when every order is served writes the `closed` file that
//! tells the roles to leave. The summary is then computed from the event
//! lines, the queue stats, `verify` and the cache file, and states whether
//! the story held: every order placed was served exactly once, the killed
//! cook's order was redelivered (deliveries = 2) and served once, and the
//! cache holds the newest version of every menu item with no older version
//! ever applied over a newer one.
//!
//! One file per part: [`roles`] (the processes of the restaurant), [`story`]
//! (what their event lines told), [`orchestrator`], [`live`] (the
//! live view) and [`summary`] (whether the story held). This file holds the
//! names and menu the roles and the orchestrator share.

mod live;
mod orchestrator;
mod roles;
mod story;
mod summary;

use std::path::Path;
use std::time::Duration;

use shmq_testkit::Rng;

pub use orchestrator::run;
pub use roles::role;

const KITCHEN: &str = "kitchen";
const FOOD_READY: &str = "food-ready";
const MENU: &str = "menu";
const CACHE: &str = "menu-cache.bin";
const CLOSED: &str = "closed";
const DOOM: &str = "doom";
/// Bytes of one cache record: version, price in cents.
const RECORD: u64 = 16;

const DISHES: [&str; 12] = [
    "soup",
    "risotto",
    "ramen",
    "tacos",
    "curry",
    "pizza",
    "salad",
    "dumplings",
    "paella",
    "burger",
    "pho",
    "falafel",
];

fn dish(i: u64) -> &'static str {
    DISHES[(i as usize) % DISHES.len()]
}

/// The price of an item at a version (so a cache record can be checked).
fn price_cents(item: u64, version: u64) -> u64 {
    800 + item * 100 + version * 25
}

/// A duration uniform in [d/2, 3d/2]: the demo needs variety, not quality.
fn around(rng: &mut Rng, d: Duration) -> Duration {
    let ns = d.as_nanos() as u64;
    if ns == 0 {
        return d;
    }
    Duration::from_nanos(ns / 2 + rng.below(ns))
}

fn seed() -> u64 {
    shmq::internals::sys::monotonic_ns() ^ ((std::process::id() as u64) << 32)
}

fn read_cache(dir: &Path, items: u32) -> Vec<(u64, u64)> {
    let bytes = std::fs::read(dir.join(CACHE)).unwrap_or_default();
    (0..items as usize)
        .map(|i| {
            let r = bytes.get(i * 16..i * 16 + 16).unwrap_or(&[0; 16]);
            let v = u64::from_le_bytes(r[..8].try_into().unwrap_or([0; 8]));
            let p = u64::from_le_bytes(r[8..].try_into().unwrap_or([0; 8]));
            (v, p)
        })
        .collect()
}
