//! The orchestrator of `shmq demo`: creates the queues in a fresh
//! directory, spawns the roles, reads their event lines, kills the doomed
//! cook, ends the demo when every order is served and reaps the roles.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use shmq::{Options, Queue, Stats};

use crate::stats_view::View;

use super::live::{draw, Screen};
use super::story::{on_line, Kid, Story, Who};
use super::summary::{print_summary, summarize};
use super::{CACHE, CLOSED, DISHES, FOOD_READY, KITCHEN, MENU, RECORD};
use crate::cli::{DemoArgs, Role};
use crate::stats_view::Delta;
use crate::util::{human_ns, CliError, CmdResult};

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

    let mut screen = Screen::new(a.json);
    let names: Vec<&str> = [KITCHEN, FOOD_READY]
        .into_iter()
        .chain(menu.as_ref().map(|_| MENU))
        .collect();
    screen.start(a.json, &dir, &names);
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
            screen.finish();
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
        screen.finish();
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
