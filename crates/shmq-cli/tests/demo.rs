//! `shmq demo` through the real binary, with small numbers: its JSON
//! summary must prove the story (every order served exactly once, the
//! killed cook's order redelivered and served once, the menu cache holding
//! the newest version of every item, every queue file verifying), and the
//! rush must show back-pressure.

use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_shmq");

fn demo(args: &[&str]) -> Value {
    let o = Command::new(BIN)
        .arg("demo")
        .args(args)
        .arg("--json")
        .arg("--max-time")
        .arg("90s")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    let v: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}\nstdout: {stdout}\nstderr: {stderr}"));
    assert_eq!(
        o.status.code(),
        Some(if v["ok"] == true { 0 } else { 1 }),
        "{v:#}"
    );
    assert!(stderr.contains("killed") || args.contains(&"--no-kill"));
    v
}

#[test]
fn the_restaurant_story_holds() {
    let v = demo(&[
        "--orders",
        "16",
        "--waiters",
        "2",
        "--cooks",
        "3",
        "--menu-items",
        "4",
        "--cook-time",
        "40ms",
        "--order-every",
        "30ms",
    ]);
    assert_eq!(v["ok"], true, "{v:#}");
    assert_eq!(v["problems"].as_array().unwrap().len(), 0);
    let o = &v["orders"];
    assert_eq!(o["placed"], 16);
    assert_eq!(o["served"], 16);
    assert_eq!(o["served_exactly_once"], true);

    let k = &v["killed_cook"];
    assert!(!k.is_null(), "{v:#}");
    assert_eq!(k["deliveries"], 2, "{k}");
    assert_eq!(k["served_times"], 1);
    assert_eq!(k["cooked_times"], 1);
    assert_ne!(k["taken_over_by"], k["cook"]);
    // Claimed twice: by the killed cook (delivery 1), then by another (2).
    let claims = k["claims"].as_array().unwrap();
    assert_eq!(claims.len(), 2, "{k}");
    assert_eq!(claims[0][0], k["cook"]);
    assert_eq!(claims[0][1], 1);
    assert_eq!(claims[1][0], k["taken_over_by"]);
    assert_eq!(claims[1][1], 2);
    assert!(v["kitchen"]["redelivered"].as_u64().unwrap() >= 1);
    assert!(v["kitchen"]["dead_participants"].as_u64().unwrap() >= 1);

    let m = &v["menu"];
    assert_eq!(m["older_applied"], 0);
    assert_eq!(m["cache_holds_newest"], true, "{m:#}");
    assert!(m["published"].as_u64().unwrap() >= 4 * 5);
    // Stale versions were refused at send or skipped in the queue, and
    // counted by the engine.
    assert_eq!(
        m["stale_total"].as_u64().unwrap(),
        m["refused_stale_at_send"].as_u64().unwrap()
            + m["skipped_stale_in_queue"].as_u64().unwrap()
    );
    for item in m["cache"].as_array().unwrap() {
        assert_eq!(item["cached_version"], item["newest_published"], "{item}");
        assert_eq!(
            item["engine_last_acked"], item["newest_published"],
            "{item}"
        );
    }
    for (q, problems) in v["verify"].as_object().unwrap() {
        assert_eq!(problems.as_array().unwrap().len(), 0, "{q}: {problems}");
    }
}

#[test]
fn a_rush_shows_back_pressure() {
    let v = demo(&[
        "--rush",
        "--orders",
        "30",
        "--waiters",
        "3",
        "--cooks",
        "2",
        "--kitchen-capacity",
        "4",
        "--menu-items",
        "0",
        "--cook-time",
        "20ms",
    ]);
    assert_eq!(v["ok"], true, "{v:#}");
    let k = &v["kitchen"];
    assert_eq!(k["capacity"], 4);
    assert_eq!(k["max_used"], 4, "{k}");
    assert!(k["refused_full"].as_u64().unwrap() > 0, "{k}");
    assert!(k["waiter_waits"].as_u64().unwrap() > 0, "{k}");
    assert_eq!(v["orders"]["served_exactly_once"], true);
    assert!(v["menu"].is_null());
}

#[test]
fn without_a_kill_nothing_is_redelivered() {
    let v = demo(&[
        "--no-kill",
        "--orders",
        "6",
        "--waiters",
        "1",
        "--cooks",
        "2",
        "--menu-items",
        "2",
        "--cook-time",
        "10ms",
        "--order-every",
        "10ms",
    ]);
    assert_eq!(v["ok"], true, "{v:#}");
    assert!(v["killed_cook"].is_null());
    assert_eq!(v["kitchen"]["redelivered"], 0);
    assert_eq!(v["orders"]["served"], 6);
}

#[test]
fn a_latest_only_menu_conflates_and_stays_newest() {
    let v = demo(&[
        "--latest-only",
        "--orders",
        "6",
        "--waiters",
        "1",
        "--cooks",
        "2",
        "--menu-items",
        "3",
        "--menu-consumers",
        "1",
        "--cook-time",
        "30ms",
        "--order-every",
        "20ms",
    ]);
    assert_eq!(v["ok"], true, "{v:#}");
    let m = &v["menu"];
    assert_eq!(m["latest_only"], true);
    assert!(m["conflated"].as_u64().unwrap() >= 1, "{m:#}");
    assert_eq!(m["older_applied"], 0);
    assert_eq!(m["cache_holds_newest"], true, "{m:#}");
}

