//! The Rust examples run as examples/README.md shows them: a producer and
//! two competing consumers (each order goes to exactly one), and the keyed
//! state cache (every item ends at its latest price, a late update is
//! refused).
//!
//! The examples are built by the same cargo profile as this test, into the
//! same target directory (`cargo build --example`, a no-op when `cargo test`
//! already built them).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The examples this test runs.
const EXAMPLES: [&str; 3] = ["producer", "consumer", "state_cache"];

/// The directory holding this build's examples: `<target>/<profile>/examples`,
/// next to the `deps` directory this test runs from. The examples are built
/// there once, with this test's profile.
fn examples_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test's own path");
        let deps = exe.parent().expect("the deps directory");
        let profile_dir = deps.parent().expect("the profile directory");
        let target_dir = profile_dir.parent().expect("the target directory");
        let mut build = Command::new(env!("CARGO"));
        build
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["build", "--quiet", "--target-dir"])
            .arg(target_dir);
        match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => {}
            Some("release") => {
                build.arg("--release");
            }
            Some(other) => {
                build.args(["--profile", other]);
            }
            None => panic!("no profile directory above {}", exe.display()),
        }
        for name in EXAMPLES {
            build.args(["--example", name]);
        }
        let status = build.status().expect("running cargo build --example");
        assert!(status.success(), "cargo build of the examples failed");
        profile_dir.join("examples")
    })
}

fn example(name: &str) -> Command {
    Command::new(examples_dir().join(name))
}

/// A fresh directory for one test's queue file, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("shmq-examples-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating the scratch directory");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn succeeded(what: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("UTF-8 output")
}

#[test]
fn a_producer_and_two_competing_consumers() {
    let dir = Scratch::new("orders");
    let queue = dir.0.join("orders");
    // As examples/README.md says: create, start the consumers, then produce
    // more orders than the queue holds (back-pressure), and one stop each.
    let created = example("producer")
        .arg(&queue)
        .args(["0", "0"])
        .output()
        .unwrap();
    succeeded("producer (create)", &created);
    let consumers: Vec<_> = (0..2)
        .map(|_| {
            example("consumer")
                .arg(&queue)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("starting the consumer")
        })
        .collect();
    let produced = example("producer")
        .arg(&queue)
        .args(["1000", "2"])
        .output()
        .unwrap();
    succeeded("producer", &produced);
    let mut orders: Vec<String> = consumers
        .into_iter()
        .flat_map(|c| {
            let out = c.wait_with_output().expect("the consumer");
            succeeded("consumer", &out)
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    orders.sort();
    let mut expected: Vec<String> = (0..1000).map(|i| format!("order {i}")).collect();
    expected.sort();
    assert_eq!(orders, expected, "each order went to exactly one consumer");
}

#[test]
fn the_state_cache_ends_at_every_items_latest_price() {
    let dir = Scratch::new("cache");
    let queue = dir.0.join("prices");
    let out = example("state_cache")
        .arg(&queue)
        .arg("40")
        .output()
        .unwrap();
    let stdout = succeeded("state_cache", &out);
    for item in 1..=8 {
        let line = format!("item {item}: {item}.40 (version 40)");
        assert!(stdout.contains(&line), "no {line:?} in:\n{stdout}");
    }
    assert!(
        stdout.contains("a late update of item 1 (version 1): refused, stale"),
        "{stdout}"
    );
    assert!(stdout.contains("of 320 sent"), "{stdout}");
    assert!(!queue.exists(), "the example removes its queue file");
}
