//! The live view of the demo: the three queues' metrics, the story so far
//! and the last notes, redrawn on a terminal (or printed as lines).

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use shmq::Counter;

use crate::stats_view::View;

use super::story::Story;
use super::{dish, read_cache};
use crate::cli::DemoArgs;
use crate::stats_view::{self, Delta};
use crate::util::{human_ns, plural};

/// Where the live view goes, and whether that is a terminal.
pub(super) struct Screen {
    pub(super) out: Box<dyn Write>,
    pub(super) tty: bool,
}

#[allow(clippy::too_many_arguments)]
pub(super) fn draw(
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
        "orders placed {}/{}   cooked {}   served {}   kitchen found full {}\n",
        st.placed.len(),
        a.orders,
        st.cooked.len(),
        st.served.len(),
        plural(st.full_events, "time")
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
