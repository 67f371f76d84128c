//! The `shmq` command line through the real binary: every subcommand, its
//! exit codes, human and JSON output, Prometheus output checked against
//! `stats --json`, the scrape endpoint over loopback, `verify` on a sound
//! and on a damaged file, dead letters, and `recover` after a SIGKILL.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::*;

/// A child process killed when the test ends, even by a failed assertion.
struct Reaper(std::process::Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn every_subcommand_has_help_with_examples() {
    let top = ok(shmq(&["--help"]));
    for sub in [
        "create",
        "info",
        "stats",
        "top",
        "serve-metrics",
        "send",
        "recv",
        "dlq",
        "verify",
        "recover",
        "demo",
    ] {
        assert!(top.contains(sub), "{sub} missing from --help");
        let h = ok(shmq(&[sub, "--help"]));
        assert!(
            h.contains("Examples:"),
            "{sub} --help has no examples:\n{h}"
        );
    }
    assert!(!top.contains("demo-role"), "the internal role is hidden");
    let bad = shmq(&["create"]);
    assert_eq!(bad.status.code(), Some(2), "usage errors exit 2");
    let bad = shmq(&["create", "/tmp/x", "--lease", "soon"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(err(&bad).contains("not a duration"), "{}", err(&bad));
}

#[test]
fn create_and_info() {
    let d = Dir::new("create");
    let q = d.path("q");
    let s = ok(shmq(&[
        "create",
        p(&q),
        "--capacity",
        "8",
        "--max-message-size",
        "100",
        "--keys",
        "32",
        "--lease",
        "2s",
        "--max-deliveries",
        "3",
        "--latest-only",
        "--mode",
        "0640",
    ]));
    assert!(s.contains("created") && s.contains(p(&q)), "{s}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&q).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);

    let again = shmq(&["create", p(&q)]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        err(&again).contains("EXISTS") && err(&again).contains(p(&q)),
        "{}",
        err(&again)
    );

    let info = json(shmq(&["info", p(&q), "--json"]));
    assert_eq!(info["layout"]["capacity"], 8);
    assert_eq!(info["layout"]["max_message_size"], 100);
    assert_eq!(info["layout"]["key_capacity"], 32);
    assert_eq!(info["options"]["lease_ns"], 2_000_000_000u64);
    assert_eq!(info["options"]["max_deliveries"], 3);
    assert_eq!(info["options"]["latest_only"], true);
    assert_eq!(info["participants"].as_array().unwrap().len(), 0);
    assert_eq!(
        info["layout"]["file_size"].as_u64().unwrap(),
        std::fs::metadata(&q).unwrap().len()
    );

    let human = ok(shmq(&["info", p(&q)]));
    assert!(human.contains("latest-only") && human.contains("participants: 0 attached"));

    let missing = shmq(&["info", p(&d.path("nope"))]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        err(&missing).contains("NOT_FOUND") && err(&missing).contains("nope"),
        "{}",
        err(&missing)
    );
}

#[test]
fn info_shows_live_participants() {
    let d = Dir::new("participants");
    let q = d.path("q");
    ok(shmq(&["create", p(&q)]));
    ok(shmq(&["send", p(&q), "one"]));
    // A consumer that holds its claim (`--no-ack`) and waits for more.
    let mut holder = Command::new(BIN)
        .args(["recv", p(&q), "--follow", "--no-ack"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(holder.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "one");
    let info = json(shmq(&["info", p(&q), "--json"]));
    let parts = info["participants"].as_array().unwrap();
    assert_eq!(parts.len(), 1, "{info}");
    assert_eq!(parts[0]["pid"], holder.id());
    assert_eq!(parts[0]["alive"], true);
    assert_eq!(parts[0]["consumer"], true);
    assert_eq!(parts[0]["producer"], false);

    // SIGKILL: the participant is dead at once, and `recover` cleans up.
    holder.kill().unwrap();
    holder.wait().unwrap();
    let info = json(shmq(&["info", p(&q), "--json"]));
    assert_eq!(info["participants"][0]["alive"], false, "{info}");
    let human = ok(shmq(&["info", p(&q)]));
    assert!(human.contains("DEAD"), "{human}");
    let st = json(shmq(&["stats", p(&q), "--json"]));
    assert_eq!(st["in_flight"], 1);
    let verify = ok(shmq(&["verify", p(&q)]));
    assert!(verify.contains("run recover"), "{verify}");

    let r = json(shmq(&["recover", p(&q), "--json"]));
    assert_eq!(r["dead_participants_cleaned"], 1, "{r}");
    assert_eq!(r["before"]["in_flight"], 1, "{r}");
    assert_eq!(r["after"]["in_flight"], 0, "{r}");
    assert_eq!(r["after"]["depth"], 1, "{r}");
    let info = json(shmq(&["info", p(&q), "--json"]));
    assert_eq!(info["participants"].as_array().unwrap().len(), 0);
    let m = json_lines(&ok(shmq(&["recv", p(&q), "--json"])));
    assert_eq!(m[0]["data"], "one");
    assert_eq!(m[0]["deliveries"], 2);
}

#[test]
fn send_and_recv() {
    let d = Dir::new("sendrecv");
    let q = d.path("q");
    ok(shmq(&["create", p(&q), "--capacity", "16"]));
    let s = ok(shmq(&["send", p(&q), "first", "second"]));
    assert!(s.contains("sent 2 messages"), "{s}");
    let s = ok(shmq_stdin(&["send", p(&q)], "third\nfourth\r\n\nsixth"));
    assert!(s.contains("sent 4 messages"), "{s}");

    let got = ok(shmq(&["recv", p(&q), "--count", "2"]));
    assert_eq!(got, "first\nsecond\n");
    let got = json_lines(&ok(shmq(&["recv", p(&q), "-n", "10", "--json"])));
    let data: Vec<&str> = got.iter().map(|m| m["data"].as_str().unwrap()).collect();
    assert_eq!(data, ["third", "fourth", "", "sixth"]);
    assert!(got.iter().all(|m| m["deliveries"] == 1 && m["key"] == 0));

    // Nothing left: exit 3 after the timeout, with a message.
    let none = shmq(&["recv", p(&q), "--timeout", "50ms"]);
    assert_eq!(none.status.code(), Some(3));
    assert!(err(&none).contains("nothing to receive"));

    // --no-ack claims and nacks: the messages stay, with one more delivery.
    ok(shmq(&["send", p(&q), "peek-a", "peek-b"]));
    let peek = ok(shmq(&["recv", p(&q), "-n", "2", "--no-ack"]));
    assert_eq!(peek, "peek-a\npeek-b\n");
    let got = json_lines(&ok(shmq(&["recv", p(&q), "-n", "2", "--json"])));
    assert_eq!(got[0]["data"], "peek-a");
    assert_eq!(got[0]["deliveries"], 2);
    assert_eq!(got[1]["deliveries"], 2);

    // Delay: not claimable at once.
    ok(shmq(&["send", p(&q), "later", "--delay", "300ms"]));
    assert_eq!(
        shmq(&["recv", p(&q), "--timeout", "0"]).status.code(),
        Some(3)
    );
    let st = json(shmq(&["stats", p(&q), "--json"]));
    assert_eq!(st["delayed"], 1);
    let got = ok(shmq(&["recv", p(&q), "--timeout", "5s"]));
    assert_eq!(got, "later\n");

    // Too large: an error naming the file, exit 1.
    let big = "x".repeat(300);
    let e = shmq(&["send", p(&q), &big]);
    assert_eq!(e.status.code(), Some(1));
    assert!(err(&e).contains("TOO_LARGE") && err(&e).contains(p(&q)));

    // Full: with --timeout 0, refused at once.
    let small = d.path("small");
    ok(shmq(&["create", p(&small), "--capacity", "2"]));
    let e = shmq(&["send", p(&small), "a", "b", "c", "--timeout", "0"]);
    assert_eq!(e.status.code(), Some(1));
    assert!(
        err(&e).contains("FULL") && err(&e).contains("2 sent before"),
        "{}",
        err(&e)
    );
    let st = json(shmq(&["stats", p(&small), "--json"]));
    assert_eq!(st["counters"]["refused_full"], 1);
    assert_eq!(st["depth"], 2);
}

#[test]
fn keyed_send_refuses_stale_versions() {
    let d = Dir::new("keys");
    let q = d.path("q");
    ok(shmq(&["create", p(&q), "--keys", "16"]));
    let s = json_lines(&ok(shmq(&[
        "send",
        p(&q),
        "--key",
        "7",
        "--version",
        "5",
        "price 10",
        "--json",
    ])));
    assert_eq!(s[0]["version"], 5);
    let m = json_lines(&ok(shmq(&["recv", p(&q), "--json"])));
    assert_eq!(
        (m[0]["key"].as_u64(), m[0]["version"].as_u64()),
        (Some(7), Some(5))
    );
    let stale = shmq(&["send", p(&q), "--key", "7", "--version", "4", "price 9"]);
    assert_eq!(stale.status.code(), Some(1));
    assert!(
        err(&stale).contains("STALE") && err(&stale).contains(p(&q)),
        "{}",
        err(&stale)
    );
    // Version 0: the key's next version.
    let s = json_lines(&ok(shmq(&["send", p(&q), "--key", "7", "next", "--json"])));
    assert!(s[0]["version"].as_u64().unwrap() > 5, "{:?}", s);
    let st = json(shmq(&["stats", p(&q), "--json"]));
    assert_eq!(st["counters"]["stale"], 1);

    // A queue without a key table refuses keys, and says why.
    let plain = d.path("plain");
    ok(shmq(&["create", p(&plain)]));
    let e = shmq(&["send", p(&plain), "--key", "1", "x"]);
    assert_eq!(e.status.code(), Some(1));
    assert!(err(&e).contains(p(&plain)), "{}", err(&e));
}

/// Parses Prometheus text (0.0.4) or OpenMetrics: `name{labels} value`
/// lines into a map from the sample, written `name{queue="…"}` (the queue
/// label alone) or `name{queue="…",le="…"}` for a bucket (`le` as a number
/// formatted by Rust, or `+Inf`), to its value; checks that every family
/// has HELP and TYPE lines before its samples, and that OpenMetrics ends
/// with `# EOF`.
fn parse_prometheus(text: &str) -> HashMap<String, f64> {
    let mut samples = HashMap::new();
    let mut typed = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            let name = it.next().unwrap().to_string();
            let kind = it.next().unwrap();
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            // 0.0.4 names a counter's family with `_total`; OpenMetrics
            // without, and its samples add it.
            let name = if kind == "counter" && !name.ends_with("_total") {
                format!("{name}_total")
            } else {
                name
            };
            assert!(typed.insert(name), "family declared twice: {line}");
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (key, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = key.split_once('{').unwrap_or((key, "}"));
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(*f)))
            .unwrap_or(name);
        assert!(typed.contains(family), "sample before its TYPE: {line}");
        // Without the closing `"}`, every `",` ends a value (label values
        // here hold no `",`).
        let labels = labels.strip_suffix("\"}").unwrap();
        let mut queue = None;
        let mut le = None;
        for pair in labels.split("\",") {
            if let Some(v) = pair.strip_prefix("queue=\"") {
                queue = Some(v.to_string());
            } else if let Some(v) = pair.strip_prefix("le=\"") {
                le = Some(if v == "+Inf" {
                    v.to_string()
                } else {
                    format!("{}", v.parse::<f64>().unwrap())
                });
            }
        }
        let queue = queue.unwrap_or_else(|| panic!("no queue label: {line}"));
        let key = match le {
            Some(le) => format!("{name}{{queue=\"{queue}\",le=\"{le}\"}}"),
            None => format!("{name}{{queue=\"{queue}\"}}"),
        };
        let v: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
        assert!(samples.insert(key, v).is_none(), "dup {line}");
    }
    if text.contains("# UNIT") {
        assert!(text.ends_with("# EOF\n"), "OpenMetrics without # EOF");
    }
    samples
}

fn busy_queue(d: &Dir) -> PathBuf {
    let q = d.path("busy");
    ok(shmq(&[
        "create",
        p(&q),
        "--capacity",
        "64",
        "--max-deliveries",
        "2",
    ]));
    let lines: String = (0..40).map(|i| format!("msg {i}\n")).collect();
    ok(shmq_stdin(&["send", p(&q)], &lines));
    ok(shmq(&["recv", p(&q), "-n", "25"]));
    ok(shmq(&["recv", p(&q), "-n", "3", "--no-ack"]));
    q
}

#[test]
fn prometheus_output_matches_json() {
    let d = Dir::new("prom");
    let q = busy_queue(&d);
    let j = json(shmq(&["stats", p(&q), "--json"]));
    let text = ok(shmq(&["stats", p(&q), "--prometheus"]));
    let m = parse_prometheus(&text);
    let label = format!("queue=\"{}\"", p(&q));
    let get = |name: &str| -> f64 {
        *m.get(&format!("{name}{{{label}}}"))
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    for (name, v) in j["counters"].as_object().unwrap() {
        let metric = if name == "bytes_sent" {
            "shmq_sent_bytes_total".to_string()
        } else {
            format!("shmq_{name}_total")
        };
        assert_eq!(get(&metric), v.as_f64().unwrap(), "{metric}");
    }
    assert_eq!(get("shmq_sent_total"), 40.0);
    assert_eq!(get("shmq_acked_total"), 25.0);
    assert_eq!(get("shmq_nacked_total"), 3.0);
    for g in [
        "capacity",
        "depth",
        "in_flight",
        "delayed",
        "dead_letters",
        "producers",
        "consumers",
        "waiting_producers",
        "waiting_consumers",
    ] {
        assert_eq!(get(&format!("shmq_{g}")), j[g].as_f64().unwrap(), "{g}");
    }
    assert_eq!(get("shmq_depth"), 15.0);
    // The oldest message's age is in seconds (the JSON has nanoseconds and
    // was taken a moment earlier).
    let age = get("shmq_oldest_claimable_age_seconds");
    let age_json = j["oldest_claimable_age_ns"].as_f64().unwrap() / 1e9;
    assert!(age >= age_json && age < age_json + 5.0, "{age} {age_json}");
    for (h, hj) in j["histograms"].as_object().unwrap() {
        let base = format!("shmq_{h}_seconds");
        let count = hj["count"].as_f64().unwrap();
        assert_eq!(get(&format!("{base}_count")), count, "{h}");
        let sum = get(&format!("{base}_sum"));
        assert!(
            (sum - hj["sum_ns"].as_f64().unwrap() / 1e9).abs() < 1e-6,
            "{h}"
        );
        // Buckets: cumulative, ending in +Inf = count.
        let mut buckets: Vec<(f64, f64)> = m
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{base}_bucket{{")))
            .map(|(k, v)| {
                let le = k.split("le=\"").nth(1).unwrap().trim_end_matches("\"}");
                let le = le.trim_end_matches('"');
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                };
                (le, *v)
            })
            .collect();
        buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
        assert!(buckets.len() > 10);
        assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{h}");
        assert_eq!(buckets.last().unwrap(), &(f64::INFINITY, count));
        // The bucket holding the max is reached by the max's bound.
        let max_s = hj["max_ns"].as_f64().unwrap() / 1e9;
        let first_full = buckets.iter().find(|b| b.1 == count).unwrap().0;
        assert!(count == 0.0 || first_full >= max_s, "{h}");
    }
    // Latencies are sampled (every message when they are more than 1 ms
    // apart, one in 16 in a burst): at least one of each was timed.
    let timed = get("shmq_time_in_queue_seconds_count");
    assert!((1.0..=28.0).contains(&timed), "{timed}");
    let processed = get("shmq_processing_time_seconds_count");
    assert!((1.0..=25.0).contains(&processed), "{processed}");
}

fn http_get(addr: &str, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    (head.to_string(), body.to_string())
}

#[test]
fn serve_metrics_over_loopback() {
    let d = Dir::new("serve");
    let a = busy_queue(&d);
    let b = d.path("other \"queue\"");
    ok(shmq(&["create", p(&b)]));
    ok(shmq(&["send", p(&b), "x"]));
    let mut server = Reaper(
        Command::new(BIN)
            .args(["serve-metrics", p(&a), p(&b), "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut url = String::new();
    BufReader::new(server.0.stdout.as_mut().unwrap())
        .read_line(&mut url)
        .unwrap();
    let addr = url
        .trim()
        .strip_prefix("http://")
        .and_then(|u| u.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("{url}"))
        .to_string();
    assert!(addr.starts_with("127.0.0.1:"));

    let (head, body) = http_get(&addr, "/metrics");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.contains("application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    let m = parse_prometheus(&body);
    let la = format!("queue=\"{}\"", p(&a));
    let lb = format!(
        "queue=\"{}\"",
        p(&b).replace('\\', "\\\\").replace('"', "\\\"")
    );
    assert_eq!(m[&format!("shmq_sent_total{{{la}}}")], 40.0);
    assert_eq!(m[&format!("shmq_sent_total{{{lb}}}")], 1.0);
    assert_eq!(m[&format!("shmq_depth{{{lb}}}")], 1.0);

    // A scrape sees changes.
    ok(shmq(&["send", p(&b), "y"]));
    let (_, body) = http_get(&addr, "/metrics");
    assert_eq!(
        parse_prometheus(&body)[&format!("shmq_sent_total{{{lb}}}")],
        2.0
    );

    let (head, _) = http_get(&addr, "/nope");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    let (head, body) = http_get(&addr, "/");
    assert!(head.starts_with("HTTP/1.1 200") && body.contains("/metrics"));
    drop(server);

    // A missing queue: refused before listening.
    let e = shmq(&[
        "serve-metrics",
        p(&d.path("missing")),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(e.status.code(), Some(1));
    assert!(err(&e).contains("missing"));
}

#[test]
fn top_prints_plain_frames_without_a_terminal() {
    let d = Dir::new("top");
    let q = busy_queue(&d);
    let other = d.path("other");
    ok(shmq(&["create", p(&other), "--capacity", "8"]));
    // stdout is a pipe here: a plain frame, no escape codes.
    let f = ok(shmq(&[
        "top",
        p(&q),
        p(&other),
        "--once",
        "--interval",
        "100ms",
    ]));
    assert!(!f.contains('\x1b'), "{f:?}");
    assert!(f.starts_with("shmq top"), "{f}");
    for word in [
        p(&q),
        p(&other),
        "15/64 used: depth 15 in flight 0",
        "0/8 used: depth 0",
        " produced ",
        " consumed ",
        "time in queue p50",
        "processing p50",
        "dead letters",
        "claims",
    ] {
        assert!(f.contains(word), "{word} not in\n{f}");
    }
    assert!(f.lines().all(|l| l.chars().count() <= 100), "{f}");
    // --count: that many frames, one after the other.
    let f = ok(shmq(&["top", p(&q), "--count", "2", "--interval", "50ms"]));
    assert_eq!(f.matches("shmq top").count(), 2, "{f}");
    // A missing file is an error naming it.
    let o = shmq(&["top", p(&d.path("missing")), "--once"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("missing"), "{}", err(&o));
}

/// `cmd` run by util-linux `script` on a pseudo-terminal 100x50 (stdin
/// closed), with its output; None when `script` or a pty is unavailable.
fn on_a_pty(cmd: &str) -> Option<Vec<u8>> {
    let script = |c: &str| {
        Command::new("script")
            .args(["-qec", c, "/dev/null"])
            .stdin(Stdio::null())
            .output()
            .ok()
    };
    if !script("true")?.status.success() {
        return None;
    }
    let o = script(&format!("stty cols 100 rows 50; {cmd}"))?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    Some(o.stdout)
}

#[test]
fn top_draws_on_a_terminal_and_restores_it() {
    let d = Dir::new("top-pty");
    let q = busy_queue(&d);
    for (no_color, coloured) in [("", true), ("1", false)] {
        // --count: it stops by itself, nothing here is timed.
        let cmd = format!(
            "NO_COLOR={no_color} {BIN} top {} --count 2 --interval 50ms",
            p(&q)
        );
        let Some(out) = on_a_pty(&cmd) else {
            eprintln!("no `script` or no pseudo-terminal: skipped");
            return;
        };
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains(p(&q)), "{text:?}");
        // The alternate screen is entered, then left, and the cursor shown.
        let (enter, leave) = (text.find("\x1b[?1049h"), text.rfind("\x1b[?1049l"));
        assert!(enter.is_some() && leave > enter, "{text:?}");
        assert!(text.ends_with("\x1b[?25h") || text[leave.unwrap()..].contains("\x1b[?25h"));
        assert_eq!(
            text.contains("\x1b[38;5;"),
            coloured,
            "NO_COLOR={no_color}: {text:?}"
        );
    }
}

#[test]
fn stats_table_and_watch() {
    let d = Dir::new("watch");
    let q = busy_queue(&d);
    let t = ok(shmq(&["stats", p(&q)]));
    for word in [
        "depth 15",
        "sent 40",
        "time_in_queue",
        "p99",
        "refused_full",
    ] {
        assert!(t.contains(word), "{word} not in\n{t}");
    }
    let started = Instant::now();
    let w = ok(shmq(&[
        "stats",
        p(&q),
        "--watch",
        "--interval",
        "100ms",
        "--count",
        "3",
    ]));
    assert!(started.elapsed() < Duration::from_secs(30));
    let lines: Vec<&str> = w.lines().collect();
    assert_eq!(lines.len(), 3, "{w}");
    for l in lines {
        for word in [
            "produced",
            "consumed",
            "depth 15/64",
            "queue_p99",
            "stale",
            "redelivered",
        ] {
            assert!(l.contains(word), "{word} not in {l}");
        }
    }
}

/// Flips bytes of the file at `offset`.
fn damage(path: &Path, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, offset).unwrap();
}

#[test]
fn verify_sound_and_damaged_files() {
    let d = Dir::new("verify");
    let q = busy_queue(&d);
    let s = ok(shmq(&["verify", p(&q)]));
    assert!(s.contains(": ok"), "{s}");
    let j = json(shmq(&["verify", p(&q), "--json"]));
    assert_eq!(j["ok"], true);
    assert_eq!(j["problems"].as_array().unwrap().len(), 0);

    // The capacity field of the header (offset 24): the checksum catches it.
    damage(&q, 24, &[0xff, 0xff, 0x7f]);
    let v = shmq(&["verify", p(&q)]);
    assert_eq!(v.status.code(), Some(1), "{}", out(&v));
    assert!(out(&v).contains("problem"), "{}", out(&v));
    let j: Value = serde_json::from_str(&out(&shmq(&["verify", p(&q), "--json"]))).unwrap();
    assert_eq!(j["ok"], false);
    assert!(!j["problems"].as_array().unwrap().is_empty());
    // Every other command refuses it too, naming the file.
    let e = shmq(&["stats", p(&q)]);
    assert_eq!(e.status.code(), Some(1));
    assert!(err(&e).contains(p(&q)), "{}", err(&e));

    // The magic number.
    let d2 = Dir::new("verify3");
    let q3 = d2.path("q");
    ok(shmq(&["create", p(&q3)]));
    damage(&q3, 0, b"NOTAQUEU");
    let v = shmq(&["verify", p(&q3)]);
    assert_eq!(v.status.code(), Some(1));
    assert!(out(&v).contains("problem"), "{}", out(&v));

    // A slot word with an impossible state: found by the slot scan.
    let d4 = Dir::new("verify4");
    let q4 = d4.path("q");
    ok(shmq(&["create", p(&q4), "--capacity", "4"]));
    let info = json(shmq(&["info", p(&q4), "--json"]));
    let slots = info["layout"]["slots_offset"].as_u64().unwrap();
    damage(&q4, slots, &[0xff; 8]);
    let v = shmq(&["verify", p(&q4)]);
    assert_eq!(v.status.code(), Some(1), "{}", out(&v));
    assert!(out(&v).contains("slot 0"), "{}", out(&v));

    // Not a file at all: an error, not a finding.
    let e = shmq(&["verify", p(&d.path("absent"))]);
    assert_eq!(e.status.code(), Some(1));
    assert!(err(&e).contains("NOT_FOUND"), "{}", err(&e));
}

#[test]
fn dead_letters_list_show_redrive_purge() {
    let d = Dir::new("dlq");
    let q = d.path("q");
    ok(shmq(&["create", p(&q), "--max-deliveries", "1"]));
    ok(shmq(&["send", p(&q), "bad one", "bad two", "bad three"]));
    // One failed attempt each (a nack) dead-letters them.
    ok(shmq(&["recv", p(&q), "-n", "3", "--no-ack"]));
    assert_eq!(
        shmq(&["recv", p(&q), "--timeout", "0"]).status.code(),
        Some(3)
    );
    let list = json(shmq(&["dlq", p(&q), "list", "--json"]));
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(list[0]["data"], "bad one");
    assert_eq!(list[0]["attempts"], 1);
    let human = ok(shmq(&["dlq", p(&q), "list"]));
    assert!(human.contains("bad two") && human.contains("3 dead letters"));
    let id = list[1]["id"].as_u64().unwrap().to_string();
    let shown = json(shmq(&["dlq", p(&q), "show", &id, "--json"]));
    assert_eq!(shown["data"], "bad two");
    let shown = ok(shmq(&["dlq", p(&q), "show", &id]));
    assert!(shown.contains("bad two") && shown.contains("attempts"));
    let st = json(shmq(&["stats", p(&q), "--json"]));
    assert_eq!(st["dead_letters"], 3);
    assert_eq!(st["counters"]["dead_lettered"], 3);

    // Redrive one, then the rest: they come back with attempts reset.
    let r = ok(shmq(&["dlq", p(&q), "redrive", &id]));
    assert!(r.contains("redrove 1 dead letter"), "{r}");
    let m = json_lines(&ok(shmq(&["recv", p(&q), "--json"])));
    assert_eq!(m[0]["data"], "bad two");
    assert_eq!(m[0]["deliveries"], 1);
    let r = ok(shmq(&["dlq", p(&q), "redrive", "--all"]));
    assert!(r.contains("redrove 2 dead letters"), "{r}");
    assert_eq!(
        ok(shmq(&["recv", p(&q), "-n", "5"])),
        "bad one\nbad three\n"
    );
    assert_eq!(
        json(shmq(&["dlq", p(&q), "list", "--json"]))
            .as_array()
            .unwrap()
            .len(),
        0
    );

    // Purge.
    ok(shmq(&["send", p(&q), "doomed"]));
    ok(shmq(&["recv", p(&q), "--no-ack"]));
    let id = json(shmq(&["dlq", p(&q), "list", "--json"]))[0]["id"]
        .as_u64()
        .unwrap();
    let missing = shmq(&["dlq", p(&q), "show", "999999"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(err(&missing).contains("NOT_FOUND"));
    let r = ok(shmq(&["dlq", p(&q), "purge", &id.to_string()]));
    assert!(r.contains("purged 1"), "{r}");
    assert!(ok(shmq(&["dlq", p(&q), "list"])).contains("no dead letters"));
    // redrive/purge need an id or --all.
    assert_eq!(shmq(&["dlq", p(&q), "purge"]).status.code(), Some(2));
}

/// Engine bug: `Queue::recover` on an inspection handle attaches first, and
/// the attach itself cleans up after the dead participant whose entry it
/// takes; those repairs are missing from the returned `Repairs`, so
/// `shmq recover` reports "0 claims redelivered" for a claim it did
/// redeliver.
#[test]
fn recover_reports_the_claims_it_redelivers() {
    let d = Dir::new("recover-count");
    let q = d.path("q");
    ok(shmq(&["create", p(&q)]));
    ok(shmq(&["send", p(&q), "one"]));
    let mut holder = Command::new(BIN)
        .args(["recv", p(&q), "--follow", "--no-ack"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(holder.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    holder.kill().unwrap();
    holder.wait().unwrap();
    let r = json(shmq(&["recover", p(&q), "--json"]));
    assert_eq!(r["redelivered"], 1, "{r}");
}

#[test]
fn create_reserves_the_file_and_a_too_small_tmpfs_refuses_it() {
    use std::os::unix::fs::MetadataExt;
    // Anywhere: the file is allocated whole, or left sparse on request.
    let d = Dir::new("reserve");
    let q = d.path("q");
    let s = ok(shmq(&["create", p(&q), "--capacity", "64"]));
    assert!(s.contains("reserved"), "{s}");
    let m = std::fs::metadata(&q).unwrap();
    assert!(
        m.blocks() * 512 >= m.len(),
        "{} of {}",
        m.blocks() * 512,
        m.len()
    );
    let sparse = d.path("sparse");
    let c = json(shmq(&[
        "create",
        p(&sparse),
        "--capacity",
        "100000",
        "--max-message-size",
        "4096",
        "--sparse",
        "--json",
    ]));
    assert_eq!(c["sparse"], true);
    let m = std::fs::metadata(&sparse).unwrap();
    assert!(
        m.blocks() * 512 < m.len() / 2,
        "{} of {}",
        m.blocks() * 512,
        m.len()
    );

    // On a container's default /dev/shm (a 64 MiB tmpfs): refused at once
    // with the sizes, and nothing is left; --sparse creates it, and the
    // send that finds the tmpfs full says so (not "truncated").
    let Some(fs) = shmq_testkit::SmallTmpfs::mount("cli", 64) else {
        return;
    };
    let q = fs.file("orders");
    let big = [
        "create",
        p(&q),
        "--capacity",
        "100000",
        "--max-message-size",
        "4096",
    ];
    let o = shmq(&big);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let e = err(&o);
    assert_eq!(e.lines().count(), 1, "one line: {e}");
    assert!(
        e.starts_with(&format!("shmq: IO: {}: create: no space", p(&q))),
        "{e}"
    );
    assert!(e.contains("bytes free (64.0 MiB)"), "{e}");
    assert!(
        e.contains("64 MiB tmpfs, the default /dev/shm of a container"),
        "{e}"
    );
    assert!(!q.exists(), "nothing is left behind");

    let mut sparse = big.to_vec();
    sparse.push("--sparse");
    ok(shmq(&sparse));
    let payload = "x".repeat(4000);
    let mut last = None;
    for _ in 0..20_000 {
        let o = shmq(&["send", p(&q), &payload]);
        if o.status.code() != Some(0) {
            last = Some(o);
            break;
        }
    }
    let o = last.expect("a 64 MiB tmpfs fills up");
    let e = err(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("CORRUPT") && e.contains("the file system is full"),
        "{e}"
    );
    assert!(!e.contains("truncated while mapped"), "{e}");
    let stats = shmq(&["stats", p(&q)]);
    assert!(
        !err(&stats).contains("truncated while mapped"),
        "{}",
        err(&stats)
    );
}

#[test]
fn counts_refuse_negative_numbers_in_a_sentence() {
    let d = Dir::new("negative");
    let q = d.path("q");
    for (flag, what) in [
        ("--capacity", "capacity"),
        ("--max-message-size", "max message size"),
        ("--keys", "keys"),
        ("--max-deliveries", "max deliveries"),
    ] {
        let o = shmq(&["create", p(&q), flag, "-5"]);
        assert_eq!(o.status.code(), Some(2), "{flag}");
        let e = err(&o);
        assert!(
            e.contains(&format!("{what} must be a positive number")),
            "{e}"
        );
        assert!(!e.contains("-- -5"), "no advice to write `-- -5`: {e}");
    }
    let o = shmq(&["create", p(&q), "--capacity", "0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err(&o).contains("capacity must be a positive number"),
        "{}",
        err(&o)
    );
    assert!(!q.exists());
    ok(shmq(&["create", p(&q)]));
    let o = shmq(&["recv", p(&q), "-n", "-1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err(&o).contains("count must be a positive number"),
        "{}",
        err(&o)
    );
}

#[test]
fn send_takes_payloads_that_are_not_utf8() {
    use std::os::unix::ffi::OsStrExt;
    let d = Dir::new("bytes");
    let q = d.path("q");
    ok(shmq(&["create", p(&q)]));
    let o = Command::new(BIN)
        .args(["send", p(&q)])
        .arg(std::ffi::OsStr::from_bytes(b"\xff\xfeok"))
        .output()
        .unwrap();
    assert!(ok(o).contains("sent 1 message to"));
    let m = json(shmq(&["recv", p(&q), "--json"]));
    assert_eq!(m["data_hex"], "fffe6f6b");
}

#[test]
fn a_refused_mode_names_the_command_line_flag() {
    let d = Dir::new("trustflag");
    let q = d.path("q");
    ok(shmq(&["create", p(&q), "--mode", "0666"]));
    let o = shmq(&["info", p(&q)]);
    assert_eq!(o.status.code(), Some(1));
    let e = err(&o);
    assert!(e.contains("accept it with --trust-any-owner"), "{e}");
    assert!(!e.contains("with trust_any_owner"), "{e}");
    ok(shmq(&["info", p(&q), "--trust-any-owner"]));
    let q2 = d.path("q2");
    ok(shmq(&["create", p(&q2), "--mode", "0660"]));
    let e = err(&shmq(&["send", p(&q2), "x"]));
    assert!(e.contains("with --group-shared"), "{e}");
}

#[test]
fn info_names_the_wait_strategy_for_people() {
    let d = Dir::new("waitname");
    let q = d.path("q");
    ok(shmq(&["create", p(&q)]));
    let human = ok(shmq(&["info", p(&q)]));
    assert!(
        human.contains("wait strategy   spin, then sleep"),
        "{human}"
    );
    assert!(!human.contains("SpinThenSleep"), "{human}");
    let j = json(shmq(&["info", p(&q), "--json"]));
    assert_eq!(j["options"]["wait_strategy"], "spin-then-sleep");
}

#[test]
fn recv_count_zero_receives_nothing_and_succeeds() {
    let d = Dir::new("recvzero");
    let q = d.path("q");
    ok(shmq(&["create", p(&q)]));
    ok(shmq(&["send", p(&q), "stays"]));
    let o = shmq(&["recv", p(&q), "-n", "0"]);
    assert_eq!(ok(o), "");
    assert_eq!(ok(shmq(&["recv", p(&q)])), "stays\n");
    // A wrong path still fails.
    let o = shmq(&["recv", p(&d.path("nope")), "-n", "0"]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn peek_shows_waiting_messages_and_counts_no_delivery() {
    let d = Dir::new("peek");
    let q = d.path("q");
    ok(shmq(&["create", p(&q), "--max-deliveries", "2"]));
    let none = shmq(&["peek", p(&q)]);
    assert_eq!(none.status.code(), Some(3), "{}", err(&none));
    assert!(err(&none).contains("no message waiting"), "{}", err(&none));
    ok(shmq(&["send", p(&q), "a", "b", "c"]));
    ok(shmq(&["send", p(&q), "later", "--delay", "1h"]));
    // Twice, with max deliveries 2: a claim-and-nack would dead-letter them.
    for _ in 0..2 {
        assert_eq!(ok(shmq(&["peek", p(&q), "-n", "0"])), "a\nb\nc\nlater\n");
    }
    assert_eq!(
        ok(shmq(&["peek", p(&q), "-n", "2", "--read-only"])),
        "a\nb\n"
    );
    let got = json_lines(&ok(shmq(&["peek", p(&q), "-n", "0", "--json"])));
    assert_eq!(got.len(), 4);
    assert_eq!(got[0]["data"], "a");
    assert_eq!(got[0]["state"], "ready");
    assert_eq!(got[0]["deliveries"], 0);
    assert_eq!(got[0]["due_in_ns"], Value::Null);
    assert_eq!(got[3]["state"], "delayed");
    assert!(got[3]["due_in_ns"].as_u64().unwrap() > 3_000_000_000_000);
    let st = json(shmq(&["stats", p(&q), "--json"]));
    assert_eq!(
        (st["in_flight"].as_u64(), st["dead_letters"].as_u64()),
        (Some(0), Some(0)),
        "{st}"
    );
    // The first claim is the first delivery.
    let m = json_lines(&ok(shmq(&["recv", p(&q), "--json"])));
    assert_eq!(
        (m[0]["data"].as_str(), m[0]["deliveries"].as_u64()),
        (Some("a"), Some(1))
    );
    // recv --no-ack says it is a claim, and points to peek.
    let help = ok(shmq(&["recv", "--help"]));
    assert!(
        help.contains("counts a delivery") && help.contains("shmq peek"),
        "{help}"
    );
}

/// Starts `serve-metrics` on the paths, on a free loopback port: the
/// server and its address.
fn start_server(paths: &[&str]) -> (Reaper, String) {
    let mut args = vec!["serve-metrics"];
    args.extend_from_slice(paths);
    args.extend_from_slice(&["--listen", "127.0.0.1:0"]);
    let mut server = Reaper(
        Command::new(BIN)
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut url = String::new();
    BufReader::new(server.0.stdout.as_mut().unwrap())
        .read_line(&mut url)
        .unwrap();
    let addr = url
        .trim()
        .strip_prefix("http://")
        .and_then(|u| u.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("{url}"))
        .to_string();
    (server, addr)
}

#[test]
fn serve_metrics_answers_while_idle_connections_stay_open() {
    let d = Dir::new("idle-conns");
    let q = d.path("q");
    ok(shmq(&["create", p(&q)]));
    ok(shmq(&["send", p(&q), "x"]));
    let (_server, addr) = start_server(&[p(&q)]);
    // Six clients that connect and say nothing (the old server read each
    // for 3 s in turn before it looked at the next connection).
    let idle: Vec<TcpStream> = (0..6).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    // One that sends half a request head and stalls.
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let t = Instant::now();
    let (head, body) = http_get(&addr, "/metrics");
    let took = t.elapsed();
    // Not a timed assertion: the 10 s read timeout of `http_get` is the
    // bound; the time is printed for the report.
    eprintln!("scrape with 6 idle connections and 1 stalled one open: {took:?}");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let m = parse_prometheus(&body);
    let l = format!("queue=\"{}\"", p(&q));
    assert_eq!(m[&format!("shmq_sent_total{{{l}}}")], 1.0);
    assert_eq!(m[&format!("shmq_up{{{l}}}")], 1.0);
    drop(idle);
}

#[test]
fn serve_metrics_reopens_a_replaced_file_and_reports_a_missing_one() {
    let d = Dir::new("replaced");
    let q = d.path("q");
    ok(shmq(&["create", p(&q)]));
    ok(shmq(&["send", p(&q), "a", "b"]));
    let (_server, addr) = start_server(&[p(&q)]);
    let l = format!("queue=\"{}\"", p(&q));
    let scrape = || parse_prometheus(&http_get(&addr, "/metrics").1);
    let m = scrape();
    assert_eq!(m[&format!("shmq_sent_total{{{l}}}")], 2.0);
    assert_eq!(m[&format!("shmq_scrape_errors_total{{{l}}}")], 0.0);

    // Gone: up 0, one error per scrape, no other sample of that queue.
    std::fs::remove_file(&q).unwrap();
    let m = scrape();
    assert_eq!(m[&format!("shmq_up{{{l}}}")], 0.0);
    assert_eq!(m[&format!("shmq_scrape_errors_total{{{l}}}")], 1.0);
    assert!(!m.contains_key(&format!("shmq_sent_total{{{l}}}")));
    let m = scrape();
    assert_eq!(m[&format!("shmq_scrape_errors_total{{{l}}}")], 2.0);

    // Recreated under the same path: reopened, its own counts.
    ok(shmq(&["create", p(&q)]));
    ok(shmq(&["send", p(&q), "c"]));
    let m = scrape();
    assert_eq!(m[&format!("shmq_up{{{l}}}")], 1.0);
    assert_eq!(m[&format!("shmq_sent_total{{{l}}}")], 1.0);

    // Replaced by a rename while the old file still exists (another inode):
    // reopened too.
    let fresh = d.path("fresh");
    ok(shmq(&["create", p(&fresh)]));
    ok(shmq(&["send", p(&fresh), "d", "e", "f"]));
    std::fs::rename(&fresh, &q).unwrap();
    let m = scrape();
    assert_eq!(m[&format!("shmq_sent_total{{{l}}}")], 3.0);
    assert_eq!(m[&format!("shmq_scrape_errors_total{{{l}}}")], 2.0);
}
