//! The grammar of `shmq demo` and of its role processes.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::values::parse_duration;

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
