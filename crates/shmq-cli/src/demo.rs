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

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shmq::{Counter, Options, Queue, SendOptions, Stats, Status, Timeout};
use shmq_testkit::Rng;

use crate::stats_view::View;

use crate::cli::{DemoArgs, Role, RoleArgs};
use crate::stats_view::{self, Delta};
use crate::util::{human_ns, CliError, CmdResult};

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

// ---------------------------------------------------------------------
// The roles
// ---------------------------------------------------------------------

/// `shmq demo-role`: one process of the restaurant.
pub fn role(a: &RoleArgs) -> CmdResult {
    let r = match a.role {
        Role::Waiter => waiter(a),
        Role::Cook => cook(a),
        Role::Menu => menu_service(a),
        Role::MenuCache => menu_cache(a),
    };
    r.map(|_| 0)
}

fn closed(dir: &Path) -> bool {
    dir.join(CLOSED).exists()
}

/// Prints one event line for the orchestrator.
fn say(line: std::fmt::Arguments<'_>) {
    let mut o = std::io::stdout().lock();
    // The orchestrator reads our stdout; if it is gone, so are we soon.
    let _ = writeln!(o, "{line}");
    let _ = o.flush();
}

fn first_number(text: &str, after: &str) -> Option<u64> {
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        if w == after {
            return words.next()?.parse().ok();
        }
    }
    None
}

/// Claims food-ready events for up to `wait` and serves them.
fn serve_ready(ready: &Queue, wait: Duration) -> Result<(), CliError> {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match ready.claim(left) {
            Ok(m) => {
                let text = String::from_utf8_lossy(&m.data()?).into_owned();
                let order = first_number(&text, "ready").unwrap_or(0);
                let by = first_number(&text, "cook").unwrap_or(0);
                say(format_args!("served {order} {by}"));
                m.ack()?;
            }
            Err(e) if matches!(e.status(), Status::Empty | Status::Timeout) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        if Instant::now() >= deadline {
            return Ok(());
        }
    }
}