#[test]
fn with_dir_the_queue_files_stay_and_verify() {
    let dir = std::env::temp_dir().join(format!("shmq-demo-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let v = demo(&[
        "--dir",
        dir.to_str().unwrap(),
        "--orders",
        "5",
        "--waiters",
        "1",
        "--cooks",
        "2",
        "--menu-items",
        "0",
        "--cook-time",
        "10ms",
        "--order-every",
        "5ms",
    ]);
    assert_eq!(v["ok"], true, "{v:#}");
    for q in ["kitchen", "food-ready"] {
        let path = dir.join(q);
        let o = Command::new(BIN).arg("verify").arg(&path).output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{q}");
        let o = Command::new(BIN)
            .args(["stats", "--json"])
            .arg(&path)
            .output()
            .unwrap();
        let s: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(s["counters"]["sent"], 5, "{q}: {s}");
        assert_eq!(s["counters"]["acked"], 5, "{q}: {s}");
        assert_eq!(s["depth"], 0);
        assert_eq!(
            s["participants"], 0,
            "every role detached or was cleaned up"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The text summary: counts read as English ("1 time", not "1 times"),
/// and replacements in place are reported only for a latest-only menu.
#[test]
fn the_text_summary_reads_plainly() {
    let run = |extra: &[&str]| {
        let o = Command::new(BIN)
            .arg("demo")
            .args([
                "--no-kill",
                "--orders",
                "4",
                "--waiters",
                "1",
                "--cooks",
                "1",
                "--menu-items",
                "2",
                "--cook-time",
                "10ms",
                "--order-every",
                "10ms",
                "--max-time",
                "90s",
            ])
            .args(extra)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
        assert_eq!(o.status.code(), Some(0), "{stdout}");
        stdout
    };
    let plain = run(&[]);
    assert!(plain.contains("menu:"), "{plain}");
    assert!(!plain.contains("replaced while waiting"), "{plain}");
    assert!(!plain.contains(" 1 times"), "{plain}");
    let latest = run(&["--latest-only"]);
    assert!(
        latest.contains("replaced while waiting (latest-only)"),
        "{latest}"
    );
    assert!(!latest.contains(" 1 times"), "{latest}");
}

/// `cmd` run by util-linux `script` on a pseudo-terminal 100x60 (stdin
/// closed), with its output; None when `script` or a pty is unavailable.
fn on_a_pty(cmd: &str) -> Option<Vec<u8>> {
    let script = |c: &str| {
        Command::new("script")
            .args(["-qec", c, "/dev/null"])
            .stdin(std::process::Stdio::null())
            .output()
            .ok()
    };
    if !script("true")?.status.success() {
        return None;
    }
    let o = script(&format!("stty cols 100 rows 60; {cmd}"))?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    Some(o.stdout)
}

/// On a terminal the live view is `shmq top`'s dashboard of the three
/// queues, on the alternate screen (left at the end, the cursor shown
/// again, the last frame printed as text above the summary), coloured
/// unless NO_COLOR is set, drawn without clearing the screen.
#[test]
fn on_a_terminal_the_live_view_is_the_dashboard() {
    for (no_color, coloured) in [("", true), ("1", false)] {
        let cmd = format!(
            "NO_COLOR={no_color} {BIN} demo --no-kill --orders 4 --waiters 1 --cooks 1 \
             --menu-items 2 --cook-time 100ms --order-every 50ms --max-time 90s"
        );
        let Some(out) = on_a_pty(&cmd) else {
            eprintln!("no `script` or no pseudo-terminal: skipped");
            return;
        };
        let text = String::from_utf8_lossy(&out);
        let (enter, leave) = (text.find("\x1b[?1049h"), text.rfind("\x1b[?1049l"));
        assert!(enter.is_some() && leave > enter, "{text:?}");
        let after = &text[leave.unwrap()..];
        assert!(after.contains("\x1b[?25h"), "the cursor is shown again");
        // The last frame, as text, then the summary.
        for panel in ["┌ kitchen ", "┌ food-ready ", "┌ menu "] {
            assert!(after.contains(panel), "{panel} not in {after}");
        }
        for word in [
            " produced ",
            " consumed ",
            "/16 used: depth",
            "time in queue p50",
            "dead letters 0",
            "orders placed 4/4",
            "menu cache",
        ] {
            assert!(after.contains(word), "{word} not in {after}");
        }
        assert!(after.find("┌ kitchen ") < after.find("summary"), "{after}");
        // Drawn cell by cell, never by clearing the whole screen.
        assert!(!text.contains("\x1b[H\x1b[2J"), "{text:?}");
        assert_eq!(
            text.contains("\x1b[38;5;"),
            coloured,
            "NO_COLOR={no_color}: {text:?}"
        );
    }
}
