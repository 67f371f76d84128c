//! What the event lines told the orchestrator: who each child is, the
//! story so far (orders placed, cooking, served, the killed cook, menu
//! versions), and [`on_line`], which reads one line into it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::process::Child;
use std::time::Instant;

use crate::cli::Role;
use crate::util::human_ns;

/// Who a child process is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Who {
    pub(super) role: Role,
    pub(super) id: u32,
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

pub(super) struct Kid {
    pub(super) who: Who,
    pub(super) child: Child,
    pub(super) done: bool,
}

/// What the event lines told so far.
#[derive(Default)]
pub(super) struct Story {
    pub(super) placed: Vec<u64>,
    pub(super) full_events: u64,
    pub(super) done_placing: u32,
    pub(super) cooking: HashMap<u64, Vec<(u32, u32)>>,
    pub(super) cooked: HashMap<u64, Vec<(u32, u32)>>,
    pub(super) served: HashMap<u64, u32>,
    pub(super) killed: Option<Killed>,
    pub(super) published: BTreeMap<u64, u64>,
    pub(super) published_count: u64,
    pub(super) refused: u64,
    pub(super) applied: u64,
    pub(super) older: u64,
    pub(super) menu_done: bool,
    pub(super) menu_unsupported: Option<String>,
    pub(super) log: VecDeque<String>,
    /// Notes not yet printed (line mode).
    pub(super) unprinted: usize,
    pub(super) max_kitchen_used: u64,
    pub(super) max_waiting_producers: u64,
}

#[derive(Clone, Debug)]
pub(super) struct Killed {
    pub(super) cook: u32,
    pub(super) pid: u32,
    pub(super) order: u64,
    pub(super) at: Instant,
    pub(super) taken_over_by: Option<(u32, u32)>,
}

impl Story {
    pub(super) fn note(&mut self, line: String) {
        self.log.push_back(line);
        self.unprinted += 1;
        while self.log.len() > 6 {
            self.log.pop_front();
        }
    }
}

/// Updates the story with one event line; returns the kill if this line
/// made the orchestrator kill a cook.
pub(super) fn on_line(st: &mut Story, who: Who, line: &str, kid: &mut Kid) -> Option<Killed> {
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