fn waiter(a: &RoleArgs) -> Result<(), CliError> {
    let kitchen = Queue::open(a.dir.join(KITCHEN))?;
    let ready = Queue::open(a.dir.join(FOOD_READY))?;
    let mut rng = Rng::new(seed());
    // This waiter's orders: ids id+1, id+1+stride, ... (`--count` in all);
    // the stride (the number of waiters) comes in the environment.
    let stride: u64 = std::env::var("SHMQ_DEMO_STRIDE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let mut next = Instant::now();
    for i in 0..a.count as u64 {
        let order = a.id as u64 + 1 + i * stride;
        // Serve what is ready until it is time for the next order.
        let now = Instant::now();
        if next > now {
            serve_ready(&ready, next - now)?;
        }
        let table = 1 + rng.next() % 20;
        let payload = format!("order {order} table {table} {}", dish(rng.next()));
        match kitchen.send(payload.as_bytes(), Timeout::TryOnce) {
            Ok(_) => {}
            Err(e) if e.status() == Status::Full => {
                // Back-pressure: the kitchen is full. Wait for room, serving
                // ready dishes meanwhile so the kitchen can drain.
                say(format_args!("full {order}"));
                loop {
                    match kitchen.send(payload.as_bytes(), Duration::from_millis(100)) {
                        Ok(_) => break,
                        Err(e) if e.status() == Status::Timeout => {
                            serve_ready(&ready, Duration::ZERO)?
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            Err(e) => return Err(e.into()),
        }
        say(format_args!("placed {order}"));
        next = Instant::now().max(next) + around(&mut rng, a.pace);
        if a.pace.is_zero() {
            next = Instant::now();
        }
    }
    say(format_args!("done-placing"));
    while !closed(&a.dir) {
        serve_ready(&ready, Duration::from_millis(100))?;
    }
    Ok(())
}

fn cook(a: &RoleArgs) -> Result<(), CliError> {
    let kitchen = Queue::open(a.dir.join(KITCHEN))?;
    let ready = Queue::open(a.dir.join(FOOD_READY))?;
    let mut rng = Rng::new(seed());
    let mut cooked = 0u32;
    while !closed(&a.dir) {
        let m = match kitchen.claim(Duration::from_millis(100)) {
            Ok(m) => m,
            Err(e) if matches!(e.status(), Status::Empty | Status::Timeout) => continue,
            Err(e) => return Err(e.into()),
        };
        let text = String::from_utf8_lossy(&m.data()?).into_owned();
        let order = first_number(&text, "order").unwrap_or(0);
        let what = text.split_whitespace().last().unwrap_or("?").to_string();
        // The one cook that wins the doom file cooks this order forever; the
        // orchestrator kills it while it does (SIGKILL, mid-order).
        let doomed = a.doomed_after.is_some_and(|k| cooked >= k)
            && OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(a.dir.join(DOOM))
                .is_ok();
        if doomed {
            say(format_args!("cooking {order} {} long", m.deliveries()));
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        say(format_args!("cooking {order} {}", m.deliveries()));
        std::thread::sleep(around(&mut rng, a.pace));
        let event = format!("ready {order} {what} by cook {}", a.id);
        loop {
            match ready.send(event.as_bytes(), Duration::from_millis(100)) {
                Ok(_) => break,
                Err(e) if e.status() == Status::Timeout && !closed(&a.dir) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        say(format_args!("cooked {order} {}", m.deliveries()));
        m.ack()?;
        cooked += 1;
    }
    Ok(())
}

fn menu_service(a: &RoleArgs) -> Result<(), CliError> {
    let menu = Queue::open(a.dir.join(MENU))?;
    let items = a.count.max(1) as u64;
    let mut rng = Rng::new(seed());
    let mut current = vec![0u64; items as usize + 1];
    let rounds = 5u64;
    let publish = |item: u64, version: u64| -> Result<bool, CliError> {
        let body = format!(
            "MenuItemChanged item {item} {} price {} version {version}",
            dish(item - 1),
            price_cents(item, version)
        );
        let opts = SendOptions::new()
            .key(item)
            .version(version)
            .timeout(Duration::from_secs(5));
        match menu.send_with(body.as_bytes(), &opts) {
            Ok(_) => {
                say(format_args!("published {item} {version}"));
                Ok(true)
            }
            Err(e) if e.status() == Status::Stale => {
                say(format_args!("refused {item} {version}"));
                Ok(false)
            }
            Err(e) if e.status() == Status::InvalidArgument => {
                say(format_args!("unsupported {}", e.message()));
                Err(e.into())
            }
            Err(e) => Err(e.into()),
        }
    };
    for j in 0..items * rounds {
        let item = 1 + (j % items);
        let v = current[item as usize] + 1;
        // Every fifth change is a burst; the others are picked at random.
        let pattern = if j % 5 == 4 { 3 } else { rng.next() % 6 };
        match pattern {
            3 => {
                // A burst: three changes in a row. The first is taken at
                // once; while it is worked on the second waits for its key,
                // and in latest-only mode the third replaces it in place.
                publish(item, v)?;
                publish(item, v + 1)?;
                publish(item, v + 2)?;
                current[item as usize] = v + 2;
            }
            0 => {
                // Out of order: the newer change overtakes the older one.
                publish(item, v + 1)?;
                publish(item, v)?;
                current[item as usize] = v + 1;
            }
            1 => {
                // Duplicated: the same change published twice.
                publish(item, v)?;
                publish(item, v)?;
                current[item as usize] = v;
            }
            2 if v > 2 => {
                // A late retry of an old change, after the new one.
                publish(item, v)?;
                std::thread::sleep(a.pace);
                publish(item, v - 2)?;
                current[item as usize] = v;
            }
            _ => {
                publish(item, v)?;
                current[item as usize] = v;
            }
        }
        std::thread::sleep(around(&mut rng, a.pace));
    }
    say(format_args!("menu-done"));
    Ok(())
}

fn menu_cache(a: &RoleArgs) -> Result<(), CliError> {
    let menu = Queue::open(a.dir.join(MENU))?;
    let cache = OpenOptions::new()
        .read(true)
        .write(true)
        .open(a.dir.join(CACHE))?;
    let mut rng = Rng::new(seed());
    while !closed(&a.dir) {
        let m = match menu.claim(Duration::from_millis(100)) {
            Ok(m) => m,
            Err(e) if matches!(e.status(), Status::Empty | Status::Timeout) => continue,
            Err(e) => return Err(e.into()),
        };
        let (item, version) = (m.key(), m.version());
        let text = String::from_utf8_lossy(&m.data()?).into_owned();
        let price = first_number(&text, "price").unwrap_or(0);
        let at = (item.saturating_sub(1)) * RECORD;
        let mut rec = [0u8; RECORD as usize];
        // A short read (past the end) leaves zeros: no version cached yet.
        let _ = cache.read_at(&mut rec, at)?;
        let cached = u64::from_le_bytes(rec[..8].try_into().unwrap_or([0; 8]));
        if version < cached {
            // Would overwrite newer state with older: the engine promised
            // this never reaches a consumer. Report it (the summary fails).
            say(format_args!("older {item} {version} {cached}"));
        }
        // No two messages of a key are in flight at once, so this plain
        // read-modify-write of the item's record races with nobody.
        rec[..8].copy_from_slice(&version.to_le_bytes());
        rec[8..].copy_from_slice(&price.to_le_bytes());
        cache.write_all_at(&rec, at)?;
        std::thread::sleep(around(&mut rng, a.pace));
        say(format_args!("applied {item} {version} {}", a.id));
        m.ack()?;
    }
    Ok(())
}

// ---------------------------------------------------------------------
// The orchestrator
// ---------------------------------------------------------------------

/// Who a child process is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Who {
    role: Role,
    id: u32,
}

impl std::fmt::Display for Who {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self.role {
            Role::Waiter => "waiter",
            Role::Cook => "cook",
            Role::Menu => "menu service",
            Role::MenuCache => "menu cache",
        };
        if self.role == Role::Menu {
            write!(f, "{name}")
        } else {
            write!(f, "{name} {}", self.id)
        }
    }
}

struct Kid {
    who: Who,
    child: Child,
    done: bool,
}

/// What the event lines told so far.
#[derive(Default)]
struct Story {
    placed: Vec<u64>,
    full_events: u64,
    done_placing: u32,
    cooking: HashMap<u64, Vec<(u32, u32)>>,
    cooked: HashMap<u64, Vec<(u32, u32)>>,
    served: HashMap<u64, u32>,
    killed: Option<Killed>,
    published: BTreeMap<u64, u64>,
    published_count: u64,
    refused: u64,
    applied: u64,
    older: u64,
    menu_done: bool,
    menu_unsupported: Option<String>,
    log: VecDeque<String>,
    /// Notes not yet printed (line mode).
    unprinted: usize,
    max_kitchen_used: u64,
    max_waiting_producers: u64,
}

#[derive(Clone, Debug)]
struct Killed {
    cook: u32,
    pid: u32,
    order: u64,
    at: Instant,
    taken_over_by: Option<(u32, u32)>,
}

impl Story {
    fn note(&mut self, line: String) {
        self.log.push_back(line);
        self.unprinted += 1;
        while self.log.len() > 6 {
            self.log.pop_front();
        }
    }
}

enum Msg {
    Line(usize, String),
    Eof(usize),
}

/// A new private directory for the demo's files: under /dev/shm when it
/// can be written (memory, like a real deployment), else the temporary
/// directory.
fn make_default_dir() -> Result<PathBuf, CliError> {
    use std::os::unix::fs::DirBuilderExt;
    let name = format!(
        "shmq-demo-{}-{}",
        std::process::id(),
        shmq::internals::sys::monotonic_ns() % 1_000_000
    );
    let mut last = None;
    for base in [PathBuf::from("/dev/shm"), std::env::temp_dir()] {
        let dir = base.join(&name);
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) => last = Some(format!("{}: {e}", dir.display())),
        }
    }
    Err(CliError::new(format!(
        "IO: demo: creating a directory for the queue files: {}",
        last.unwrap_or_default()
    )))
}

struct Screen {
    out: Box<dyn Write>,
    tty: bool,
}

/// Removes the demo directory at the end (unless the user chose it).
struct DirGuard {
    dir: PathBuf,
    remove: bool,
}

impl Drop for DirGuard {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Set by the SIGINT handler of the orchestrator.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn note_interrupt(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Lets Ctrl-C end the demo cleanly: the orchestrator notices, reaps the
/// roles and removes the queue files instead of dying at once.
fn on_interrupt() {
    let handler: extern "C" fn(libc::c_int) = note_interrupt;
    // SAFETY: installs a handler that only stores to an atomic, which is
    // async-signal-safe; the previous disposition is not needed.
    unsafe {
        libc::signal(libc::SIGINT, handler as libc::sighandler_t);
    }
}

/// `shmq demo`.
pub fn run(a: &DemoArgs) -> CmdResult {
    if a.waiters == 0 || a.cooks == 0 || a.orders == 0 {
        return Err(CliError::new(
            "demo: --waiters, --cooks and --orders must be at least 1",
        ));
    }
    let menu_items = a.menu_items.min(DISHES.len() as u32 * 8);
    let (dir, remove) = match &a.dir {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(|e| {
                CliError::new(format!(
                    "IO: {}: creating the demo directory: {e}",
                    d.display()
                ))
            })?;
            (d.clone(), false)
        }
        None => (make_default_dir()?, true),
    };
    let _guard = DirGuard {
        dir: dir.clone(),
        remove,
    };
    let kitchen_capacity = if a.rush {
        a.kitchen_capacity.min(8)
    } else {
        a.kitchen_capacity
    };
    let lease = Duration::from_secs(5).max(a.cook_time * 4);
    let mk = |name: &str, o: Options| -> Result<Queue, CliError> {
        let p = dir.join(name);
        Queue::create(&p, &o)?.close()?;
        Ok(Queue::inspect(&p)?)
    };
    let kitchen = mk(
        KITCHEN,
        Options {
            capacity: kitchen_capacity,
            max_message_size: 128,
            lease,
            max_deliveries: 5,
            ..Options::default()
        },
    )?;
    // A cook takes hundreds of milliseconds an order, so the survivors call
    // into shmq only now and then; the kitchen's watchdog thread (a handle
    // of this process) sweeps for dead cooks every 2 ms, so a killed cook's
    // order is claimable again within milliseconds, not when the next cook
    // finishes its dish.
    let _watchdog = kitchen.start_watchdog(Duration::from_millis(2))?;
    let ready = mk(
        FOOD_READY,
        Options {
            capacity: 64,
            max_message_size: 128,
            ..Options::default()
        },
    )?;
    let menu = if menu_items > 0 {
        std::fs::write(
            dir.join(CACHE),
            vec![0u8; (menu_items as u64 * RECORD) as usize],
        )?;
        Some(mk(
            MENU,
            Options {
                capacity: 64,
                max_message_size: 128,
                key_capacity: (menu_items as u64 * 2).max(16),
                latest_only: a.latest_only,
                ..Options::default()
            },
        )?)
    } else {
        None
    };

    // How long the story should take, to pace the menu stream over it.
    let per_waiter = a.orders.div_ceil(a.waiters);
    let place_time = if a.rush {
        Duration::ZERO
    } else {
        a.order_every * per_waiter
    };
    let cook_all = a.cook_time * a.orders / a.cooks;
    let story_time = place_time.max(cook_all).max(Duration::from_secs(1));
    let menu_events = menu_items as u64 * 5 + 1;
    let menu_pace = (story_time.mul_f64(0.7) / menu_events as u32).max(Duration::from_millis(2));

    let exe = std::env::current_exe()
        .map_err(|e| CliError::new(format!("IO: demo: finding this program: {e}")))?;
    let (tx, rx) = mpsc::channel::<Msg>();
    let mut kids: Vec<Kid> = Vec::new();
    let doomed_after = if a.no_kill || a.cooks < 2 {
        None
    } else if a.orders > a.cooks * 3 {
        Some(a.orders / (a.cooks * 3))
    } else {
        Some(0)
    };
    let mut spawn =
        |who: Who, count: u32, pace: Duration, extra: &[String]| -> Result<(), CliError> {
            let mut cmd = Command::new(&exe);
            cmd.arg("demo-role")
                .arg("--role")
                .arg(match who.role {
                    Role::Waiter => "waiter",
                    Role::Cook => "cook",
                    Role::Menu => "menu",
                    Role::MenuCache => "menu-cache",
                })
                .arg("--dir")
                .arg(&dir)
                .arg("--id")
                .arg(who.id.to_string())
                .arg("--count")
                .arg(count.to_string())
                .arg("--pace")
                .arg(format!("{}ns", pace.as_nanos()))
                .args(extra)
                .env("SHMQ_DEMO_STRIDE", a.waiters.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit());
            let mut child = cmd
                .spawn()
                .map_err(|e| CliError::new(format!("IO: demo: starting {who}: {e}")))?;
            let idx = kids.len();
            let out = child.stdout.take();
            let tx = tx.clone();
            std::thread::spawn(move || {
                if let Some(out) = out {
                    for line in BufReader::new(out).lines() {
                        match line {
                            Ok(l) => {
                                if tx.send(Msg::Line(idx, l)).is_err() {
                                    return;
                                }
                            }
                            Err(_) => break,
                        }
                    }
                }
                let _ = tx.send(Msg::Eof(idx));
            });
            kids.push(Kid {
                who,
                child,
                done: false,
            });
            Ok(())
        };
    for c in 0..a.cooks {
        let extra: Vec<String> = match doomed_after {
            Some(k) => vec!["--doomed-after".into(), k.to_string()],
            None => vec![],
        };
        spawn(
            Who {
                role: Role::Cook,
                id: c,
            },
            0,
            a.cook_time,
            &extra,
        )?;
    }
    if menu.is_some() {
        for c in 0..a.menu_consumers.max(1) {
            spawn(
                Who {
                    role: Role::MenuCache,
                    id: c,
                },
                menu_items,
                Duration::from_millis(30),
                &[],
            )?;
        }
        spawn(
            Who {
                role: Role::Menu,
                id: 0,
            },
            menu_items,
            menu_pace,
            &[],
        )?;
    }
    for w in 0..a.waiters {
        let count = a.orders / a.waiters + u32::from(w < a.orders % a.waiters);
        let pace = if a.rush {
            Duration::ZERO
        } else {
            a.order_every
        };
        spawn(
            Who {
                role: Role::Waiter,
                id: w,
            },
            count,
            pace,
            &[],
        )?;
    }
    drop(tx);

    let mut screen = if a.json {
        Screen {
            tty: std::io::stderr().is_terminal(),
            out: Box::new(std::io::stderr()),
        }
    } else {
        Screen {
            tty: std::io::stdout().is_terminal(),
            out: Box::new(std::io::stdout()),
        }
    };
    on_interrupt();
    let started = Instant::now();
    let mut st = Story::default();
    let queues: Vec<(&str, &Queue)> = [
        (KITCHEN, Some(&kitchen)),
        (FOOD_READY, Some(&ready)),
        (MENU, menu.as_ref()),
    ]
    .into_iter()
    .filter_map(|(n, q)| q.map(|q| (n, q)))
    .collect();
    let snap = |queues: &[(&str, &Queue)]| -> Vec<View> {
        queues.iter().map(|(n, q)| View::take(n, q)).collect()
    };
    let mut before: Vec<Stats> = queues.iter().map(|(_, q)| q.stats()).collect();
    let mut last_draw = Instant::now();
    let draw_every = if screen.tty {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(1)
    };
    let mut closing: Option<Instant> = None;
    let mut failure: Option<String> = None;
    let mut eofs = 0usize;
    if !screen.tty {
        let _ = writeln!(
            screen.out,
            "shmq demo: {} waiters, {} cooks, {} orders, kitchen of {} slots{}, menu of {} items; queues in {}",
            a.waiters,
            a.cooks,
            a.orders,
            kitchen_capacity,
            if a.rush { " (rush)" } else { "" },
            menu_items,
            dir.display()
        );
    }
    loop {
        if INTERRUPTED.load(Ordering::Relaxed) {
            // Ctrl-C reached the whole process group: the roles are dying
            // too. Make sure of it, then leave (the guard removes the files).
            for k in kids.iter_mut() {
                let _ = k.child.kill();
                let _ = k.child.wait();
            }
            let _ = writeln!(screen.out, "\ninterrupted");
            return Ok(130);
        }
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(Msg::Line(i, line)) => {
                let who = kids[i].who;
                if let Some(k) = on_line(&mut st, who, &line, &mut kids[i]) {
                    st.note(format!(
                        "✗ killed {who} (pid {}) with SIGKILL while it cooked order {}",
                        k.pid, k.order
                    ));
                    st.killed = Some(k);
                }
                // Without a terminal, the story is told line by line.
                if !screen.tty {
                    for l in st
                        .log
                        .iter()
                        .skip(st.log.len().saturating_sub(st.unprinted))
                    {
                        let _ = writeln!(
                            screen.out,
                            "[{}] {l}",
                            human_ns(started.elapsed().as_nanos() as u64)
                        );
                    }
                }
                st.unprinted = 0;
            }
            Ok(Msg::Eof(i)) => {
                eofs += 1;
                let k = &mut kids[i];
                k.done = true;
                let expected = closing.is_some()
                    || k.who.role == Role::Menu
                    || st
                        .killed
                        .as_ref()
                        .is_some_and(|x| k.who.role == Role::Cook && x.cook == k.who.id);
                if !expected && failure.is_none() {
                    let status = k.child.wait().ok();
                    failure = Some(format!("{} exited early ({:?})", k.who, status));
                }
                if eofs == kids.len() {
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if closing.is_none() {
            let menu_drained = match &menu {
                None => true,
                Some(m) => {
                    let s = m.stats();
                    (st.menu_done || st.menu_unsupported.is_some())
                        && s.depth + s.in_flight + s.delayed + s.reserved == 0
                }
            };
            let all_served = st.done_placing == a.waiters
                && st.placed.len() as u32 == a.orders
                && st.served.len() == st.placed.len();
            let timed_out = started.elapsed() > a.max_time;
            if timed_out && failure.is_none() {
                failure = Some(format!(
                    "timed out after {}",
                    human_ns(a.max_time.as_nanos() as u64)
                ));
            }
            if (all_served && menu_drained) || failure.is_some() {
                let _ = File::create(dir.join(CLOSED));
                closing = Some(Instant::now());
            }
        } else if closing.is_some_and(|c| c.elapsed() > Duration::from_secs(5)) {
            for k in kids.iter_mut().filter(|k| !k.done) {
                let _ = k.child.kill();
            }
        }
        let k0 = View::take(KITCHEN, &kitchen);
        let s0 = &k0.stats;
        st.max_kitchen_used = st
            .max_kitchen_used
            .max(s0.depth + s0.in_flight + s0.reserved + s0.delayed);
        st.max_waiting_producers = st.max_waiting_producers.max(k0.waiting_producers);
        if last_draw.elapsed() >= draw_every {
            let now = snap(&queues);
            let deltas: Vec<Delta> = before
                .iter()
                .zip(&now)
                .map(|(b, n)| Delta::between(b, &n.stats))
                .collect();
            draw(
                &mut screen,
                a,
                &st,
                &now,
                &deltas,
                started,
                &dir,
                menu_items,
            );
            before = now.into_iter().map(|v| v.stats).collect();
            last_draw = Instant::now();
        }
    }
    for k in kids.iter_mut() {
        let _ = k.child.wait();
    }
    let elapsed = started.elapsed();
    if screen.tty {
        let now = snap(&queues);
        let deltas: Vec<Delta> = before
            .iter()
            .zip(&now)
            .map(|(b, n)| Delta::between(b, &n.stats))
            .collect();
        draw(
            &mut screen,
            a,
            &st,
            &now,
            &deltas,
            started,
            &dir,
            menu_items,
        );
    }

    let summary = summarize(
        a,
        &st,
        &kitchen,
        &ready,
        menu.as_ref(),
        &dir,
        menu_items,
        kitchen_capacity,
        elapsed,
        failure,
    );
    let ok = summary["ok"].as_bool().unwrap_or(false);
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).unwrap_or_default()
        );
    } else {
        print_summary(&summary);
    }
    if !remove {
        eprintln!("the queue files are kept in {}", dir.display());
    }
    Ok(if ok { 0 } else { 1 })
}

/// Updates the story with one event line; returns the kill if this line
/// made the orchestrator kill a cook.
fn on_line(st: &mut Story, who: Who, line: &str, kid: &mut Kid) -> Option<Killed> {
    let w: Vec<&str> = line.split_whitespace().collect();
    let n = |i: usize| w.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    match w.first().copied() {
        Some("placed") => st.placed.push(n(1)),
        Some("full") => {
            st.full_events += 1;
            if st.full_events == 1 {
                st.note(format!(
                    "{who} found the kitchen full: waits for room (back-pressure)"
                ));
            }
        }
        Some("done-placing") => st.done_placing += 1,
        Some("cooking") => {
            let (order, deliveries) = (n(1), n(2) as u32);
            st.cooking
                .entry(order)
                .or_default()
                .push((who.id, deliveries));
            if let Some(k) = st.killed.as_mut() {
                if k.order == order && who.id != k.cook {
                    k.taken_over_by = Some((who.id, deliveries));
                    let after = k.at.elapsed();
                    st.note(format!(
                        "✓ {who} took over order {order} (delivery {deliveries}), {} after the kill",
                        human_ns(after.as_nanos() as u64)
                    ));
                }
            }
            if w.get(3) == Some(&"long") {
                let pid = kid.child.id();
                // SIGKILL, mid-order: the claim is still held.
                let _ = kid.child.kill();
                let _ = kid.child.wait();
                return Some(Killed {
                    cook: who.id,
                    pid,
                    order,
                    at: Instant::now(),
                    taken_over_by: None,
                });
            }
        }
        Some("cooked") => st
            .cooked
            .entry(n(1))
            .or_default()
            .push((who.id, n(2) as u32)),
        Some("served") => *st.served.entry(n(1)).or_insert(0) += 1,
        Some("published") => {
            st.published_count += 1;
            let e = st.published.entry(n(1)).or_insert(0);
            *e = (*e).max(n(2));
        }
        Some("refused") => {
            st.refused += 1;
            if st.refused == 1 {
                st.note(format!(
                    "menu: version {} of item {} refused at send: STALE",
                    n(2),
                    n(1)
                ));
            }
        }
        Some("applied") => st.applied += 1,
        Some("older") => {
            st.older += 1;
            st.note(format!(
                "✗ {who} got item {} version {} over {}",
                n(1),
                n(2),
                n(3)
            ));
        }
        Some("menu-done") => st.menu_done = true,
        Some("unsupported") => st.menu_unsupported = Some(w[1..].join(" ")),
        _ => {}
    }
    None
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

#[allow(clippy::too_many_arguments)]
fn draw(
    screen: &mut Screen,
    a: &DemoArgs,
    st: &Story,
    now: &[View],
    deltas: &[Delta],
    started: Instant,
    dir: &Path,
    menu_items: u32,
) {
    let t = human_ns(started.elapsed().as_nanos() as u64);
    let killed = if st.killed.is_some() {
        " (1 killed)"
    } else {
        ""
    };
    if !screen.tty {
        let k = &now[0].stats;
        let _ = writeln!(
            screen.out,
            "[{t}] placed {}/{} served {} | kitchen {}/{} used (waiting {}, cooking {}) produced {} consumed {} | refused full {} producers asleep {} redelivered {} | menu stale {}",
            st.placed.len(),
            a.orders,
            st.served.len(),
            k.depth + k.in_flight + k.reserved + k.delayed,
            k.capacity,
            k.depth,
            k.in_flight,
            crate::util::human_rate(deltas[0].rate(Counter::Sent)),
            crate::util::human_rate(deltas[0].rate(Counter::Acked)),
            k.counter(Counter::Full),
            now[0].waiting_producers,
            k.counter(Counter::Redelivered),
            now.get(2).map_or(0, |m| m.stats.counter(Counter::Stale)),
        );
        let _ = screen.out.flush();
        return;
    }
    let mut o = String::new();
    o += stats_view::CLEAR;
    o += &format!(
        "shmq demo: the restaurant   {t}   {} waiters, {} cooks{killed}   {}\n",
        a.waiters,
        a.cooks,
        dir.display()
    );
    o += &format!(
        "orders placed {}/{}   cooked {}   served {}   kitchen found full {} times\n",
        st.placed.len(),
        a.orders,
        st.cooked.len(),
        st.served.len(),
        st.full_events
    );
    for (v, d) in now.iter().zip(deltas) {
        o += &stats_view::compact_panel(v, d);
    }
    if menu_items > 0 {
        let cache = read_cache(dir, menu_items);
        o += &format!(
            "\nmenu cache (published {}, refused stale at send {}, applied {}):\n",
            st.published_count, st.refused, st.applied
        );
        let row: Vec<String> = cache
            .iter()
            .enumerate()
            .map(|(i, (v, _))| format!("{:>9} v{v:<3}", dish(i as u64)))
            .collect();
        for chunk in row.chunks(6) {
            o += &format!(" {}\n", chunk.join(""));
        }
    }
    o += "\nstory:\n";
    for l in &st.log {
        o += &format!("  {l}\n");
    }
    let _ = screen.out.write_all(o.as_bytes());
    let _ = screen.out.flush();
}

#[allow(clippy::too_many_arguments)]
fn summarize(
    a: &DemoArgs,
    st: &Story,
    kitchen: &Queue,
    ready: &Queue,
    menu: Option<&Queue>,
    dir: &Path,
    menu_items: u32,
    kitchen_capacity: u64,
    elapsed: Duration,
    failure: Option<String>,
) -> Value {
    let ks = kitchen.stats();
    let mut problems: Vec<String> = failure.into_iter().collect();
    let placed: std::collections::HashSet<u64> = st.placed.iter().copied().collect();
    let served_once = placed.iter().all(|o| st.served.get(o) == Some(&1));
    let served_unknown = st.served.keys().filter(|o| !placed.contains(o)).count();
    let served_twice = st.served.values().filter(|n| **n > 1).count();
    if st.placed.len() as u32 != a.orders {
        problems.push(format!("{} orders placed of {}", st.placed.len(), a.orders));
    }
    if !served_once || served_unknown > 0 {
        problems.push(format!(
            "orders not served exactly once: {} missing, {served_twice} served twice, {served_unknown} unknown",
            placed.iter().filter(|o| !st.served.contains_key(o)).count()
        ));
    }
    let killed = st.killed.as_ref().map(|k| {
        let cooked = st.cooked.get(&k.order).cloned().unwrap_or_default();
        let served = st.served.get(&k.order).copied().unwrap_or(0);
        json!({
            "cook": k.cook, "pid": k.pid, "order": k.order,
            "taken_over_by": k.taken_over_by.map(|(c, _)| c),
            "deliveries": k.taken_over_by.map(|(_, d)| d),
            "cooked_times": cooked.len(), "served_times": served,
            // Every claim of the order: [cook, delivery number].
            "claims": st.cooking.get(&k.order).cloned().unwrap_or_default(),
        })
    });
    let kill_expected = !a.no_kill && a.cooks >= 2;
    if kill_expected {
        match &st.killed {
            None => problems.push("no cook was killed".into()),
            Some(k) => {
                let cooked = st.cooked.get(&k.order).cloned().unwrap_or_default();
                let by_other = cooked.len() == 1 && cooked[0].0 != k.cook && cooked[0].1 == 2;
                if !by_other || st.served.get(&k.order) != Some(&1) {
                    problems.push(format!(
                        "the killed cook's order {} was cooked {:?} and served {:?} times",
                        k.order,
                        cooked,
                        st.served.get(&k.order)
                    ));
                }
            }
        }
    }
    let mut verify = serde_json::Map::new();
    let mut check = |name: &str, q: &Queue| {
        let r = q.verify();
        for p in &r.problems {
            problems.push(format!("verify {name}: {p}"));
        }
        verify.insert(name.into(), json!(r.problems));
    };
    check(KITCHEN, kitchen);
    check(FOOD_READY, ready);
    let menu_json = match menu {
        None => Value::Null,
        Some(m) => {
            check(MENU, m);
            let ms = m.stats();
            let cache = read_cache(dir, menu_items);
            let mut items = Vec::new();
            let mut newest_everywhere = true;
            for (i, (v, p)) in cache.iter().enumerate() {
                let item = i as u64 + 1;
                let newest = st.published.get(&item).copied().unwrap_or(0);
                let engine = m.latest_acked_version(item);
                let good =
                    *v == newest && engine == newest && (*v == 0 || *p == price_cents(item, *v));
                newest_everywhere &= good;
                items.push(
                    json!({"item": item, "name": dish(i as u64), "cached_version": v,
                    "newest_published": newest, "engine_last_acked": engine, "price_cents": p}),
                );
            }
            if let Some(why) = &st.menu_unsupported {
                problems.push(format!("menu: keyed sends unsupported: {why}"));
            }
            if st.older > 0 {
                problems.push(format!(
                    "menu: {} older versions reached a consumer",
                    st.older
                ));
            }
            if !newest_everywhere {
                problems
                    .push("menu: the cache does not hold the newest version of every item".into());
            }
            let stale = ms.counter(Counter::Stale);
            json!({
                "items": menu_items,
                "published": st.published_count,
                "refused_stale_at_send": st.refused,
                "stale_total": stale,
                "skipped_stale_in_queue": stale.saturating_sub(st.refused),
                "key_waits": ms.counter(Counter::KeyWaits),
                "latest_only": a.latest_only,
                "conflated": ms.counter(Counter::Conflated),
                "applied": st.applied,
                "older_applied": st.older,
                "cache_holds_newest": newest_everywhere,
                "cache": items,
            })
        }
    };
    json!({
        "ok": problems.is_empty(),
        "problems": problems,
        "elapsed_s": elapsed.as_secs_f64(),
        "waiters": a.waiters, "cooks": a.cooks, "rush": a.rush,
        "orders": {
            "requested": a.orders,
            "placed": st.placed.len(),
            "cooked": st.cooked.len(),
            "served": st.served.len(),
            "served_exactly_once": served_once && served_unknown == 0,
        },
        "killed_cook": killed,
        "kitchen": {
            "capacity": kitchen_capacity,
            "max_used": st.max_kitchen_used,
            "refused_full": ks.counter(Counter::Full),
            "waiter_waits": st.full_events,
            "max_producers_asleep": st.max_waiting_producers,
            "redelivered": ks.counter(Counter::Redelivered),
            "dead_participants": ks.counter(Counter::DeadParticipants),
            "time_in_queue_p50_ns": ks.histogram(shmq::Histogram::LeadTime).quantile(0.5),
            "time_in_queue_p99_ns": ks.histogram(shmq::Histogram::LeadTime).quantile(0.99),
            "processing_p50_ns": ks.histogram(shmq::Histogram::Processing).quantile(0.5),
        },
        "menu": menu_json,
        "verify": verify,
    })
}

fn print_summary(s: &Value) {
    let o = &s["orders"];
    println!();
    println!("summary ({:.1}s)", s["elapsed_s"].as_f64().unwrap_or(0.0));
    println!(
        "  orders: {} placed, {} cooked, {} served{}",
        o["placed"],
        o["cooked"],
        o["served"],
        if o["served_exactly_once"].as_bool() == Some(true) {
            " — every order served exactly once"
        } else {
            " — NOT every order served exactly once"
        }
    );
    let k = &s["killed_cook"];
    if !k.is_null() {
        println!(
            "  killed cook {} (pid {}) mid-order {}: cook {} took it over on delivery {}; cooked {}×, served {}×",
            k["cook"], k["pid"], k["order"], k["taken_over_by"], k["deliveries"], k["cooked_times"], k["served_times"]
        );
    }
    let kit = &s["kitchen"];
    println!(
        "  kitchen: at most {} of {} slots used; {} sends refused full, waiters waited {} times (at most {} asleep at once); {} redelivered; p50 time in queue {}",
        kit["max_used"],
        kit["capacity"],
        kit["refused_full"],
        kit["waiter_waits"],
        kit["max_producers_asleep"],
        kit["redelivered"],
        human_ns(kit["time_in_queue_p50_ns"].as_u64().unwrap_or(0))
    );
    let m = &s["menu"];
    if !m.is_null() {
        println!(
            "  menu: {} changes published, {} refused at send (STALE), {} stale skipped in the queue, {} replaced while waiting (latest-only), {} applied, {} older over newer{}",
            m["published"],
            m["refused_stale_at_send"],
            m["skipped_stale_in_queue"],
            m["conflated"],
            m["applied"],
            m["older_applied"],
            if m["cache_holds_newest"].as_bool() == Some(true) {
                "; the cache holds the newest version of every item"
            } else {
                "; the cache is NOT up to date"
            }
        );
    }
    if s["ok"].as_bool() == Some(true) {
        println!("  all checks hold; every queue file verifies.");
    } else {
        for p in s["problems"].as_array().into_iter().flatten() {
            println!("  PROBLEM: {}", p.as_str().unwrap_or(""));
        }
    }
}
