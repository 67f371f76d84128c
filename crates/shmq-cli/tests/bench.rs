//! `shmq bench --instructions` through the real binary: with `--quick`
//! every loop runs under callgrind and gets a positive count (no figure is
//! checked against a bound: speed is for benchmarks, not tests), and
//! without valgrind the mode fails with a message saying so.

use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_shmq");

fn valgrind_present() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn instructions_quick_counts_every_loop() {
    if !valgrind_present() {
        eprintln!("skipped: valgrind is not installed (`shmq bench --instructions` needs it)");
        return;
    }
    let json = std::env::temp_dir().join(format!("shmq-bench-instr-{}.json", std::process::id()));
    let out = Command::new(BIN)
        .args(["bench", "--instructions", "--quick", "--json"])
        .arg(&json)
        .output()
        .expect("running shmq");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "shmq bench --instructions --quick failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let text = std::fs::read_to_string(&json).expect("the JSON rows");
    let _ = std::fs::remove_file(&json);
    let rows: Vec<Value> = serde_json::from_str(&text).expect("JSON rows");
    let names: Vec<String> = rows
        .iter()
        .map(|r| format!("{} {}", r["scenario"], r["transport"]))
        .collect();
    assert_eq!(rows.len(), 7, "one row per loop: {names:?}");
    for (r, name) in rows.iter().zip(&names) {
        let note = r["note"].as_str().unwrap_or("");
        if let Some(why) = note.strip_prefix("skipped: ") {
            // Only the C loops may be skipped, and only for want of the
            // static library or a compiler on this machine (cargo test does
            // not build libshmq.a: `cargo build -p shmq-c` does).
            assert!(
                name.contains("c-abi") && (why.contains("libshmq.a") || why.contains("compiler")),
                "{name}: {note}"
            );
            eprintln!("{name} skipped: {why}");
            continue;
        }
        let per = r["instructions_per_msg"].as_f64();
        assert!(
            per.is_some_and(|x| x > 0.0),
            "{name}: no positive count: {r}\n{stdout}"
        );
    }
    // The reference rows always run.
    for want in ["arrayqueue", "rtrb", "rtrb-chunks"] {
        assert!(
            rows.iter()
                .any(|r| r["transport"] == want && r["instructions_per_msg"].as_f64().is_some()),
            "no {want} row: {names:?}"
        );
    }
    assert!(stdout.contains("instr/msg"), "no table: {stdout}");
}

#[test]
fn instructions_without_valgrind_says_so() {
    let out = Command::new(BIN)
        .args(["bench", "--instructions", "--quick"])
        .env("SHMQ_VALGRIND", "/nonexistent/valgrind")
        .output()
        .expect("running shmq");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("valgrind") && stderr.contains("not installed"),
        "{stderr}"
    );
}
