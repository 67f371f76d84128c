//! The roles of the demo, each one process (`shmq demo-role --role ...`):
//! waiters, cooks, the menu service and the menu cache consumers. Each
//! reports what it does as one event line on its stdout.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use shmq::{Queue, SendOptions, Status, Timeout};
use shmq_testkit::Rng;

use super::{
    around, dish, price_cents, seed, CACHE, CLOSED, DOOM, FOOD_READY, KITCHEN, MENU, RECORD,
};
use crate::cli::{Role, RoleArgs};
use crate::util::{CliError, CmdResult};

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

pub(super) fn closed(dir: &Path) -> bool {
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

pub(super) fn waiter(a: &RoleArgs) -> Result<(), CliError> {
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

pub(super) fn cook(a: &RoleArgs) -> Result<(), CliError> {
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
