//! The iceoryx2 rows: measured by `shmq-bench-iceoryx2`, a binary of the
//! separate comparison crate `crates/iceoryx2-bench` (kept out of shmq's
//! dependency tree), which prints its rows as JSON in this bench's format.
//! `shmq bench` runs it in a full run when it finds it; `--quick` skips it.
//!
//! Where it looks: `$SHMQ_BENCH_ICEORYX2`, then beside the running `shmq`
//! binary (a shared `CARGO_TARGET_DIR`), then the comparison crate's own
//! `target/release` in the source tree this binary was built from.

use super::{Row, Sizes};
use std::path::PathBuf;
use std::process::{Command, Stdio};

const NAME: &str = "shmq-bench-iceoryx2";

/// How to build the comparison binary (also in docs/PERFORMANCE.md).
pub const BUILD: &str = "cargo build --release --manifest-path crates/iceoryx2-bench/Cargo.toml";

/// A row as the comparison binary prints it.
#[derive(serde::Deserialize)]
struct Printed {
    scenario: String,
    transport: String,
    payload: usize,
    msgs_per_s: Option<f64>,
    rtt_p50_ns: Option<u64>,
    rtt_p99_ns: Option<u64>,
    #[serde(default)]
    note: String,
}

fn find() -> Option<PathBuf> {
    let mut places = Vec::new();
    if let Some(p) = std::env::var_os("SHMQ_BENCH_ICEORYX2") {
        places.push(PathBuf::from(p));
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.to_path_buf()))
    {
        places.push(dir.join(NAME));
    }
    places.push(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../iceoryx2-bench/target/release")
            .join(NAME),
    );
    places.into_iter().find(|p| p.is_file())
}

/// Runs the comparison binary with the run's counts; its rows, or one
/// skipped row saying why there are none.
pub fn rows(s: &Sizes) -> Result<Vec<Row>, String> {
    let Some(exe) = find() else {
        return Ok(vec![super::foreign::skipped(
            "one-to-one",
            "iceoryx2",
            &format!("{NAME} not built (`{BUILD}`)"),
        )]);
    };
    let out = Command::new(&exe)
        .args([
            "--msgs",
            &s.msgs.to_string(),
            "--rtts",
            &s.rtts.to_string(),
            "--runs",
            &s.runs.to_string(),
        ])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("{}: {e}", exe.display()))?;
    if !out.status.success() {
        return Err(format!("{} failed ({})", exe.display(), out.status));
    }
    let printed: Vec<Printed> = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("{}: bad output: {e}", exe.display()))?;
    printed
        .into_iter()
        .map(|p| {
            let scenario = match p.scenario.as_str() {
                "one-to-one" => "one-to-one",
                "ping-pong" => "ping-pong",
                other => return Err(format!("{NAME}: unknown scenario {other:?}")),
            };
            if p.transport != "iceoryx2" {
                return Err(format!("{NAME}: unexpected transport {:?}", p.transport));
            }
            let mut row = Row::new(scenario, "iceoryx2", p.payload);
            row.msgs_per_s = p.msgs_per_s;
            row.rtt_p50_ns = p.rtt_p50_ns;
            row.rtt_p99_ns = p.rtt_p99_ns;
            row.note = p.note;
            Ok(row)
        })
        .collect()
}
