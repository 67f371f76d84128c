//! The demo's summary: computed from the story, the queue stats, `verify`
//! and the cache file, it states whether the story held, as JSON or text.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use shmq::{Counter, Queue};

use super::story::Story;
use super::{dish, price_cents, read_cache, FOOD_READY, KITCHEN, MENU};
use crate::cli::DemoArgs;
use crate::util::{human_ns, plural};

#[allow(clippy::too_many_arguments)]
pub(super) fn summarize(
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
                        "the killed cook's order {} was cooked {:?} and served {}",
                        k.order,
                        cooked,
                        plural(st.served.get(&k.order).copied().unwrap_or(0), "time")
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

pub(super) fn print_summary(s: &Value) {
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
        "  kitchen: at most {} of {} slots used; {} refused full, waiters waited {} (at most {} asleep at once); {} redelivered; p50 time in queue {}",
        kit["max_used"],
        kit["capacity"],
        plural(kit["refused_full"].as_u64().unwrap_or(0), "send"),
        plural(kit["waiter_waits"].as_u64().unwrap_or(0), "time"),
        kit["max_producers_asleep"],
        kit["redelivered"],
        human_ns(kit["time_in_queue_p50_ns"].as_u64().unwrap_or(0))
    );
    let m = &s["menu"];
    if !m.is_null() {
        // Replacement in place happens only in latest-only mode: the count
        // is shown only for a queue in that mode.
        let replaced = if m["latest_only"].as_bool() == Some(true) {
            format!(", {} replaced while waiting (latest-only)", m["conflated"])
        } else {
            String::new()
        };
        println!(
            "  menu: {} published, {} refused at send (STALE), {} stale skipped in the queue{replaced}, {} applied, {} older over newer{}",
            plural(m["published"].as_u64().unwrap_or(0), "change"),
            m["refused_stale_at_send"],
            m["skipped_stale_in_queue"],
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
